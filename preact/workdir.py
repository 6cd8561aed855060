"""A training workdir: whether it can be used at all, the lock that gives it one trainer, and
the one way its JSON records are written (atomically: a reader never sees half a file).

Two trainers in one workdir would interleave their logs and overwrite each other's checkpoints,
so ``train.py`` holds ``<workdir>/train.lock`` for the whole run. The lock is an advisory
``flock`` on that file, which the kernel releases when its process dies however it dies: a lock
left by a killed trainer is therefore never stale, and the next trainer takes it over (with a
warning naming the old holder, whose pid and host the file still records). A live holder makes
the next trainer fail at once with :class:`WorkdirLocked`, naming its pid and host.

No JAX here: the lock is one process's business (process 0 of a multi-host run takes it; the
training loop tells the other processes the outcome).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import socket
import time
from typing import Any

log = logging.getLogger(__name__)

LOCK_NAME = "train.lock"
# Filesystems without flock (some FUSE mounts): the run goes on unlocked, with a warning.
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


class WorkdirError(ValueError):
    """The workdir cannot be used: not a directory, not creatable, not writable, or locked."""


class WorkdirLocked(WorkdirError):
    """Another live trainer holds the workdir."""


# scheme://...: gs://, s3://, hdfs://, file://, http:// ... (RFC 3986's scheme syntax).
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def check_local(workdir: str) -> None:
    """Raise WorkdirError if ``workdir`` is a URL. The workdir is a local path (a mounted bucket
    is one): the lock is an ``flock`` and the logs are appended with ``open``, neither of which
    reaches an object store, and ``os.makedirs('gs://b/run')`` would quietly make ``./gs:/b/run``.
    """
    if _URL.match(workdir):
        scheme = workdir.split("://", 1)[0]
        raise WorkdirError(
            f"workdir {workdir!r} is a URL; {scheme}:// is not supported: mount the bucket "
            f"(e.g. gcsfuse or s3fs) and pass the mounted directory"
        )


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so that a process
    killed while writing leaves the old file (or none), never a torn one."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json(path: str, record: Any, *, indent: int = 2) -> None:
    """``record`` as JSON at ``path``, atomically (:func:`write_atomic`)."""
    write_atomic(path, json.dumps(record, indent=indent))


def check_creatable(workdir: str) -> None:
    """Raise WorkdirError if ``workdir`` is not a directory and cannot become one; writes
    nothing, so it can run before the other checks of a run."""
    check_local(workdir)
    if os.path.exists(workdir):
        if not os.path.isdir(workdir):
            raise WorkdirError(f"workdir {workdir!r} exists and is not a directory")
        return
    parent = os.path.dirname(os.path.abspath(workdir))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise WorkdirError(f"cannot create workdir {workdir!r}: {parent!r} is not a directory")


def ensure_directory(workdir: str) -> None:
    """Create ``workdir`` if needed; raise WorkdirError (one line) if it cannot be a workdir."""
    check_creatable(workdir)
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"cannot create workdir {workdir!r}: {e.strerror or e}") from e


def check_readable(workdir: str) -> None:
    """For readers (eval.py): ``workdir`` must be an existing directory."""
    check_local(workdir)
    if not os.path.exists(workdir):
        raise WorkdirError(f"workdir {workdir!r} does not exist; train first with train.py")
    if not os.path.isdir(workdir):
        raise WorkdirError(f"workdir {workdir!r} exists and is not a directory")
    if not os.access(workdir, os.R_OK | os.X_OK):
        raise WorkdirError(f"workdir {workdir!r} is not readable")


def check_writable(workdir: str, what: str) -> None:
    """Raise WorkdirError unless a file can be created in ``workdir`` (tried, then removed: the
    permission bits do not tell, e.g. for root or on a read-only mount)."""
    probe = os.path.join(workdir, f".write-test-{os.getpid()}")
    try:
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise WorkdirError(
            f"workdir {workdir!r} is not writable ({what}): {e.strerror or e}"
        ) from e


def _holder() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%F %T %z")}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "an unknown process"
    return f"pid {holder.get('pid')} on host {holder.get('host')} (since {holder.get('since')})"


def _read_holder(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        holder = json.loads(raw) if raw.strip() else {}
    except ValueError:
        holder = {"unparsable": raw[:80].decode(errors="replace")}
    return holder if isinstance(holder, dict) else {}


class WorkdirLock:
    """``with WorkdirLock(workdir):`` holds ``<workdir>/train.lock`` (see the module docstring).

    Raises WorkdirLocked naming the holder, or WorkdirError if the file cannot be created.
    """

    def __init__(self, workdir: str) -> None:
        self.path = os.path.join(workdir, LOCK_NAME)
        self._fd: int | None = None

    def acquire(self) -> None:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise WorkdirError(
                    f"workdir {os.path.dirname(self.path)!r} is not writable: cannot create "
                    f"{LOCK_NAME}: {e.strerror or e}"
                ) from e
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise WorkdirLocked(
                    f"workdir {os.path.dirname(self.path)!r} is in use by another trainer: "
                    f"{_describe(holder)} holds {self.path}; stop it or use another --workdir"
                ) from None
            except OSError as e:
                if e.errno not in _NO_LOCKS:
                    os.close(fd)
                    raise
                log.warning("the filesystem of %s has no file locks; running unlocked", self.path)
            # A holder that finished unlinks the file before unlocking it: if we locked a file
            # that is no longer at the path, lock the new one instead.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read_holder(fd)
        if previous:
            log.warning("taking over the workdir lock %s from %s, which is no longer running",
                        self.path, _describe(previous))  # fmt: skip
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(_holder()).encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        # Unlink while still holding the lock, so nobody can lock this file after us.
        with contextlib.suppress(OSError):
            os.remove(self.path)
        os.close(self._fd)  # closing releases the flock
        self._fd = None

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
