"""What a config describes, checked as a whole before anything is traced or compiled.

:func:`validate` is the one place the checks run: each module checks its own fields
(the model's in :mod:`preact.networks` and :mod:`preact.units` as the model is built, the
optimizer's and schedule's in :mod:`preact.optim`, the data's in :mod:`preact.data.pipeline`,
the checkpoints' in :mod:`preact.checkpointing`), and this module checks the run's own: batch
sizes against the devices, logging intervals, what to do on divergence. A bad config therefore
fails in a second with a message naming the field, not after minutes of compilation.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from preact import checkpointing, networks, optim
from preact.data import pipeline
from preact.data.datasets import dataset_info

BN_STATISTICS = ("per_device", "synchronized")
ON_DIVERGENCE = ("raise", "stop")
BN_AXIS_NAME = "batch"  # the pmapped axis of the train step


def bn_axis_name(config: ml_collections.ConfigDict) -> str | None:
    """The axis BatchNorm averages its batch statistics over: None (each device's share, as the
    paper's 2-GPU runs) or the device axis (``bn_statistics='synchronized'``)."""
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


def check_run(
    config: ml_collections.ConfigDict, *, num_devices: int, num_processes: int = 1
) -> None:
    """The run's own fields: batches split evenly over every device of every process, positive
    intervals, a known ``on_divergence``, a ``label_smoothing`` in [0, 1)."""
    shards = num_devices * num_processes
    for field in ("batch_size", "eval_batch_size"):
        value = config[field]
        if value < 1 or value % shards:
            raise ValueError(
                f"{field}={value} must be a positive multiple of the device count {shards} "
                f"({num_processes} host(s) x {num_devices} device(s))"
            )
    for field in ("log_every_steps", "eval_every_steps", "checkpoint_every_steps"):
        if config[field] < 1:
            raise ValueError(f"{field} must be positive, got {config[field]}")
    if config.on_divergence not in ON_DIVERGENCE:
        raise ValueError(f"unknown on_divergence {config.on_divergence!r}; valid: {ON_DIVERGENCE}")
    smoothing = config.get("label_smoothing", 0.0)
    # bool is an int to Python; True would silently mean "all the mass off the label".
    if (
        isinstance(smoothing, bool)
        or not isinstance(smoothing, (int, float))
        or not 0 <= smoothing < 1
    ):
        raise ValueError(f"label_smoothing must be in [0, 1), got {smoothing!r}")


def validate(config: ml_collections.ConfigDict, *, num_devices: int, num_processes: int = 1) -> Any:
    """Every check of ``config`` (raises ValueError naming the field); returns its model."""
    model = build_model(config)
    check_run(config, num_devices=num_devices, num_processes=num_processes)
    optim.check_config(config)
    pipeline.read_settings(config)
    checkpointing.check_options(config)
    return model
