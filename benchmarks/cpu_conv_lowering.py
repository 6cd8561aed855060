r"""A 3x3 stride-1 convolution on XLA:CPU: the lowering the default uses against matrix products.

    python -m benchmarks.cpu_conv_lowering --out benchmarks/results/cpu_conv_lowering.json

For the scanned units' convolution shapes of PreAct-110 at batch 64 (32x32x16, 16x16x32,
8x8x64) and of the Fashion-MNIST net at batch 128 (28x28x16), times in alternation (3 rounds of
3 calls, median) the forward, input gradient (dx) and weight gradient (dw) as:
- ``conv``: what ``preact.layers.canonical_grad_conv`` runs (``lax.conv_general_dilated`` in
  the canonical NHWC/HWIO form for all three);
- ``im2col``: the 9 shifted copies concatenated on the channel axis (the patch matrix,
  materialized), then one matrix product;
- ``shifted`` (dw only): 9 matrix products of shifted views, stacked.
Each result is checked against ``conv`` before it is timed. A benchmark: prints and records.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from benchmarks import common
from preact import layers

_NHWC = ("NHWC", "HWIO", "NHWC")
_PADS = ((1, 1), (1, 1))
SHAPES = ((64, 32, 16), (64, 16, 32), (64, 8, 64), (128, 28, 16))  # (batch, size, channels)


def conv(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), _PADS, dimension_numbers=_NHWC)


def patches(x):
    _, h, w, _ = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return jnp.concatenate([xp[:, a : a + h, b : b + w, :] for a in range(3) for b in range(3)], -1)


def _flip(w):
    return jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)


def fwd_im2col(x, w):
    return jnp.einsum("nhwk,ko->nhwo", patches(x), w.reshape(-1, w.shape[-1]))


def dx_conv(g, w):
    return conv(g, _flip(w))


def dx_im2col(g, w):
    return fwd_im2col(g, _flip(w))


def dw_conv(x, g):
    w = jnp.zeros((3, 3, x.shape[-1], g.shape[-1]), x.dtype)
    return layers._conv_stride1_bwd(_PADS, None, (x, w), g)[1]


def dw_im2col(x, g):
    return jnp.einsum("nhwk,nhwo->ko", patches(x), g).reshape(3, 3, x.shape[-1], g.shape[-1])


def dw_shifted(x, g):
    _, h, w, c = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    taps = [
        jnp.einsum("nhwi,nhwo->io", xp[:, a : a + h, b : b + w, :], g)
        for a in range(3)
        for b in range(3)
    ]
    return jnp.stack(taps).reshape(3, 3, c, g.shape[-1])


CANDIDATES = {
    "fwd": {"conv": conv, "im2col": fwd_im2col},
    "dx": {"conv": dx_conv, "im2col": dx_im2col},
    "dw": {"conv": dw_conv, "im2col": dw_im2col, "shifted": dw_shifted},
}


def measure(batch: int, size: int, channels: int, rounds: int) -> dict:
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(k1, (batch, size, size, channels))
    w = jax.random.normal(k2, (3, 3, channels, channels)) * 0.1
    g = jax.random.normal(k3, (batch, size, size, channels))
    args = {"fwd": (x, w), "dx": (g, w), "dw": (x, g)}
    fns, times = {}, {}
    for part, cands in CANDIDATES.items():
        ref = np.asarray(jax.jit(cands["conv"])(*args[part]))
        for name, f in cands.items():
            fns[(part, name)] = jax.jit(f)
            got = np.asarray(fns[(part, name)](*args[part]))
            np.testing.assert_allclose(got, ref, rtol=2e-3, atol=2e-3 * np.abs(ref).max())
            times[(part, name)] = []
    for _ in range(rounds):
        for (part, name), f in fns.items():
            for _ in range(3):
                t0 = time.perf_counter()
                jax.block_until_ready(f(*args[part]))
                times[(part, name)].append(time.perf_counter() - t0)
    flops = 2 * batch * size * size * 9 * channels * channels
    out = {"batch": batch, "size": size, "channels": channels, "flops": flops, "results": {}}
    for (part, name), ts in times.items():
        med = float(np.median(ts))
        out["results"][f"{part} {name}"] = {
            "median_ms": round(med * 1e3, 2),
            "p10_ms": round(float(np.percentile(ts, 10)) * 1e3, 2),
            "p90_ms": round(float(np.percentile(ts, 90)) * 1e3, 2),
            "gflops": round(flops / med / 1e9, 1),
        }
    line = "  ".join(f"{k} {v['median_ms']:.1f} ms" for k, v in out["results"].items())
    print(f"b{batch} {size}x{size}x{channels}: {line}", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    from preact import xla_flags

    xla_flags.apply_defaults()  # the project's XLA:CPU settings, as train.py has them
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None)
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)
    runs = [measure(b, s, c, args.rounds) for b, s, c in SHAPES]
    if args.out:
        command = [sys.executable, "-m", "benchmarks.cpu_conv_lowering", *(argv or sys.argv[1:])]
        env = common.environment(command)
        env["threads"] = common.thread_record("jax", common.xla_cpu_threads(), None)
        env["load_average_at_end"] = os.getloadavg()
        env["note"] = args.note
        common.write_json(args.out, {"environment": env, "runs": runs})


if __name__ == "__main__":
    main()
