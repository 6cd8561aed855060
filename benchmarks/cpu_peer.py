r"""The default CPU train step against plain PyTorch eager, same cores and threads, alternating.

    python -m benchmarks.cpu_peer --out benchmarks/results/cpu_vs_torch.json

For each net of ``--nets`` (``preact110``: ``configs/preact110.py`` at batch 64 on CIFAR-shaped
random data; ``fashion_mnist``: ``configs/fashion_mnist.py``'s PreAct-20, width 16, at its batch
128 on 28x28x1), float32, one CPU device, each variant of ``--variants`` runs in its own process,
``--reps`` times, alternating A/B/A/B:

- ``jax``: the project's default train step (``preact.training.make_train_step`` of the config,
  unchanged), data already on the device;
- ``jax:FIELD=VALUE;...``: the same with ``config.model`` fields overridden (A/B of a layer);
  ``jax:xla_defaults=0`` runs it without the project's XLA:CPU settings (``preact.xla_flags``);
- ``torch``: the PyTorch peer (``benchmarks/torch_preact.py``: same network and parameter count)
  in plain eager mode, ``channels_last``, SGD momentum 0.9 with weight decay 1e-4.

Every worker gets the environment and cores of ``run_all.worker_env`` / ``worker_cores``
(``--threads``, default all of this process's cores): XLA:CPU's pool and
``torch.set_num_threads`` see the same count, and each record states it. Per run: ``--warmup``
steps, then ``--steps`` steps each ended by a sync; the figure is the median step (img/s =
batch / median), with p10/p90. The summary gives, per net, each variant's median over its runs
and the ratio to ``torch``. A benchmark: it prints and records, it asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks import common

# The variant option that is not a model field: jax:xla_defaults=0 starts the worker with
# PREACT_XLA_DEFAULTS=0, so A/B of the project's XLA:CPU settings alternates in one run.
XLA_DEFAULTS = "xla_defaults"
NETS = {
    # name: (config file's module, batch, image shape HWC)
    "preact110": ("configs.preact110", 64, (32, 32, 3)),
    "fashion_mnist": ("configs.fashion_mnist", 128, (28, 28, 1)),
}


def _config(net: str, overrides: dict[str, Any]) -> Any:
    if common.REPO_ROOT not in sys.path:
        sys.path.insert(0, common.REPO_ROOT)
    module, batch, _ = NETS[net]
    c = importlib.import_module(module).get_config()
    c.batch_size = batch
    c.dtype = "float32"
    for name, value in overrides.items():
        c.model[name] = value
    return c


def parse_variant(variant: str) -> tuple[str, dict[str, Any]]:
    """``jax``, ``torch`` or ``jax:field=value;...`` -> (framework, model overrides).

    Fields are separated by ``;`` (``,`` separates the variants of ``--variants``); a value
    that parses as JSON (``32``, ``true``) is taken as such, any other as a string."""
    framework, _, rest = variant.partition(":")
    if framework not in ("jax", "torch") or (rest and framework != "jax"):
        raise ValueError(f"variant {variant!r}: jax, torch or jax:FIELD=VALUE;...")
    overrides: dict[str, Any] = {}
    for item in filter(None, rest.split(";")):
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return framework, overrides


def variant_env(env: dict[str, str], variant: str) -> dict[str, str]:
    """The worker environment of one variant: ``env``, with ``PREACT_XLA_DEFAULTS`` set when
    the variant names ``xla_defaults`` (0: without the project's XLA:CPU settings)."""
    from preact import xla_flags

    out = dict(env)
    options = parse_variant(variant)[1]
    if XLA_DEFAULTS in options:
        out[xla_flags.OPT_OUT] = str(int(bool(options[XLA_DEFAULTS])))
    return out


def _timed(step: Any, warmup: int, steps: int) -> tuple[list[float], list[float]]:
    warm = []
    for _ in range(warmup):
        t0 = time.perf_counter()
        step()
        warm.append(time.perf_counter() - t0)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return warm, times


def jax_worker(net: str, overrides: dict[str, Any], warmup: int, steps: int) -> dict[str, Any]:
    import jax

    from preact import configuration, networks, training

    _, batch, image_shape = NETS[net]
    config = _config(net, {k: v for k, v in overrides.items() if k != XLA_DEFAULTS})
    devices = jax.local_devices()[:1]
    model = configuration.build_model(config)
    state = training.replicate(
        training.create_train_state(config, model, image_shape), devices=devices
    )
    params = networks.count_params(state.params)
    key = jax.random.key(1)
    data = {
        "image": jax.random.normal(key, (1, batch, *image_shape)),
        "label": jax.random.randint(key, (1, batch), 0, 10),
    }
    p_step = training.make_train_step(config, devices=devices)
    holder = {"state": state}

    def step() -> None:
        holder["state"], metrics = p_step(holder["state"], data)
        jax.block_until_ready(metrics)

    warm, times = _timed(step, warmup, steps)
    return {
        "framework": "jax",
        "params": params,
        "depth": config.model.depth,
        "model_overrides": overrides,
        "xla_flags": os.environ.get("XLA_FLAGS"),
        "threads": common.thread_record("jax", common.xla_cpu_threads(), None),
        "first_step_s": round(warm[0], 2) if warm else None,
        "versions": {"jax": jax.__version__, "python": platform.python_version()},
        "times_s": [round(t, 5) for t in times],
        **common.step_stats(times, batch),
    }


def torch_worker(net: str, warmup: int, steps: int, threads: int | None) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from benchmarks import torch_preact

    torch.set_num_threads(threads or common.affinity_cores())
    torch.manual_seed(0)
    _, batch, (h, w, c) = NETS[net]
    config = _config(net, {})
    model = torch_preact.PreActResNet(
        config.model.depth, config.model.block, width=config.model.width or 16, in_channels=c
    )
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch_preact.make_optimizer(model)
    images = torch.randn(batch, c, h, w).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch,))

    def step() -> None:
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    warm, times = _timed(step, warmup, steps)
    return {
        "framework": "torch",
        "params": torch_preact.count_params(model),
        "depth": config.model.depth,
        "mode": "eager",
        "channels_last": True,
        "threads": common.thread_record(
            "torch", torch.get_num_threads(), torch.get_num_interop_threads()
        ),
        "first_step_s": round(warm[0], 2) if warm else None,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "torch_parallel_info": torch.__config__.parallel_info(),
        "times_s": [round(t, 5) for t in times],
        **common.step_stats(times, batch),
    }


