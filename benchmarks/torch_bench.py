r"""PyTorch side of the benchmark: one configuration of the peer's train step, in one process.

    python -m benchmarks.torch_bench --depth 164 --batch 128 --dtype bfloat16 \
        --mode reduce-overhead --scope model --warmup 20 --steps 100 --json-out /tmp/run.json

The step is what a PyTorch user would write for the peer (benchmarks/torch_preact.py): forward
under bf16 autocast (``--dtype bfloat16``; parameters stay float32, as in the Flax net), softmax
cross-entropy, backward, SGD (momentum 0.9, coupled weight decay 1e-4, lr 0.1; the fused CUDA
kernel on a GPU), with ``cudnn.benchmark`` on and the model and data in ``channels_last`` unless
``--nchw``. Data are random tensors made on the device. ``--mode``:
- ``eager``: no compilation;
- ``default``, ``max-autotune-no-cudagraphs``, ``reduce-overhead`` (CUDA graphs),
  ``max-autotune`` (both): ``torch.compile`` modes, of the whole model (``--scope model``) or of
  each residual unit (``--scope unit``: PyTorch's "regional compilation", which compiles each
  distinct unit shape once, as ``nn.scan`` does for JAX; whole-model compilation of a 1001-layer
  net takes far longer than a 10-minute GPU command).
The forward and backward are compiled; the optimizer step runs eagerly (fused on CUDA).

Timing follows docs/performance.md ("How we measure"), as the JAX side does: warm-up steps (the
first ones compile, and are reported as such), then steps each ended by a device synchronize
(median, p10, p90), then as many back to back with one synchronize at the end. Peak memory is
``torch.cuda.max_memory_allocated()`` (None on CPU). At start the peer's parameter count is checked
against the Flax net's, computed with ``jax.eval_shape`` on the CPU (no JAX GPU client is started in
this process).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks import common, torch_preact

MODES = ("eager", "default", "max-autotune-no-cudagraphs", "reduce-overhead", "max-autotune")
SCOPES = ("model", "unit")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def set_fp32_precision(fp32_precision: str) -> None:
    """TF32 for float32 convolutions and matmuls, or full float32, set explicitly (PyTorch's own
    defaults differ: TF32 for cuDNN convolutions, not for matmuls)."""
    tf32 = {"tf32": True, "highest": False}[fp32_precision]
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32


def set_threads(threads: int | None) -> int:
    """Intra-op threads: ``threads``, else one per core this process may use (what XLA:CPU's
    pool gets), so the two frameworks compute on the same threads. Returns the count set."""
    n = threads or common.affinity_cores()
    torch.set_num_threads(n)
    return n


def check_param_count(model: torch.nn.Module, depth: int, block: str) -> int:
    """The peer must have exactly the Flax net's parameters; raises if not."""
    expected = common.jax_param_count(depth, block)
    got = torch_preact.count_params(model)
    if got != expected:
        raise AssertionError(f"PyTorch peer of depth {depth} has {got} parameters, Flax {expected}")
    return got


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _dynamo_counts() -> dict[str, int | None]:
    """Graphs Dynamo compiled and graph breaks: with ``--scope unit`` the identical units of a
    stage should share one graph (about 6 in all), not compile one each."""
    try:
        from torch._dynamo.utils import counters  # private, so read defensively
    except ImportError:
        return {"dynamo_unique_graphs": None, "dynamo_graph_breaks": None}
    return {
        "dynamo_unique_graphs": int(counters["stats"]["unique_graphs"]),
        "dynamo_graph_breaks": int(sum(counters["graph_break"].values())),
    }


def worker_environment(device: torch.device, fp32_precision: str) -> dict[str, Any]:
    cuda = device.type == "cuda"
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "fp32_precision": fp32_precision,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "mkl_num_threads": os.environ.get("MKL_NUM_THREADS"),
        "inductor_cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
    }


