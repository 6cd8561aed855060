"""What produced a result: package versions, the JAX backend and devices, the code's git commit.

:func:`environment` is recorded in every checkpoint's metadata, in ``eval_results.json``, in a
training run's ``config.json`` and in the analysis tools' results files, so that a number can be
traced back to the software and hardware that made it. It is computed once per process (the git
state as the process first asks for it: call it early, while the checkout matches the imported
code) and after ``jax.distributed.initialize``, since it asks JAX for its devices.
"""

from __future__ import annotations

import copy
import functools
import importlib.metadata
import os
import platform
import subprocess
from typing import Any

import preact

# The distributions whose versions decide the numbers (and the checkpoints' format).
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name`` (from its metadata), or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=_PACKAGE_DIR, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.cache
def cpu_model() -> str | None:
    """The host CPU's model name (Linux: /proc/cpuinfo; elsewhere ``platform.processor()``).

    CPU timings differ several-fold between machines with the same core count (an AVX2-only
    core against an AVX-512 one), so a CPU figure needs the model beside it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def git_state() -> dict[str, Any]:
    """``git_commit`` (the full SHA of HEAD) and ``git_dirty`` (tracked files differ from it) of
    the checkout this package was imported from; both None outside a git checkout."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


@functools.cache
def _environment() -> dict[str, Any]:
    import jax

    devices = jax.devices()
    kinds = sorted({d.device_kind for d in devices})
    return {
        "preact": preact.__version__,
        "versions": {name: package_version(name) for name in PACKAGES},
        "python": platform.python_version(),
        "backend": jax.default_backend(),
        "device_kind": kinds[0] if len(kinds) == 1 else ", ".join(kinds),
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
        "process_count": jax.process_count(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        **git_state(),
    }


def environment() -> dict[str, Any]:
    """The software and hardware of this process, as a JSON-ready dict:

    ``preact`` (this package's version), ``versions`` (jax, jaxlib, flax, optax,
    orbax-checkpoint and numpy; None for one not installed), ``python``, ``backend``
    (``jax.default_backend()``), ``device_kind`` (``jax.devices()[0].device_kind``: "cpu",
    "NVIDIA H100 80GB HBM3", "TPU v4", ...), ``device_count`` (all processes),
    ``local_device_count``, ``process_count``, ``cpu_count`` and ``cpu_model`` (the host's),
    ``git_commit`` and ``git_dirty``.
    """
    return copy.deepcopy(_environment())
