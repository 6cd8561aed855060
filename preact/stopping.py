"""The graceful stop: SIGTERM or SIGINT asks the training loop to finish its step, write a
checkpoint and exit; a second signal exits at once.

Python runs a signal handler only between bytecodes of the main thread, and the main thread of a
training run spends most of its time inside XLA (compiling, or waiting for a step), so a handler
alone could not make a second signal take effect while a long step or compilation runs. The
C-level handler Python installs does write each signal's number to the wakeup fd immediately,
whatever the main thread is doing; a small thread reading that fd exits the process on the
second one.

On a multi-host run every process must stop after the same step, so the decision is JAX's
preemption sync point: ``jax.distributed`` installs its own SIGTERM notifier, which tells every
process, and this module leaves it alone. A SIGINT (Ctrl-C) is caught here and passed on to that
notifier as a SIGTERM to this process, so that it too stops every process at the same step. A
second SIGINT exits at once; a second SIGTERM is the notifier's, which does not exit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any

import jax
from jax.experimental import multihost_utils


class StopSignal:
    """``with StopSignal() as stop:`` then ``stop.requested(step)`` after every step."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._multihost = jax.process_count() > 1
        self._pipe: tuple[int, int] | None = None
        self._old_wakeup_fd = -1

    def requested(self, step: int) -> bool:
        """Whether to stop after ``step``; on multi-host runs, the same answer on every host."""
        if not self._multihost:
            return self.received is not None
        if multihost_utils.reached_preemption_sync_point(step):
            self.received = self.received or signal.SIGTERM
            return True
        return False

    def __enter__(self) -> StopSignal:
        signals = (signal.SIGINT,) if self._multihost else (signal.SIGTERM, signal.SIGINT)
        for sig in signals:
            # Outside the main thread signals cannot be caught; the loop then runs without.
            with contextlib.suppress(ValueError):
                self._previous[sig] = signal.signal(sig, self._handle)
        if self._previous:
            read_fd, write_fd = os.pipe()
            os.set_blocking(write_fd, False)
            self._old_wakeup_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
            self._pipe = (read_fd, write_fd)
            threading.Thread(target=self._watch, args=(read_fd,), daemon=True,
                             name="preact-second-signal").start()  # fmt: skip
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = self.received or signum

    def _watch(self, read_fd: int) -> None:
        """Count our signals as the C-level handler reports them; exit on the second."""
        seen = 0
        try:
            while data := os.read(read_fd, 64):
                for signum in data:
                    if signum not in self._previous:
                        continue  # another library's Python handler
                    seen += 1
                    self.received = self.received or signum
                    if seen == 1 and self._multihost:
                        os.kill(os.getpid(), signal.SIGTERM)  # to JAX's preemption notifier
                    if seen >= 2:
                        name = signal.Signals(signum).name
                        os.write(2, f"second {name}: exiting now, without a checkpoint\n".encode())
                        os._exit(128 + signum)
        finally:
            os.close(read_fd)

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self._pipe is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd)
            os.close(self._pipe[1])  # the watcher reads end-of-file and finishes
            self._pipe = None


class Stopped(Exception):
    """Training stopped by a signal after writing a checkpoint; ``exit_code`` is 128 + signal."""

    def __init__(self, signum: int, step: int, path: str) -> None:
        self.signum, self.step, self.path = signum, step, path
        self.exit_code = 128 + signum
        super().__init__(
            f"stopped by {signal.Signals(signum).name} at step {step}; checkpoint {path}"
        )
