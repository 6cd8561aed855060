r"""JAX side of the benchmark: one configuration of the project's own train step, in one process.

    python -m benchmarks.jax_bench --depth 1001 --batch 128 --dtype bfloat16 --layout scanned \
        --warmup 20 --steps 100 --epoch --cache-dir /tmp/jax_cache --json-out /tmp/run.json

What it times is ``preact.training.make_train_step`` (pmapped, here over one device) on the
model and optimizer of ``configs/default.py``, so the figures are those of the training loop:
1. compile: trace+lower and XLA compile of the step, ahead of time, and whether JAX's persistent
   compilation cache (``--cache-dir``) answered: a miss in the first process to compile a
   configuration ("cold"), a hit in a later one ("warm");
2. step: ``--warmup`` steps, then ``--steps`` steps each ended by ``block_until_ready`` (median,
   p10, p90, img/s: docs/performance.md#how-we-measure), then as many issued back to back with one
   sync at the end (what a loop that does not sync every step gets);
3. memory: ``device.memory_stats()['peak_bytes_in_use']`` (None on CPU; run with
   XLA_PYTHON_CLIENT_PREALLOCATE=false, which this module sets unless the caller did) and XLA's
   own memory analysis of the compiled step;
4. epoch (``--epoch``): one epoch through the in-memory on-device input pipeline
   (``DevicePipeline``, fed synthetic uint8 arrays of CIFAR's size: the real input path without
   the dataset files), against the same number of steps on one fixed batch.

Synthetic data is random normal images and random labels made on the device; never zeros,
which can run faster than real data. A benchmark, not a test: it measures and records.
Needs ml_collections (``preact.training`` and ``configs/default.py`` import it): on a machine
without it, carry its wheel (see run_all.py).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

# Before JAX starts: allocate as needed, so the peak-memory figure is the step's, not the pool's.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax
import numpy as np

from benchmarks import common

LAYOUTS = ("scanned", "unrolled")
FP32_PRECISIONS = {"tf32": "tensorfloat32", "highest": "highest"}
IMAGE_SHAPE = (32, 32, 3)
CROP_PADDING = 4  # the paper's CIFAR augmentation pads 4 pixels on each side

_HIT, _MISS = "/jax/compilation_cache/cache_hits", "/jax/compilation_cache/cache_misses"
_cache_events = {_HIT: 0, _MISS: 0}


def _count_cache_event(event: str, **kwargs: Any) -> None:
    if event in _cache_events:
        _cache_events[event] += 1


jax.monitoring.register_event_listener(_count_cache_event)


def configure_jax(cache_dir: str | None, fp32_precision: str) -> None:
    """Process-wide JAX settings; call before anything is compiled."""
    jax.config.update("jax_default_matmul_precision", FP32_PRECISIONS[fp32_precision])
    if cache_dir:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        # Cache every executable, however fast it compiled or small it is, so the smoke runs
        # exercise the warm path too.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _config(
    depth: int, block: str, batch: int, dtype: str, layout: str, overrides: dict[str, Any]
) -> Any:
    from preact.configs import default

    c = default.get_config()
    c.model.depth = depth
    c.model.block = block
    c.model.scan = layout == "scanned"
    for name, value in overrides.items():
        setattr(c.model, name, value)
    c.dtype = dtype
    c.batch_size = batch
    c.eval_batch_size = batch
    return c


def _memory_stats(device: jax.Device) -> dict[str, Any] | None:
    stats = device.memory_stats()
    if not stats:
        return None  # the CPU backend keeps none
    keys = ("peak_bytes_in_use", "bytes_in_use", "bytes_limit", "largest_alloc_size")
    return {k: int(stats[k]) for k in keys if k in stats}


def _compiled_memory(compiled: Any) -> dict[str, int] | None:
    try:
        analysis = compiled.memory_analysis()
    except (NotImplementedError, jax.errors.JaxRuntimeError):
        return None
    if analysis is None:
        return None
    fields = (
        "argument_size_in_bytes",
        "output_size_in_bytes",
        "alias_size_in_bytes",
        "temp_size_in_bytes",
        "generated_code_size_in_bytes",
    )
    return {f: int(getattr(analysis, f)) for f in fields if hasattr(analysis, f)}


def _synthetic_pipeline(num_examples: int, batch: int, device: jax.Device) -> Any:
    from preact.data import normalize
    from preact.data.arrays import InMemoryDataset, LabeledImages
    from preact.data.device_pipeline import DevicePipeline

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (num_examples, *IMAGE_SHAPE), dtype=np.uint8)
    labels = rng.integers(0, 10, num_examples).astype(np.int32)
    split = LabeledImages(images, labels)
    data = InMemoryDataset("synthetic", split, split, 10, "synthetic uint8 arrays, CIFAR-10 size")
    norm = normalize.for_arrays("per_pixel_mean", "synthetic", images)
    return DevicePipeline(
        data,
        norm,
        train=split,
        evaluation=split,
        batch_size=batch,
        eval_batch_size=batch,
        seed=0,
        padding=CROP_PADDING,
        flip=True,
        devices=[device],
        process_index=0,
        process_count=1,
    )


def worker_environment(device: jax.Device, cache_dir: str | None) -> dict:
    import jaxlib

    try:
        info = jax.print_environment_info(return_string=True)
    except Exception as e:  # the info string shells out to nvidia-smi; never fail a run on it
        info = f"unavailable: {e!r}"
    return {
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "platform_version": getattr(device.client, "platform_version", None),
        "local_devices": jax.local_device_count(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        # None: the backend default (on recent NVIDIA GPUs that lets float32 convs use TF32).
        "matmul_precision": jax.config.jax_default_matmul_precision,
        "compilation_cache_dir": cache_dir,
        "xla_flags": os.environ.get("XLA_FLAGS"),
        "preallocate": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"),
        "jax_environment_info": info,
    }


def run(
    *,
    depth: int,
    batch: int,
    dtype: str,
    layout: str,
    warmup: int,
    steps: int,
    epoch: bool,
    num_examples: int = 50_000,
    cache_dir: str | None = None,
    rep: int = 1,
    model_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure one configuration; returns its run record (see the module docstring).

    ``model_overrides``: fields of ``config.model`` to set besides the default config's (e.g.
    ``{"conv_grad": "canonical"}``), recorded in the run record.

    ``cache_dir`` and the float32 precision must already be set with :func:`configure_jax`
    (the cache directory is only recorded here): JAX reads them before its first compilation.
    """
    from preact import configuration, networks, training

    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid: {LAYOUTS}")
    block = common.block_of(depth)
    start = time.perf_counter()
    device = jax.local_devices()[0]
    config = _config(depth, block, batch, dtype, layout, model_overrides or {})
    model = configuration.build_model(config)
    record: dict[str, Any] = {
        "framework": "jax",
        "net": common.net_name(depth),
        "depth": depth,
        "block": block,
        "batch": batch,
        "dtype": dtype,
        "variant": layout,
        "rep": rep,
        "status": "ok",
        "warmup_steps": warmup,
        "model_overrides": dict(model_overrides or {}),
    }

    t0 = time.perf_counter()
    state = training.create_train_state(config, model, IMAGE_SHAPE)
    jax.block_until_ready(state)
    init_s = time.perf_counter() - t0
    record["params"] = networks.count_params(state.params)

    p_train_step = training.make_train_step(config, devices=[device])
    k_image, k_label = jax.random.split(jax.random.key(1))
    fixed_batch = {
        "image": jax.device_put(jax.random.normal(k_image, (1, batch, *IMAGE_SHAPE)), device),
        "label": jax.device_put(jax.random.randint(k_label, (1, batch), 0, 10), device),
    }

    before = dict(_cache_events)
    t0 = time.perf_counter()
    lowered = p_train_step.lower(state, fixed_batch)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    hits, misses = (_cache_events[e] - before[e] for e in (_HIT, _MISS))
    cache = "off" if not cache_dir else ("warm" if hits and not misses else "cold")
    record["compile"] = {
        "cache": cache,
        "cache_hits": hits,
        "cache_misses": misses,
        "trace_lower_s": round(t1 - t0, 3),
        "compile_s": round(t2 - t1, 3),
        "total_s": round(t2 - t0, 3),
        "init_state_s": round(init_s, 3),
    }

    def step(batch_: dict[str, jax.Array]) -> dict[str, jax.Array]:
        nonlocal state
        state, metrics = compiled(state, batch_)
        return metrics

    # PJRT marks all outputs of one execution ready together, so blocking on the metrics waits
    # for the whole step (the updated state included) without walking the state's leaves, which
    # would cost the unrolled 1001-layer net (thousands of leaves) host time every step.
    for _ in range(warmup):
        jax.block_until_ready(step(fixed_batch))
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        jax.block_until_ready(step(fixed_batch))
        times.append(time.perf_counter() - t0)
    record["step"] = common.step_stats(times, batch)
    t0 = time.perf_counter()
    for _ in range(steps):
        metrics = step(fixed_batch)
    jax.block_until_ready(metrics)
    record["pipelined"] = common.window_stats(time.perf_counter() - t0, steps, batch)
    record["memory"] = {
        "after_steps": _memory_stats(device),
        "compiled": _compiled_memory(compiled),
    }

    if epoch:
        t0 = time.perf_counter()
        pipeline = _synthetic_pipeline(num_examples, batch, device)
        jax.block_until_ready(pipeline.train_batch(0))  # compiles the batch function
        setup_s = time.perf_counter() - t0
        n = pipeline.steps_per_epoch
        t0 = time.perf_counter()
        for _ in range(n):
            metrics = step(fixed_batch)
        jax.block_until_ready(metrics)
        step_only_s = time.perf_counter() - t0
        # Epoch 1, not 0: its shuffled order is drawn inside the timed loop, as in training.
        t0 = time.perf_counter()
        for s in range(n, 2 * n):
            metrics = step(pipeline.train_batch(s))
        jax.block_until_ready(metrics)
        end_to_end_s = time.perf_counter() - t0
        record["epoch"] = {
            "num_examples": num_examples,
            "steps": n,
            "pipeline_setup_s": round(setup_s, 3),
            "step_only_s": round(step_only_s, 4),
            "end_to_end_s": round(end_to_end_s, 4),
            "ratio": round(end_to_end_s / step_only_s, 4),
            "img_per_s_end_to_end": round(n * batch / end_to_end_s, 1),
        }
        record["memory"]["after_epoch"] = _memory_stats(device)
    else:
        record["epoch"] = None

    last = jax.device_get(metrics)
    record["final_loss"] = float(last["train_loss"])
    record["loss_finite"] = bool(np.isfinite(last["train_loss"]) and last["finite"])
    record["wall_s"] = round(time.perf_counter() - start, 2)
    record["worker_env"] = worker_environment(device, cache_dir)
    # XLA:CPU's intra-op pool (on a GPU, the host's); it has no separate inter-op pool (None).
    record["threads"] = common.thread_record("jax", common.xla_cpu_threads(), None)
    return record


