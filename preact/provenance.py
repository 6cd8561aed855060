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
    """The host CPU: its model name, family/model numbers and widest vector extension, e.g.
    "AMD EPYC (family 23, model 1, avx2)" (Linux: /proc/cpuinfo; elsewhere
    ``platform.processor()``).

    CPU timings differ several-fold between machines with the same core count (an AVX2-only
    core against an AVX-512 one), and a virtual machine may show only "AMD EPYC" as its name, so
    a CPU figure needs the numbers beside it."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "cpu family", "model", "flags") and key not in fields:
                    fields[key] = value.strip()
                if not line.strip() and fields:
                    break  # the first processor's block is enough
    except OSError:
        pass
    if "model name" not in fields:
        return platform.processor() or None
    flags = set(fields.get("flags", "").split())
    isa = next((x for x in ("avx512f", "avx2", "avx", "sse4_2") if x in flags), None)
    extra = [f"family {fields['cpu family']}" if "cpu family" in fields else None,
             f"model {fields['model']}" if "model" in fields else None, isa]  # fmt: skip
    details = ", ".join(x for x in extra if x)
    return f"{fields['model name']} ({details})" if details else fields["model name"]


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
        # The XLA settings the backend started with (preact.xla_flags adds the project's).
        "xla_flags": os.environ.get("XLA_FLAGS"),
        **git_state(),
    }


def environment() -> dict[str, Any]:
    """The software and hardware of this process, as a JSON-ready dict:

    ``preact`` (this package's version), ``versions`` (jax, jaxlib, flax, optax,
    orbax-checkpoint and numpy; None for one not installed), ``python``, ``backend``
    (``jax.default_backend()``), ``device_kind`` (``jax.devices()[0].device_kind``: "cpu",
    "NVIDIA H100 80GB HBM3", "TPU v4", ...), ``device_count`` (all processes),
    ``local_device_count``, ``process_count``, ``cpu_count`` and ``cpu_model`` (the host's),
    ``xla_flags`` (``XLA_FLAGS`` as the backend read it), ``git_commit`` and ``git_dirty``.
    """
    return copy.deepcopy(_environment())
