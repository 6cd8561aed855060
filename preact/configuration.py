"""Config checks that run before anything compiles, and the model a config describes.

Everything here runs before anything is traced or compiled, so a bad config fails in a second
with a message naming the field, not after minutes of compilation.
"""

from __future__ import annotations

import math
from typing import Any

import ml_collections

from preact import networks, optim
from preact.data.datasets import DatasetInfo as DatasetInfo  # re-exported
from preact.data.datasets import dataset_info

BN_STATISTICS = ("per_device", "synchronized")
ON_DIVERGENCE = ("raise", "stop")
RNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")
BN_AXIS_NAME = "batch"  # the pmapped axis of the train step


def bn_axis_name(config: ml_collections.ConfigDict) -> str | None:
    if config.bn_statistics not in BN_STATISTICS:
        raise ValueError(f"unknown bn_statistics {config.bn_statistics!r}; valid: {BN_STATISTICS}")
    return BN_AXIS_NAME if config.bn_statistics == "synchronized" else None


def build_model(config: ml_collections.ConfigDict) -> networks.ResNet:
    """The network of a config, validated (raises ValueError on a bad model section)."""
    return networks.create_model(
        config.model,
        num_classes=dataset_info(config).num_classes,
        dtype=config.dtype,
        bn_axis_name=bn_axis_name(config),
        bn_ordered_reductions=config.deterministic_reductions,
    )


def validate(config: ml_collections.ConfigDict, *, num_devices: int, num_processes: int = 1) -> Any:
    """Check the whole config; return the model it describes."""
    model = build_model(config)
    shards = num_devices * num_processes
    for field in ("batch_size", "eval_batch_size"):
        value = config[field]
        if value < 1 or value % shards:
            raise ValueError(
                f"{field}={value} must be a positive multiple of the device count {shards} "
                f"({num_processes} host(s) x {num_devices} device(s))"
            )
    if config.num_train_steps < 1:
        raise ValueError(f"num_train_steps must be positive, got {config.num_train_steps}")
    if not 0 <= config.warmup_steps < config.num_train_steps:
        raise ValueError(
            f"warmup_steps={config.warmup_steps} must be shorter than training "
            f"(num_train_steps={config.num_train_steps})"
        )
    if not all(isinstance(b, int) for b in config.lr_boundaries_steps):
        raise ValueError(f"lr_boundaries_steps={tuple(config.lr_boundaries_steps)!r} must "
                         "be iteration numbers (integers)")  # fmt: skip
    boundaries = tuple(config.lr_boundaries_steps)
    # A boundary past the end is allowed (a shortened run simply never reaches it).
    if list(boundaries) != sorted(boundaries) or any(b < config.warmup_steps for b in boundaries):
        raise ValueError(
            f"lr_boundaries_steps={boundaries} must be increasing and not before the end of "
            f"warm-up ({config.warmup_steps})"
        )
    for field in ("log_every_steps", "eval_every_steps", "checkpoint_every_steps"):
        if config[field] < 1:
            raise ValueError(f"{field} must be positive, got {config[field]}")
    for field in ("learning_rate", "lr_decay_factor"):
        if not (math.isfinite(config[field]) and config[field] > 0):
            raise ValueError(f"{field} must be positive, got {config[field]}")
    if config.warmup_steps > 0 and not config.warmup_learning_rate > 0:
        raise ValueError(f"warmup_learning_rate must be positive during the "
                         f"{config.warmup_steps} warm-up steps, got "
                         f"{config.warmup_learning_rate}")  # fmt: skip
    if not 0 <= config.momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {config.momentum}")
    if not config.weight_decay >= 0:
        raise ValueError(f"weight_decay must not be negative, got {config.weight_decay}")
    optim.check_optimizer(config)
    if config.rng_impl not in RNG_IMPLS:
        raise ValueError(f"unknown rng_impl {config.rng_impl!r}; valid: {RNG_IMPLS}")
    if config.on_divergence not in ON_DIVERGENCE:
        raise ValueError(f"unknown on_divergence {config.on_divergence!r}; valid: {ON_DIVERGENCE}")
    return model