def run(
    *,
    depth: int,
    batch: int,
    dtype: str,
    mode: str,
    scope: str = "model",
    channels_last: bool = True,
    warmup: int,
    steps: int,
    rep: int = 1,
    fp32_precision: str = "tf32",
    device: str | None = None,
) -> dict[str, Any]:
    """Measure one configuration; returns its run record (same keys as the JAX side's)."""
    if mode not in MODES or scope not in SCOPES:
        raise ValueError(f"mode {mode!r} / scope {scope!r}; valid: {MODES} / {SCOPES}")
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"unknown dtype {dtype!r}")
    start = time.perf_counter()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    block = common.block_of(depth)
    torch.backends.cudnn.benchmark = True
    set_fp32_precision(fp32_precision)
    torch.manual_seed(0)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    model = torch_preact.PreActResNet(depth, block)
    params = check_param_count(model, depth, block)
    model = model.to(dev, memory_format=memory_format).train()
    optimizer = torch_preact.make_optimizer(model, fused=True if dev.type == "cuda" else None)
    forward = model
    if mode != "eager":
        compile_mode = None if mode == "default" else mode
        if scope == "model":
            forward = torch.compile(model, mode=compile_mode)
        else:
            for unit in model.units():
                unit.compile(mode=compile_mode)
    cuda_graphs = mode in CUDA_GRAPH_MODES
    images = torch.randn(batch, 3, 32, 32, device=dev).contiguous(memory_format=memory_format)
    labels = torch.randint(0, 10, (batch,), device=dev)
    bf16 = dtype == "bfloat16"

    def step() -> torch.Tensor:
        if cuda_graphs:
            # Tells the CUDA-graph trees that a new iteration starts, so the previous step's
            # outputs may be overwritten.
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
            logits = forward(images)
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    record: dict[str, Any] = {
        "framework": "torch",
        "net": common.net_name(depth),
        "depth": depth,
        "block": block,
        "batch": batch,
        "dtype": dtype,
        "variant": common.torch_variant_name(mode, scope, channels_last),
        "rep": rep,
        "status": "ok",
        "warmup_steps": warmup,
        "params": params,
        "mode": mode,
        "scope": scope if mode != "eager" else None,
        "channels_last": channels_last,
    }
    warmup_times = []
    for _ in range(warmup):
        t0 = time.perf_counter()
        step()
        _sync(dev)
        warmup_times.append(time.perf_counter() - t0)
    # The first step pays for compilation (Dynamo, Inductor, autotuning); with CUDA graphs the
    # next ones record the graphs. Steady state is what the timed steps measure.
    record["compile"] = {
        "first_step_s": round(warmup_times[0], 3) if warmup_times else None,
        "second_step_s": round(warmup_times[1], 3) if len(warmup_times) > 1 else None,
        "warmup_total_s": round(sum(warmup_times), 3),
        **(_dynamo_counts() if mode != "eager" else {}),
    }
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = step()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    record["step"] = common.step_stats(times, batch)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    _sync(dev)
    record["pipelined"] = common.window_stats(time.perf_counter() - t0, steps, batch)
    if dev.type == "cuda":
        record["memory"] = {
            "after_steps": {
                "peak_bytes_in_use": int(torch.cuda.max_memory_allocated(dev)),
                "peak_bytes_reserved": int(torch.cuda.max_memory_reserved(dev)),
            }
        }
    else:
        record["memory"] = {"after_steps": None}
    record["epoch"] = None  # the peer has no input pipeline; see the JAX side's epoch figure
    final = float(loss.detach().float().item())
    record["final_loss"] = final
    record["loss_finite"] = bool(np.isfinite(final))
    record["wall_s"] = round(time.perf_counter() - start, 2)
    record["worker_env"] = worker_environment(dev, fp32_precision)
    record["threads"] = common.thread_record(
        "torch", torch.get_num_threads(), torch.get_num_interop_threads()
    )
    return record


def describe(record: dict[str, Any]) -> str:
    s = record["step"]
    line = (
        f"torch {record['net']:>12} b{record['batch']} {record['dtype']:8} "
        f"{record['variant']:9} rep{record['rep']}: first step "
        f"{record['compile']['first_step_s']}s, {s['img_per_s']:,.0f} img/s, "
        f"{s['median_ms']:.2f} ms (p10 {s['p10_ms']:.2f}, p90 {s['p90_ms']:.2f}), "
        f"back to back {record['pipelined']['img_per_s']:,.0f} img/s"
    )
    peak = (record["memory"]["after_steps"] or {}).get("peak_bytes_in_use")
    if peak is not None:
        line += f", peak {peak / 2**30:.2f} GiB"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, required=True, choices=sorted(common.NETS))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    parser.add_argument("--mode", default="eager", choices=MODES)
    parser.add_argument("--scope", default="model", choices=SCOPES)
    parser.add_argument("--nchw", action="store_true", help="contiguous NCHW, not channels_last")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--fp32-precision", default="tf32", choices=("tf32", "highest"))
    parser.add_argument("--rep", type=int, default=1)
    parser.add_argument("--json-out", default="", help="write the run record here")
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get(common.THREADS_ENV) or 0) or None,
        help=f"torch.set_num_threads (default: ${common.THREADS_ENV}, else the cores of this "
        "process's affinity mask, as XLA:CPU)",
    )
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    # The parameter-count check runs the Flax net's eval_shape here: keep JAX off the GPU.
    os.environ["JAX_PLATFORMS"] = "cpu"
    set_threads(args.threads)
    record = run(
        depth=args.depth,
        batch=args.batch,
        dtype=args.dtype,
        mode=args.mode,
        scope=args.scope,
        channels_last=not args.nchw,
        warmup=args.warmup,
        steps=args.steps,
        rep=args.rep,
        fp32_precision=args.fp32_precision,
    )
    print(describe(record), flush=True)
    if args.json_out:
        common.write_json(args.json_out, record)


if __name__ == "__main__":
    main()