def describe(record: dict[str, Any]) -> str:
    """One line for the log."""
    s, c = record["step"], record["compile"]
    line = (
        f"jax   {record['net']:>12} b{record['batch']} {record['dtype']:8} "
        f"{record['variant']:9} rep{record['rep']}: compile {c['total_s']:.1f}s ({c['cache']}), "
        f"{s['img_per_s']:,.0f} img/s, {s['median_ms']:.2f} ms "
        f"(p10 {s['p10_ms']:.2f}, p90 {s['p90_ms']:.2f}), "
        f"back to back {record['pipelined']['img_per_s']:,.0f} img/s"
    )
    if record["epoch"]:
        line += f", epoch e2e/step-only {record['epoch']['ratio']:.3f}"
    peak = (record["memory"]["after_steps"] or {}).get("peak_bytes_in_use")
    if peak is not None:
        line += f", peak {peak / 2**30:.2f} GiB"
    return line


def main() -> None:
    from preact import xla_flags

    xla_flags.apply_defaults()  # the project's XLA:CPU settings, as train.py has them
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, required=True, choices=sorted(common.NETS))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    parser.add_argument("--layout", default="scanned", choices=LAYOUTS)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--epoch", action="store_true", help="also time one pipeline epoch")
    parser.add_argument("--num-examples", type=int, default=50_000)
    parser.add_argument("--cache-dir", default="", help="JAX persistent compilation cache")
    parser.add_argument("--fp32-precision", default="tf32", choices=tuple(FP32_PRECISIONS))
    parser.add_argument("--rep", type=int, default=1)
    parser.add_argument("--json-out", default="", help="write the run record here")
    parser.add_argument(
        "--conv-grad", choices=("auto", "canonical", "xla"), help="config.model.conv_grad"
    )
    parser.add_argument(
        "--fused-bn-relu",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="config.model.fused_bn_relu",
    )
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    overrides = {"conv_grad": args.conv_grad, "fused_bn_relu": args.fused_bn_relu}

    configure_jax(args.cache_dir or None, args.fp32_precision)
    record = run(
        depth=args.depth,
        batch=args.batch,
        dtype=args.dtype,
        layout=args.layout,
        warmup=args.warmup,
        steps=args.steps,
        epoch=args.epoch,
        num_examples=args.num_examples,
        cache_dir=args.cache_dir or None,
        rep=args.rep,
        model_overrides={k: v for k, v in overrides.items() if v is not None},
    )
    print(describe(record), flush=True)
    if args.json_out:
        common.write_json(args.json_out, record)


if __name__ == "__main__":
    main()
