r"""Print a network's layers by stage, its depth as the paper counts it, and its parameters.

    python -m preact.analysis.summary --config=configs/preact1001.py

The last line is ``total_params <N>``: every trainable parameter, BN's gamma and beta included.
The paper's Table 4 counts conv and FC weights only (ResNet-1001: 10.2M); that count is printed
as ``paper_params``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from absl import app, flags
from ml_collections import config_flags

from preact import experiment, networks
from preact.data import datasets


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """``--config=configs/<name>.py[:arg]`` with ``--config.<field>=value`` overrides."""
    config_flags.DEFINE_config_file(
        "config", None, "Experiment config file.", flag_values=flag_values
    )


def _describe_unit(unit: Mapping[str, Any], stacked: bool) -> str:
    parts = []
    for name, leaf in unit.items():
        if "kernel" in leaf:
            shape = leaf["kernel"].shape[1:] if stacked else leaf["kernel"].shape
            kh, kw, cin, cout = shape
            parts.append(f"{name} {kh}x{kw} {cin}->{cout}")
        elif "scale" in leaf:
            parts.append(name)
    return " | ".join(parts)


def describe(config: Any) -> str:
    """The lines the command prints, for any config."""
    model = experiment.build_model(config)
    info = datasets.dataset_info(config)
    x = jnp.zeros((1, *info.image_shape), jnp.float32)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    params = variables["params"]

    lines = [
        f"model {config.model.unit} {model.block} ResNet-{model.paper_depth()} "
        f"({model.stem} stem), {model.num_classes} classes, input {info.image_shape}, "
        f"scan={model.scan}",
        f"conv1 {_describe_unit({'conv1': params['conv1']}, False)}"
        + (" + norm1" if "norm1" in params else ""),
    ]
    size = info.image_shape[0] // (4 if model.stem == "imagenet" else 1)
    for s, (n, stride) in enumerate(zip(model.stage_sizes, model.stage_strides(), strict=True)):
        size //= stride
        stage = params[f"stage{s + 1}"]
        lines.append(f"stage{s + 1}: {n} units, {size}x{size} maps, {model.widths[s]} channels")
        lines.append(f"  unit01: {_describe_unit(stage['unit01'], False)}")
        if n > 1:
            if "units" in stage:
                desc = _describe_unit(stage["units"]["unit"], True)
                lines.append(f"  unit02-{n:02d} ({n - 1} units, scanned): {desc}")
            else:
                desc = _describe_unit(stage["unit02"], False)
                lines.append(f"  unit02-{n:02d} ({n - 1} units, unrolled): {desc}")
    if "norm_final" in params:
        lines.append("norm_final (BN-ReLU after the last addition)")
    kernel = params["head"]["kernel"]
    lines.append(f"head global average pool -> fc {kernel.shape[0]}->{kernel.shape[1]}")

    total = networks.count_params(params)
    paper = networks.count_paper_params(params)
    lines += [
        f"depth {model.paper_depth()} (weight layers on the main path: conv1, residual "
        "functions, fc; projections not counted)",
        f"paper_params {paper} (conv and fc weights and biases, no BN: the paper's count)",
        f"bn_params {total - paper}",
        f"total_params {total}",
    ]
    return "\n".join(lines)


def main(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = flag_values.config
    if config is None:
        raise app.UsageError("--config=configs/<name>.py is required")
    try:
        print(describe(config))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    define_flags()
    app.run(main)
