"""What ``config.deterministic_reductions`` costs: train-step time and memory, ordered sums
against XLA's all-reduce, on fake CPU devices (or the real ones of a GPU/TPU machine).

    python -m benchmarks.deterministic_reductions [--devices 4] [--depth 110] [--batch 64]
        [--steps 10] [--reps 3] [--out benchmarks/results/deterministic_reductions_cpu.json]

The two variants alternate (A/B/A/B, ``--reps`` rounds) in this one process, each timed over
``--steps`` steps after a warm-up step. Memory is XLA's own analysis of each compiled step
(temporary and argument bytes per device). PreAct-110 on CIFAR-shaped random data, float32, the
default config otherwise (per-device BN statistics, so the ordered sums are the gradients', the
running averages' and the two metrics').
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--depth", type=int, default=110)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    os.environ.setdefault(
        "XLA_FLAGS", f"--xla_force_host_platform_device_count={args.devices}"
    )  # before JAX starts: fake CPU devices
    from preact import xla_flags

    xla_flags.apply_defaults()  # the project's XLA:CPU settings, as train.py has them

    import jax
    import numpy as np

    from benchmarks import common
    from preact import configuration, training
    from preact.configs import default

    devices = jax.local_devices()[: args.devices]
    if len(devices) != args.devices:
        sys.exit(f"error: {args.devices} devices asked for, {len(devices)} found")
    rng = np.random.default_rng(0)
    per_device = args.batch // args.devices
    batch = {
        "image": rng.normal(size=(args.devices, per_device, 32, 32, 3)).astype(np.float32),
        "label": rng.integers(0, 10, (args.devices, per_device)).astype(np.int32),
    }
    variants = {}
    for ordered in (False, True):
        config = default.get_config()
        config.model.depth = args.depth
        config.batch_size = args.batch
        config.deterministic_reductions = ordered
        model = configuration.build_model(config)
        state = training.replicate(training.create_train_state(config, model, (32, 32, 3)), devices)
        step = training.make_train_step(config, devices)
        memory = step.lower(state, batch).compile().memory_analysis()
        started = time.perf_counter()
        state, metrics = step(state, batch)  # compile and one step
        jax.block_until_ready(metrics)
        variants[ordered] = {
            "step": step,
            "state": state,
            "compile_and_first_step_s": time.perf_counter() - started,
            "temp_bytes": getattr(memory, "temp_size_in_bytes", None),
            "argument_bytes": getattr(memory, "argument_size_in_bytes", None),
            "seconds": [],
        }
    for _ in range(args.reps):
        for ordered in (False, True):  # alternate, so drift in the machine hits both
            v = variants[ordered]
            started = time.perf_counter()
            for _ in range(args.steps):
                v["state"], metrics = v["step"](v["state"], batch)
            jax.block_until_ready(metrics)
            v["seconds"].append((time.perf_counter() - started) / args.steps)
    records = []
    for ordered, v in variants.items():
        record = {
            "variant": "ordered" if ordered else "xla_all_reduce",
            "ms_per_step": [round(1000 * s, 2) for s in v["seconds"]],
            "median_ms_per_step": round(1000 * float(np.median(v["seconds"])), 2),
            "temp_bytes_per_device": v["temp_bytes"],
            "argument_bytes_per_device": v["argument_bytes"],
            "compile_and_first_step_s": round(v["compile_and_first_step_s"], 2),
        }
        records.append(record)
        print(record)
    base, ordered = records
    summary = {
        "time_ratio": round(ordered["median_ms_per_step"] / base["median_ms_per_step"], 3),
        "extra_temp_mib_per_device": (
            round((ordered["temp_bytes_per_device"] - base["temp_bytes_per_device"]) / 2**20, 2)
            if base["temp_bytes_per_device"] is not None
            else None
        ),
        "params": int(sum(np.size(x) for x in jax.tree.leaves(variants[False]["state"].params))),
    }
    print(summary)
    result = {
        "benchmark": "deterministic_reductions",
        "settings": {**vars(args), "device_kind": devices[0].device_kind, "dtype": "float32"},
        "runs": records,
        "summary": summary,
        "environment": common.environment(),
    }
    if args.out:
        common.write_json(args.out, result)


if __name__ == "__main__":
    main()
