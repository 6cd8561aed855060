r"""CPU figures of the real train step: throughput by model layout, and compile time.

    python -m benchmarks.cpu --out=benchmarks/results/cpu.json

1. Throughput of ``preact.training``'s train step (one device, synthetic data, SGD update and
   BN statistics included) on a small net at a size a CPU user trains (default PreAct-20, width
   16, 28x28x1, batch 128), for each layout of ``--layouts``: ``default`` (the model fields of
   ``configs/default.py``), ``unrolled`` (``scan=False``), ``scan_xla_grad`` (the scanned net
   with JAX's own convolution gradients: what the default was before
   ``preact.layers.canonical_grad_conv``), ``unfused`` (``fused_bn_relu=False``). The layouts
   are timed in alternation (A/B/A/B), ``--reps`` rounds of ``--steps`` steps each, so a
   machine whose load changes affects them alike; the figure is the median step.
2. Compile time (trace, lower and XLA compile, no persistent cache) of the default train step of
   ``--compile-depth`` (default 1001) at batch 128.

A benchmark, not a test: it prints and records figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks import common
from preact import configuration, training

LAYOUTS = {
    "default": {},
    "unrolled": {"scan": False},
    "scan_xla_grad": {"conv_grad": "xla"},
    "unfused": {"fused_bn_relu": False},
}


def make_config(depth: int, width: int, batch: int, dtype: str, fields: dict[str, Any]) -> Any:
    from preact.configs import default

    c = default.get_config()
    c.model.depth = depth
    c.model.block = "bottleneck" if (depth - 2) % 6 else "basic"
    c.model.width = width
    for field, value in fields.items():
        c.model[field] = value
    c.dtype = dtype
    c.batch_size = batch
    c.rng_impl = "rbg"  # the step draws no random numbers; rbg only compiles faster
    return c


def _step_and_inputs(config: Any, image_shape: tuple[int, ...]) -> tuple[Any, Any, Any]:
    device = jax.local_devices()[:1]
    model = configuration.validate(config, num_devices=1)
    state = training.replicate(
        training.create_train_state(config, model, image_shape), devices=device
    )
    key = jax.random.key(0, impl="rbg")
    batch = {
        "image": jax.random.normal(key, (1, config.batch_size, *image_shape)),
        "label": jax.random.randint(key, (1, config.batch_size), 0, model.num_classes),
    }
    return training.make_train_step(config, devices=device), state, batch


def throughput(args: argparse.Namespace) -> list[dict[str, Any]]:
    image_shape = (args.image_size, args.image_size, args.channels)
    steps = {}
    for name in args.layouts.split(","):
        config = make_config(args.depth, args.width, args.batch, args.dtype, LAYOUTS[name])
        step, state, batch = _step_and_inputs(config, image_shape)
        start = time.perf_counter()
        state, _ = jax.block_until_ready(step(state, batch))
        steps[name] = {"step": step, "state": state, "batch": batch, "times": [],
                       "first_call_s": time.perf_counter() - start}  # fmt: skip
    for _ in range(args.reps):
        for run in steps.values():
            state = run["state"]
            for _ in range(args.steps):
                start = time.perf_counter()
                state, _ = jax.block_until_ready(run["step"](state, run["batch"]))
                run["times"].append(time.perf_counter() - start)
            run["state"] = state
    records = []
    for name, run in steps.items():
        record = {
            "measure": "train_step",
            "layout": name,
            "model_fields": LAYOUTS[name],
            "depth": args.depth,
            "width": args.width,
            "image_shape": list(image_shape),
            "batch": args.batch,
            "dtype": args.dtype,
            "first_call_s": round(run["first_call_s"], 2),
            **common.step_stats(run["times"], args.batch),
        }
        records.append(record)
        print(f"{name:>14}: {record['img_per_s']:7.1f} img/s  median {record['median_ms']:.0f} ms"
              f"  p10 {record['p10_ms']:.0f}  p90 {record['p90_ms']:.0f}", flush=True)  # fmt: skip
    default = next((r for r in records if r["layout"] == "default"), None)
    unrolled = next((r for r in records if r["layout"] == "unrolled"), None)
    if default and unrolled:
        print(f"default / unrolled speed: {default['img_per_s'] / unrolled['img_per_s']:.2f}")
    return records


def compile_time(depth: int, batch: int, dtype: str) -> dict[str, Any]:
    config = make_config(depth, 16, batch, dtype, {})
    config.rng_impl = "threefry2x32"  # the default config's generator, as a user compiles it
    model = configuration.validate(config, num_devices=1)
    image_shape = configuration.dataset_info(config).image_shape
    start = time.perf_counter()
    state = training.abstract_train_state(config, model, image_shape)
    batch_shapes = {
        "image": jax.ShapeDtypeStruct((1, batch, *image_shape), jnp.float32),
        "label": jax.ShapeDtypeStruct((1, batch), jnp.int32),
    }
    lowered = training.make_train_step(config, devices=jax.local_devices()[:1]).lower(
        state, batch_shapes
    )
    traced = time.perf_counter() - start
    lowered.compile()
    total = time.perf_counter() - start
    record = {
        "measure": "compile",
        "net": common.net_name(depth),
        "depth": depth,
        "batch": batch,
        "dtype": dtype,
        "trace_lower_s": round(traced, 2),
        "compile_s": round(total - traced, 2),
        "total_s": round(total, 2),
    }
    print(f"{record['net']} train step, batch {batch}, {dtype}: trace+lower {traced:.1f} s, "
          f"compile {total - traced:.1f} s, total {total:.1f} s", flush=True)  # fmt: skip
    return record


def main(argv: list[str] | None = None) -> None:
    from preact import xla_flags

    xla_flags.apply_defaults()  # the project's XLA:CPU settings, as train.py has them
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--steps", type=int, default=5, help="timed steps per layout and round")
    parser.add_argument("--reps", type=int, default=3, help="rounds of A/B alternation")
    parser.add_argument("--compile-depth", type=int, default=1001, help="0: skip")
    parser.add_argument("--out", default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    unknown = set(args.layouts.split(",")) - set(LAYOUTS)
    if unknown:
        parser.error(f"unknown layouts {sorted(unknown)}; valid: {sorted(LAYOUTS)}")
    runs = throughput(args)
    if args.compile_depth:
        runs.append(compile_time(args.compile_depth, 128, args.dtype))
    if args.out:
        command = [sys.executable, "-m", "benchmarks.cpu", *(argv or sys.argv[1:])]
        env = common.environment(command)
        env["jax_backend"] = jax.default_backend()
        env["load_average_at_end"] = os.getloadavg()  # other work on the cores skews the figures
        common.write_json(args.out, {"environment": env, "runs": runs})


if __name__ == "__main__":
    main()
