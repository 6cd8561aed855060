"""What the benchmark workers and the driver share: the nets, step statistics, the environment.

Nothing here imports JAX or PyTorch at module level: the driver (``run_all.py``) must not touch
the GPU itself (it would take device memory that a worker's peak-memory figure then misses), and
the PyTorch worker must not start a JAX GPU client. :func:`jax_param_count` imports JAX lazily
and is meant for processes that run JAX on the CPU or already own the device.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_VERSION = 1

# The networks of the paper's CIFAR experiments (docs/reproduction.md#cifar) and the tiny ones of
# the smoke runs: depth -> block. Depth 8 is the smallest 6n+2 basic net, 11 the smallest 9n+2
# bottleneck.
NETS: dict[int, str] = {
    110: "basic",
    164: "bottleneck",
    1001: "bottleneck",
    8: "basic",
    11: "bottleneck",
}
# Parameter counts with BN's gamma and beta and the 10-class FC
# (docs/reproduction.md#parameter-counts).
PAPER_PARAM_COUNTS = {110: 1_727_962, 164: 1_703_258, 1001: 10_327_706}

# Every run record carries these keys (tests/test_benchmarks.py checks them).
RUN_KEYS = ("framework", "net", "depth", "block", "batch", "dtype", "variant", "rep", "status")
# Every results file's "environment" carries these keys; values may be None where not available
# (no GPU, no torch installed), never missing.
ENVIRONMENT_KEYS = (
    "date_utc",
    "command",
    "python",
    "platform",
    "cpu_count",
    "gpu",
    "gpu_driver",
    "gpu_memory",
    "versions",
    "xla_flags",
    "env",
    "git_commit",
)
VERSIONED_PACKAGES = (
    "jax",
    "jaxlib",
    "jax-cuda12-plugin",
    "jax-cuda13-plugin",
    "flax",
    "optax",
    "orbax-checkpoint",
    "ml_collections",
    "numpy",
    "torch",
    "triton",
)
# Environment variables that change what is measured.
RECORDED_ENV = (
    "XLA_FLAGS",
    "XLA_PYTHON_CLIENT_PREALLOCATE",
    "XLA_PYTHON_CLIENT_MEM_FRACTION",
    "JAX_PLATFORMS",
    "CUDA_VISIBLE_DEVICES",
    "TF_CPP_MIN_LOG_LEVEL",
    "TORCHINDUCTOR_CACHE_DIR",
    "TRITON_CACHE_DIR",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "PREACT_BENCH_THREADS",
)

# The worker environment variable that carries the thread count the driver gave every worker
# (run_all.worker_env); the PyTorch worker passes it to torch.set_num_threads.
THREADS_ENV = "PREACT_BENCH_THREADS"


def affinity_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's core count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def xla_cpu_threads(xla_flags: str | None = None) -> int:
    """Intra-op threads XLA:CPU uses in this process: its thread pool has one thread per core of
    the affinity mask (tsl::port::MaxParallelism), or one with
    ``--xla_cpu_multi_thread_eigen=false`` in XLA_FLAGS."""
    flags = os.environ.get("XLA_FLAGS", "") if xla_flags is None else xla_flags
    for flag in flags.split():
        if flag.replace("_", "-").lower() in (
            "--xla-cpu-multi-thread-eigen=false",
            "--xla-cpu-multi-thread-eigen=0",
        ):
            return 1
    return affinity_cores()


def thread_record(framework: str, intra_op: int, inter_op: int | None) -> dict[str, Any]:
    """The ``threads`` field of every run record: what each framework computes with."""
    return {
        "framework": framework,
        "intra_op": int(intra_op),
        "inter_op": None if inter_op is None else int(inter_op),
        "affinity_cores": affinity_cores(),
        "requested": int(os.environ[THREADS_ENV]) if os.environ.get(THREADS_ENV) else None,
    }


def thread_mismatches(runs: Sequence[dict[str, Any]]) -> list[str]:
    """Why the JAX and PyTorch runs of one results file did not compute on the same threads
    (empty when they did): every ok run must record ``threads``, and all of them the same
    intra-op count and the same cores."""
    problems = []
    seen: dict[tuple[int, int], list[str]] = {}
    for run in runs:
        if run.get("status") != "ok":
            continue
        name = f"{run.get('framework')} {run.get('net')} {run.get('variant')} rep{run.get('rep')}"
        threads = run.get("threads")
        if not threads:
            problems.append(f"{name}: no thread counts recorded")
            continue
        key = (threads["intra_op"], threads["affinity_cores"])
        seen.setdefault(key, []).append(name)
    if len(seen) > 1:
        problems.append(
            "runs differ in (intra-op threads, cores): "
            + "; ".join(f"{k}: {', '.join(v)}" for k, v in seen.items())
        )
    return problems


def net_name(depth: int) -> str:
    return f"PreAct-{depth}"


def block_of(depth: int) -> str:
    if depth not in NETS:
        raise ValueError(f"no benchmark net of depth {depth}; known: {sorted(NETS)}")
    return NETS[depth]


def torch_variant_name(mode: str, scope: str, channels_last: bool) -> str:
    """``eager``, or the torch.compile mode and scope (``reduce-overhead@model``); ``,nchw``
    without channels_last."""
    name = mode if mode == "eager" else f"{mode}@{scope}"
    return name if channels_last else f"{name},nchw"


def step_stats(seconds: Sequence[float], batch: int) -> dict[str, float]:
    """Median, p10 and p90 of per-step times (each step ended by a device sync), and img/s.

    The throughput is batch / median step time (docs/performance.md#how-we-measure).
    """
    ms = np.asarray(seconds, np.float64) * 1e3
    p10, p50, p90 = np.percentile(ms, [10, 50, 90])
    return {
        "steps": len(ms),
        "median_ms": round(float(p50), 4),
        "p10_ms": round(float(p10), 4),
        "p90_ms": round(float(p90), 4),
        "mean_ms": round(float(ms.mean()), 4),
        "img_per_s": round(batch / (p50 / 1e3), 1),
    }


def window_stats(seconds: float, steps: int, batch: int) -> dict[str, float]:
    """Steps issued back to back with one sync at the end: what a training loop gets when host
    dispatch overlaps device work (the per-step sync of :func:`step_stats` prevents that)."""
    return {
        "steps": steps,
        "total_s": round(seconds, 4),
        "ms_per_step": round(seconds / steps * 1e3, 4),
        "img_per_s": round(batch * steps / seconds, 1),
    }


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _run(cmd: Sequence[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def environment(command: Sequence[str] | None = None) -> dict[str, Any]:
    """The machine and software a results file was measured with, read without importing JAX or
    PyTorch (package versions from their metadata, the GPU and driver from ``nvidia-smi``)."""
    smi = _run(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    )
    gpu = driver = memory = None
    if smi:
        first = [field.strip() for field in smi.splitlines()[0].split(",")]
        gpu, driver, memory = (first + [None, None, None])[:3]
    cuda = None
    if smi is not None:
        header = _run(["nvidia-smi"]) or ""
        marker = "CUDA Version:"
        if marker in header:
            cuda = header.split(marker, 1)[1].split()[0]
    commit = _run(["git", "-C", REPO_ROOT, "rev-parse", "HEAD"])
    dirty = _run(["git", "-C", REPO_ROOT, "status", "--porcelain", "--untracked-files=no"])
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(command if command is not None else [sys.executable, *sys.argv]),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "gpu": gpu,
        "gpu_driver": driver,
        "gpu_memory": memory,
        "gpu_cuda_driver_api": cuda,
        "versions": {name: _version(name) for name in VERSIONED_PACKAGES},
        "xla_flags": os.environ.get("XLA_FLAGS"),
        "env": {name: os.environ.get(name) for name in RECORDED_ENV},
        "git_commit": commit,
        "git_dirty": None if dirty is None else bool(dirty),
    }


def cpu_model() -> str | None:
    """The host CPU's model: CPU timings differ several-fold between models of one core count."""
    from preact import provenance  # lazily: preact imports nothing heavy, but only here

    return provenance.cpu_model()


def jax_param_count(depth: int, block: str, num_classes: int = 10) -> int:
    """Parameters of the Flax net (BN gamma/beta included), from shapes alone: no device work."""
    import jax
    import jax.numpy as jnp

    from preact import networks

    model = networks.cifar_resnet(depth, block=block, num_classes=num_classes)
    variables = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    )
    return networks.count_params(variables["params"])


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def write_json(path: str, obj: Any) -> None:
    """Write atomically, so a run killed at its time limit leaves the last complete file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
