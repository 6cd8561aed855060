r"""Where the default CPU train step spends its time: convolutions, BatchNorm-ReLU, optimizer, rest.

    python -m benchmarks.cpu_profile --out benchmarks/results/cpu_profile.json

For each net (``--nets``: ``preact110``, the default train step of ``configs/preact110.py`` at
batch 64 on CIFAR-shaped random data; ``fashion_mnist``, ``configs/fashion_mnist.py``'s
PreAct-20 at its batch 128 on 28x28x1), on one CPU device, float32:

1. the real train step (``preact.training.make_train_step``) and, jitted alone, the network's
   forward pass (train mode, BN statistics updated) and forward+backward (``value_and_grad`` of
   the loss, as the step computes it);
2. every piece of the network with the same shapes, jitted one by one: each distinct
   convolution's forward, its backward (the scanned units' ``canonical_grad_conv`` rule, JAX's
   own for the first unit of a stage and the stem, as in the default network), each BN-ReLU's
   forward and backward (``preact.layers.BatchNormReLU``'s), and the optimizer update of the real
   parameters; each piece's median time is multiplied by how often the network runs it.

"rest" is the step's median minus the sum of the pieces: the shortcuts, pooling, head and loss,
the finiteness check, the copies and loop overhead XLA adds between the pieces (and what fusion
across pieces saves, which makes it smaller). The pieces and the whole steps are timed in
alternation (A/B/A/B, ``--reps`` rounds), median and p10/p90 per item, so a change in the load
of a shared machine affects them alike. A benchmark: it prints and records, it asserts nothing.
Also printed: each convolution's GFLOP/s (2 x multiply-adds of the padded convention) against a
matrix product of the same (M, K, N) as its im2col form.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from benchmarks import common
from preact import configuration, layers, training

NETS = {
    # name: (config module, batch, image shape)
    "preact110": ("configs.preact110", 64, (32, 32, 3)),
    "fashion_mnist": ("configs.fashion_mnist", 128, (28, 28, 1)),
}
_NHWC = ("NHWC", "HWIO", "NHWC")


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    batch: int
    size: int  # input height = width
    cin: int
    cout: int
    stride: int
    scanned: bool  # in a scanned unit: canonical_grad_conv's backward; else JAX's
    wrt_input: bool = True  # the stem's input is the image: no input gradient

    @property
    def out_size(self) -> int:
        return -(-self.size // self.stride)

    @property
    def macs(self) -> int:
        return self.batch * self.out_size**2 * 9 * self.cin * self.cout

    def name(self) -> str:
        kind = "scan" if self.scanned else ("stem" if not self.wrt_input else "first")
        return f"conv3x3 {self.cin}->{self.cout} s{self.stride} @{self.size} ({kind})"


def basic_net_pieces(
    depth: int, width: int, size: int, channels: int, batch: int
) -> tuple[dict[ConvSpec, int], dict[tuple[int, int, int], int]]:
    """The convolutions and BN-ReLUs of a full pre-activation basic CIFAR net (6n+2), scanned:
    {conv: count}, {(batch, size, channels) of a BN-ReLU input: count}."""
    n = (depth - 2) // 6
    convs: dict[ConvSpec, int] = {}
    bns: dict[tuple[int, int, int], int] = {}

    def add(d: dict, key: Any, k: int = 1) -> None:
        d[key] = d.get(key, 0) + k

    add(convs, ConvSpec(batch, size, channels, width, 1, False, wrt_input=False))
    cin = width
    for stage in range(3):
        cout = width * 2**stage
        stride = 1 if stage == 0 else 2
        add(bns, (batch, size, cin))  # the first unit's BN-ReLU, shared with the shortcut
        add(convs, ConvSpec(batch, size, cin, cout, stride, False))
        size = -(-size // stride)
        add(bns, (batch, size, cout))
        add(convs, ConvSpec(batch, size, cout, cout, 1, False))
        add(bns, (batch, size, cout), 2 * (n - 1))
        add(convs, ConvSpec(batch, size, cout, cout, 1, True), 2 * (n - 1))
        cin = cout
    add(bns, (batch, size, cin))  # final BN-ReLU
    return convs, bns


def _timer(fn: Callable[..., Any], *args: Any) -> Callable[[], float]:
    jax.block_until_ready(fn(*args))  # compile

    def once() -> float:
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        return time.perf_counter() - t0

    return once


def _conv_pieces(spec: ConvSpec, key: jax.Array) -> dict[str, Callable[[], float]]:
    kx, kw, kg = jax.random.split(key, 3)
    x = jax.random.normal(kx, (spec.batch, spec.size, spec.size, spec.cin))
    w = jax.random.normal(kw, (3, 3, spec.cin, spec.cout)) * 0.1
    g = jax.random.normal(kg, (spec.batch, spec.out_size, spec.out_size, spec.cout))
    if spec.scanned:
        conv = functools.partial(
            layers.canonical_grad_conv,
            window_strides=(1, 1),
            padding=((1, 1), (1, 1)),
            dimension_numbers=_NHWC,
        )
    else:
        # The units' padding: k // 2 on every side, at any stride (preact/units.py).
        pads = ((1, 1), (1, 1))
        conv = functools.partial(
            lax.conv_general_dilated,
            window_strides=(spec.stride, spec.stride),
            padding=pads,
            dimension_numbers=_NHWC,
        )
    fwd = jax.jit(lambda x, w: conv(x, w))
    if spec.wrt_input:
        _, vjp = jax.vjp(lambda x, w: conv(x, w), x, w)
    else:
        _, vjp = jax.vjp(lambda w: conv(x, w), w)
    bwd = jax.jit(lambda vjp, g: vjp(g))
    return {"fwd": _timer(fwd, x, w), "bwd": _timer(bwd, vjp, g)}


def _bn_pieces(shape: tuple[int, int, int], key: jax.Array) -> dict[str, Callable[[], float]]:
    b, s, c = shape
    x = jax.random.normal(key, (b, s, s, c))
    scale, bias = jnp.ones((c,)), jnp.zeros((c,))

    def f(x, scale, bias):
        return layers._bn_relu_train(x, scale, bias, 1e-5, None)[0]

    _, vjp = jax.vjp(f, x, scale, bias)
    return {
        "fwd": _timer(jax.jit(f), x, scale, bias),
        "bwd": _timer(jax.jit(lambda vjp, g: vjp(g)), vjp, x),
    }


def _matmul_timer(m: int, k: int, n: int, key: jax.Array) -> Callable[[], float]:
    a = jax.random.normal(key, (m, k))
    b = jax.random.normal(key, (k, n))
    return _timer(jax.jit(jnp.matmul), a, b)


def load_config(module: str, batch: int) -> Any:
    import importlib

    c = importlib.import_module(module).get_config()
    c.batch_size = batch
    c.dtype = "float32"
    return c


def profile_net(name: str, reps: int, steps: int) -> dict[str, Any]:
    module, batch, image_shape = NETS[name]
    config = load_config(module, batch)
    assert config.model.block == "basic" and config.model.scan and config.model.fused_bn_relu
    width = config.model.width or 16
    device = jax.local_devices()[:1]
    model = configuration.build_model(config)
    state = training.create_train_state(config, model, image_shape)
    key = jax.random.key(1)
    images = jax.random.normal(key, (batch, *image_shape))
    labels = jax.random.randint(key, (batch,), 0, 10)
    p_step = training.make_train_step(config, devices=device)
    r_state = training.replicate(state, devices=device)
    p_batch = {"image": images[None], "label": labels[None]}

    timers: dict[str, Callable[[], float]] = {}
    counts: dict[str, int] = {}
    groups: dict[str, str] = {}

    holder = {"state": r_state}

    def step_once() -> float:
        t0 = time.perf_counter()
        holder["state"], metrics = p_step(holder["state"], p_batch)
        jax.block_until_ready(metrics)
        return time.perf_counter() - t0

    step_once()  # compile
    timers["train_step"] = step_once

    variables = {"params": state.params, "batch_stats": state.batch_stats}

    def forward(variables, images):
        return model.apply(variables, images, train=True, mutable=["batch_stats"])

    def loss_and_grad(params, batch_stats, images, labels):
        def loss_fn(p):
            logits, new = model.apply(
                {"params": p, "batch_stats": batch_stats}, images, train=True,
                mutable=["batch_stats"],
            )  # fmt: skip
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            return loss, new

        return jax.value_and_grad(loss_fn, has_aux=True)(params)

    timers["network_forward"] = _timer(jax.jit(forward), variables, images)
    timers["network_forward_backward"] = _timer(
        jax.jit(loss_and_grad), state.params, state.batch_stats, images, labels
    )
    grads = jax.tree.map(jnp.ones_like, state.params)
    timers["optimizer"] = _timer(jax.jit(lambda s, g: s.apply_gradients(grads=g)), state, grads)
    counts["optimizer"] = 1
    groups["optimizer"] = "optimizer"

    convs, bns = basic_net_pieces(config.model.depth, width, image_shape[0], image_shape[2], batch)
    conv_info = {}
    for i, (spec, count) in enumerate(convs.items()):
        pieces = _conv_pieces(spec, jax.random.fold_in(key, i))
        for part, t in pieces.items():
            label = f"{spec.name()} {part}"
            timers[label], counts[label] = t, count
            groups[label] = f"conv_{part}"
        m = spec.batch * spec.out_size**2
        mm = f"matmul {m}x{9 * spec.cin}x{spec.cout} (im2col of {spec.name()})"
        timers[mm] = _matmul_timer(m, 9 * spec.cin, spec.cout, jax.random.fold_in(key, 100 + i))
        conv_info[spec.name()] = {**dataclasses.asdict(spec), "count": count, "macs": spec.macs,
                                  "matmul_label": mm}  # fmt: skip
    for i, (shape, count) in enumerate(bns.items()):
        pieces = _bn_pieces(shape, jax.random.fold_in(key, 200 + i))
        for part, t in pieces.items():
            label = f"bn_relu {shape[0]}x{shape[1]}x{shape[1]}x{shape[2]} {part}"
            timers[label], counts[label] = t, count
            groups[label] = f"bn_relu_{part}"

    times: dict[str, list[float]] = {label: [] for label in timers}
    for _ in range(reps):
        for label, t in timers.items():
            n = steps if label == "train_step" or label.startswith("network") else 3
            times[label] += [t() for _ in range(n)]
    med = {label: float(np.median(v)) for label, v in times.items()}
    items = {
        label: {
            "median_ms": round(med[label] * 1e3, 3),
            "p10_ms": round(float(np.percentile(v, 10)) * 1e3, 3),
            "p90_ms": round(float(np.percentile(v, 90)) * 1e3, 3),
            "samples": len(v),
            "count_per_step": counts.get(label),
            "group": groups.get(label),
        }
        for label, v in times.items()
    }
    summary: dict[str, float] = {}
    for label, group in groups.items():
        summary[group] = summary.get(group, 0.0) + med[label] * counts[label]
    step = med["train_step"]
    summary = {k: round(v * 1e3, 1) for k, v in summary.items()}
    summary["rest"] = round(step * 1e3 - sum(summary.values()), 1)
    for spec_name, info in conv_info.items():
        fwd = med[f"{spec_name} fwd"]
        info["fwd_gflops"] = round(2 * info["macs"] / fwd / 1e9, 1)
        info["bwd_gflops"] = round(
            (2 if info["wrt_input"] else 1) * 2 * info["macs"] / med[f"{spec_name} bwd"] / 1e9, 1
        )
        info["im2col_matmul_gflops"] = round(2 * info["macs"] / med[info["matmul_label"]] / 1e9, 1)
    result = {
        "net": name,
        "config": module.replace(".", "/") + ".py",
        "depth": config.model.depth,
        "width": width,
        "batch": batch,
        "image_shape": list(image_shape),
        "dtype": "float32",
        "train_step_img_per_s": round(batch / step, 1),
        "summary_ms_per_step": {"train_step": round(step * 1e3, 1), **summary},
        "network_forward_ms": round(med["network_forward"] * 1e3, 1),
        "network_forward_backward_ms": round(med["network_forward_backward"] * 1e3, 1),
        "convs": conv_info,
        "items": items,
    }
    print(f"\n{name}: train step {step * 1e3:.0f} ms ({batch / step:.1f} img/s); network forward "
          f"{result['network_forward_ms']:.0f} ms, forward+backward "
          f"{result['network_forward_backward_ms']:.0f} ms")  # fmt: skip
    for group, ms in result["summary_ms_per_step"].items():
        print(f"  {group:>24}: {ms:8.1f} ms  {100 * ms / (step * 1e3):5.1f}%")
    for spec_name, info in conv_info.items():
        gflops = (info["fwd_gflops"], info["bwd_gflops"], info["im2col_matmul_gflops"])
        print(f"  {spec_name:>40} x{info['count']:<3} GFLOP/s: fwd %6.1f, bwd %6.1f, "
              "im2col matmul %6.1f" % gflops)  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> None:
    from preact import xla_flags

    xla_flags.apply_defaults()  # the project's XLA:CPU settings, as train.py has them
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nets", default=",".join(NETS))
    parser.add_argument("--reps", type=int, default=3, help="rounds of alternation")
    parser.add_argument("--steps", type=int, default=3, help="whole steps timed per round")
    parser.add_argument("--out", default=None)
    parser.add_argument("--note", default="", help="recorded beside the figures")
    args = parser.parse_args(argv)
    sys.path.insert(0, common.REPO_ROOT)  # configs/
    runs = [profile_net(name, args.reps, args.steps) for name in args.nets.split(",")]
    if args.out:
        command = [sys.executable, "-m", "benchmarks.cpu_profile", *(argv or sys.argv[1:])]
        env = common.environment(command)
        env["jax_backend"] = jax.default_backend()
        env["threads"] = common.thread_record("jax", common.xla_cpu_threads(), None)
        env["load_average_at_end"] = os.getloadavg()
        env["note"] = args.note
        common.write_json(args.out, {"environment": env, "runs": runs})


if __name__ == "__main__":
    main()