def drive(args: argparse.Namespace) -> None:
    from benchmarks import run_all

    threads = args.threads or common.affinity_cores()
    cores = run_all.worker_cores(threads)
    scratch = tempfile.mkdtemp(prefix="preact_cpu_peer_")
    env = run_all.worker_env(dict(os.environ), threads, scratch)
    nets, variants = args.nets.split(","), args.variants.split(",")
    results: dict[str, Any] = {
        "environment": {
            **common.environment([sys.executable, "-m", "benchmarks.cpu_peer", *sys.argv[1:]]),
            "interpreters": {"jax": args.jax_python, "torch": args.torch_python},
            "threads": {"per_worker": threads, "cores": cores},
            "worker_env": {k: env.get(k) for k in common.RECORDED_ENV},
            "note": args.note,
        },
        "protocol": {
            "warmup_steps": args.warmup,
            "timed_steps": args.steps,
            "order": "for each repetition, for each net, each variant in its own process",
        },
        "runs": [],
    }
    for rep in range(1, args.reps + 1):
        for net in nets:
            for variant in variants:
                out = os.path.join(scratch, f"run{len(results['runs'])}.json")
                python = args.torch_python if variant == "torch" else args.jax_python
                worker_env = variant_env(env, variant)
                cmd = [python, "-m", "benchmarks.cpu_peer", "worker", "--net", net,
                       "--variant", variant, "--warmup", str(args.warmup),
                       "--steps", str(args.steps), "--json-out", out]  # fmt: skip
                t0 = time.perf_counter()
                proc = subprocess.run(
                    cmd, env=worker_env, cwd=common.REPO_ROOT, capture_output=True, text=True,
                    preexec_fn=lambda: os.sched_setaffinity(0, cores),
                )  # fmt: skip
                record: dict[str, Any] = {"net": net, "variant": variant, "rep": rep}
                if proc.returncode == 0:
                    record.update(status="ok", **common.read_json(out))
                else:
                    record.update(status="error", error=(proc.stdout + proc.stderr)[-3000:])
                record["wall_s"] = round(time.perf_counter() - t0, 1)
                record["load_average"] = os.getloadavg()
                results["runs"].append(record)
                if record["status"] == "ok":
                    print(f"rep{rep} {net:>13} {variant:>28}: {record['img_per_s']:7.1f} img/s "
                          f"median {record['median_ms']:.0f} ms (p10 {record['p10_ms']:.0f}, "
                          f"p90 {record['p90_ms']:.0f}), threads "
                          f"{record['threads']['intra_op']}", flush=True)  # fmt: skip
                else:
                    print(f"rep{rep} {net} {variant}: error\n{record['error']}", flush=True)
                if args.out:
                    common.write_json(args.out, results)
    results["thread_mismatches"] = common.thread_mismatches(results["runs"])
    results["summary"] = summarize(results["runs"])
    for net, row in results["summary"].items():
        for variant, s in row.items():
            print(f"{net:>13} {variant:>28}: median of runs {s['img_per_s']:7.1f} img/s "
                  f"(runs {s['runs_img_per_s']}), x{s['vs_torch']} PyTorch eager")  # fmt: skip
    if args.out:
        common.write_json(args.out, results)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per net and variant: median over runs of each run's img/s, and the ratio to torch."""
    table: dict[str, Any] = {}
    for r in runs:
        if r["status"] == "ok":
            table.setdefault(r["net"], {}).setdefault(r["variant"], []).append(r["img_per_s"])
    out: dict[str, Any] = {}
    for net, row in table.items():
        torch_ips = float(np.median(row["torch"])) if "torch" in row else None
        out[net] = {
            v: {
                "img_per_s": round(float(np.median(ips)), 1),
                "runs_img_per_s": ips,
                "vs_torch": round(float(np.median(ips)) / torch_ips, 2) if torch_ips else None,
            }
            for v, ips in row.items()
        }
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        from preact import xla_flags

        xla_flags.apply_defaults()  # the default path: the XLA:CPU settings train.py starts with
        p = argparse.ArgumentParser()
        p.add_argument("worker")
        p.add_argument("--net", required=True, choices=tuple(NETS))
        p.add_argument("--variant", required=True)
        p.add_argument("--warmup", type=int, default=3)
        p.add_argument("--steps", type=int, default=10)
        p.add_argument("--json-out", required=True)
        a = p.parse_args()
        framework, overrides = parse_variant(a.variant)
        threads = int(os.environ.get(common.THREADS_ENV) or 0) or None
        if framework == "jax":
            record = jax_worker(a.net, overrides, a.warmup, a.steps)
        else:
            record = torch_worker(a.net, a.warmup, a.steps, threads)
        common.write_json(a.json_out, record)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default=",".join(NETS))
    parser.add_argument("--variants", default="jax,torch")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", default=None)
    parser.add_argument("--note", default="", help="recorded beside the figures")
    # Each framework may run under its own interpreter (a venv with the newest JAX on Python
    # 3.12 against one with PyTorch), still alternated in one run on the same cores.
    parser.add_argument("--jax-python", default=sys.executable, help="interpreter of jax workers")
    parser.add_argument("--torch-python", default=sys.executable, help="of the torch worker")
    args = parser.parse_args()
    for v in args.variants.split(","):
        parse_variant(v)
    drive(args)


if __name__ == "__main__":
    main()
