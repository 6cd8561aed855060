r"""Compile time of one training step (forward + backward) of a CIFAR ResNet, scanned vs unrolled.

    python benchmarks/compile_time.py --depth=1001 --batch=128 --modes=scanned,unrolled

Prints one line per mode with the seconds spent tracing+lowering and compiling, and writes them as
JSON with the environment when --out is given. A benchmark, not a test: it measures, it does not
assert. Issue target: scanned ResNet-1001 under 30 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from preact import networks  # noqa: E402


def train_step_fn(model):
    def step(params, batch_stats, images, labels):
        def loss_fn(p):
            logits, state = model.apply({"params": p, "batch_stats": batch_stats}, images,
                                        train=True, mutable=["batch_stats"])  # fmt: skip
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            return loss, state["batch_stats"]

        (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        params = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
        return params, new_stats, loss

    return step


def measure(depth: int, block: str, unit: str, batch: int, scan: bool, dtype: str) -> dict:
    model = networks.cifar_resnet(depth, block=block, unit=unit, num_classes=10, scan=scan,
                                  dtype=networks.DTYPES[dtype])  # fmt: skip
    images = jax.ShapeDtypeStruct((batch, 32, 32, 3), jnp.float32)
    labels = jax.ShapeDtypeStruct((batch,), jnp.int32)
    variables = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    )
    t0 = time.perf_counter()
    lowered = jax.jit(train_step_fn(model)).lower(
        variables["params"], variables["batch_stats"], images, labels
    )
    t1 = time.perf_counter()
    lowered.compile()
    t2 = time.perf_counter()
    return {
        "depth": depth,
        "block": block,
        "unit": unit,
        "batch": batch,
        "dtype": dtype,
        "mode": "scanned" if scan else "unrolled",
        "trace_lower_s": round(t1 - t0, 2),
        "compile_s": round(t2 - t1, 2),
        "total_s": round(t2 - t0, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=1001)
    parser.add_argument("--block", default="bottleneck")
    parser.add_argument("--unit", default="full_preact")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--modes", default="scanned,unrolled")
    parser.add_argument("--out", default="", help="write results as JSON to this path")
    args = parser.parse_args()
    results = []
    for mode in args.modes.split(","):
        r = measure(args.depth, args.block, args.unit, args.batch, mode == "scanned", args.dtype)
        print(f"ResNet-{r['depth']} {r['mode']:8s} batch {r['batch']} {r['dtype']}: "
              f"trace+lower {r['trace_lower_s']:.1f} s, compile {r['compile_s']:.1f} s, "
              f"total {r['total_s']:.1f} s", flush=True)  # fmt: skip
        results.append(r)
    if args.out:
        env = {
            "date": datetime.date.today().isoformat(),
            "device": str(jax.devices()[0].device_kind),
            "backend": jax.default_backend(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "jax": jax.__version__,
            "command": " ".join(sys.argv),
        }
        with open(args.out, "w") as f:
            json.dump({"environment": env, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
