r"""Memory of one compiled train step of the CIFAR nets, next to the activation floor.

    python -m benchmarks.memory --out=benchmarks/results/memory_cpu.json

For each net and dtype, XLA's memory analysis of the real train step (``preact.training``'s
``train_step``: forward, backward, SGD update, BN statistics), compiled for one device from
shapes alone (nothing is allocated, so ResNet-1001 is measured on a laptop), and the floor: the
bytes a backward pass cannot do without, i.e. every BN input and every conv input of one image
once, in the compute dtype, times the batch. Variants (``--variants``) switch the model fields
that change memory: ``fused`` (the default model), ``unfused`` (``fused_bn_relu=False``).

A benchmark, not a test: it prints and records figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from benchmarks import common
from preact import configuration, layers, training

GIB = 2**30
VARIANTS = {"fused": {"fused_bn_relu": True}, "unfused": {"fused_bn_relu": False}}


def make_config(depth: int, batch: int, dtype: str, variant: str) -> Any:
    from preact.configs import default

    c = default.get_config()
    c.model.depth = depth
    c.model.block = common.block_of(depth)
    for field, value in VARIANTS[variant].items():
        c.model[field] = value
    c.dtype = dtype
    c.batch_size = batch
    return c


def activation_floor_bytes(model: nn.Module, image_shape: tuple[int, ...], dtype: Any) -> int:
    """Bytes per image of the tensors a backward pass must keep: the input of every BN and of
    every conv, each distinct tensor counted once, in the compute dtype."""
    seen: dict[int, int] = {}

    def record(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and isinstance(
            context.module, (nn.Conv, nn.BatchNorm, layers.BatchNormReLU)
        ):
            x = args[0]
            seen[id(x)] = int(x.size) // x.shape[0]
        return next_fun(*args, **kwargs)

    def forward():
        variables = model.init(jax.random.key(0), jnp.zeros((2, *image_shape)), train=False)
        with nn.intercept_methods(record):
            return model.apply(variables, jnp.zeros((2, *image_shape)), train=True,
                               mutable=["batch_stats"])  # fmt: skip

    jax.eval_shape(forward)
    return sum(seen.values()) * jnp.dtype(dtype).itemsize


def measure(depth: int, batch: int, dtype: str, variant: str) -> dict[str, Any]:
    config = make_config(depth, batch, dtype, variant)
    # The floor counts every tensor once, which needs the unscanned network.
    model = configuration.validate(config, num_devices=1)
    info = configuration.dataset_info(config)
    state = training.abstract_train_state(config, model, info.image_shape)
    batch_shapes = {
        "image": jax.ShapeDtypeStruct((1, batch, *info.image_shape), jnp.float32),
        "label": jax.ShapeDtypeStruct((1, batch), jnp.int32),
    }
    step = training.make_train_step(config, devices=jax.local_devices()[:1])
    start = time.perf_counter()
    compiled = step.lower(state, batch_shapes).compile()
    seconds = time.perf_counter() - start
    analysis = compiled.memory_analysis()
    floor = activation_floor_bytes(model.clone(scan=False), info.image_shape, model.dtype)
    return {
        "net": common.net_name(depth),
        "depth": depth,
        "block": common.block_of(depth),
        "batch": batch,
        "dtype": dtype,
        "variant": variant,
        "model_fields": VARIANTS[variant],
        "temp_bytes": int(analysis.temp_size_in_bytes),
        "argument_bytes": int(analysis.argument_size_in_bytes),
        "output_bytes": int(analysis.output_size_in_bytes),
        "floor_bytes_per_image": floor,
        "floor_bytes": floor * batch,
        "compile_seconds": round(seconds, 2),
    }


def describe(r: dict[str, Any]) -> str:
    return (
        f"{r['net']:>12} {r['dtype']:>8} {r['variant']:>7}  temp {r['temp_bytes'] / GIB:6.2f} GiB"
        f"  floor {r['floor_bytes'] / GIB:6.2f} GiB ({r['floor_bytes_per_image'] / 2**20:.1f} "
        f"MiB/img)  ratio {r['temp_bytes'] / r['floor_bytes']:.2f}"
        f"  compile {r['compile_seconds']} s"
    )


def main(argv: list[str] | None = None) -> None:
    from preact import xla_flags

    xla_flags.apply_defaults()  # the project's XLA:CPU settings, as train.py has them
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depths", default="110,164,1001")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dtypes", default="bfloat16,float32")
    parser.add_argument("--variants", default="fused,unfused")
    parser.add_argument("--out", default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    runs = []
    csv = functools.partial(str.split, sep=",")
    for depth in map(int, csv(args.depths)):
        for dtype in csv(args.dtypes):
            for variant in csv(args.variants):
                runs.append(measure(depth, args.batch, dtype, variant))
                print(describe(runs[-1]), flush=True)
    if args.out:
        command = [sys.executable, "-m", "benchmarks.memory", *sys.argv[1:]]
        common.write_json(args.out, {"environment": common.environment(command), "runs": runs})


if __name__ == "__main__":
    main()
