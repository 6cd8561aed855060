"""Run logs: ``<workdir>/metrics.jsonl`` (one JSON object per line) and a progress line.

Errors are in percent, as the paper reports them. Only process 0 of a multi-host run writes.
A process killed while appending can leave a torn last line; readers drop it with a warning
(a resumed run rewrites the file without it). A bad line anywhere else is an error naming the
file and the line.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from typing import Any, TextIO

import numpy as np

from preact import workdir as workdir_lib

log = logging.getLogger(__name__)


class MetricsWriter:
    """Appends ``{"step": ..., <scalars>}`` lines to ``<workdir>/metrics.jsonl``."""

    def __init__(self, workdir: str, *, enabled: bool = True) -> None:
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """On resume, drop records of steps past the restored checkpoint (they will be redone),
        and a torn last line; ``step=0`` on a fresh start drops everything."""
        if not self.enabled or not os.path.exists(self.path):
            return
        kept = [line for line, record in _read_lines(self.path) if record["step"] <= step]
        workdir_lib.write_atomic(self.path, "".join(kept))

    def write(self, step: int, scalars: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step)}
        record.update({k: _scalar(v) for k, v in scalars.items()})
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(workdir_or_file: str) -> list[dict[str, Any]]:
    path = workdir_or_file
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    return [record for _, record in _read_lines(path)]


def _read_lines(path: str) -> list[tuple[str, dict[str, Any]]]:
    """(line, record) for every record of a metrics file, each line ending in a newline."""
    with open(path) as f:
        lines = f.readlines()
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                raise ValueError("not an object with an integer 'step'")
        except ValueError as e:
            if number == len(lines):  # what a process killed mid-write leaves
                log.warning("%s: dropping its torn last line %d (%r): %s",
                            path, number, line[:80], e)  # fmt: skip
                break
            raise ValueError(f"{path}, line {number}: not a metrics record ({e}); "
                             "fix or delete the line") from e  # fmt: skip
        out.append((line if line.endswith("\n") else line + "\n", record))
    return out


def float32_value(value: Any) -> float:
    """A value the devices computed in float32, rounded to float32's precision (7 significant
    digits, within one float32 step of the value) for the logs: ``0.1`` for ``np.float32(0.1)``,
    not its float64 value 0.10000000149011612, and ``0.01`` for the float32 product 0.1 * 0.1,
    not 0.010000001."""
    return float(f"{float(np.float32(value)):.7g}")


def _scalar(value: Any) -> Any:
    if isinstance(value, (str, bool, int)):
        return value
    value = float(value)
    return value if math.isfinite(value) else str(value)


def duration(seconds: float) -> str:
    """``45 s``, ``3 min 05 s``, ``2 h 03 min``, ``1 d 02 h 03 min``: a duration with its units."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(int(round(seconds)), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours:02d} h {minutes:02d} min"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


class Progress:
    """``step 1200/64000 | train loss 0.5120 | 8,123 img/s | ETA 2 h 03 min`` on stderr.

    Rewritten in place on a terminal; one line per update otherwise (logs of batch jobs). The
    throughput and the ETA come from the steps since the last update, which exclude the first
    call's compilation; before any step is timed they read ``?``.
    """

    def __init__(
        self,
        total_steps: int,
        *,
        enabled: bool = True,
        bar: bool = True,
        stream: TextIO | None = None,
    ):
        """``enabled``: print anything at all (process 0 only); ``bar``: the per-log progress
        lines too (messages such as "resumed from ..." are printed either way)."""
        self.total = total_steps
        self.enabled = enabled
        self.bar = bar
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()

    def update(
        self,
        step: int,
        loss: float,
        images_per_sec: float | None,
        steps_per_sec: float | None,
    ) -> None:
        """``images_per_sec`` and ``steps_per_sec`` are None (printed ``?``) when no step since
        the last update was timed (only the compiling first call ran)."""
        if not (self.enabled and self.bar):
            return
        rate = steps_per_sec or 0.0
        remaining = (self.total - step) / rate if rate > 0 else float("inf")
        throughput = "?" if images_per_sec is None else f"{images_per_sec:,.0f}"
        line = (f"step {step}/{self.total} | train loss {loss:.4f} | {throughput} img/s "
                f"| ETA {duration(remaining)}")  # fmt: skip
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        if self.enabled:
            self.stream.write(("\n" if self.tty and self.bar else "") + text + "\n")
            self.stream.flush()
