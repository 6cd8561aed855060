"""The optimizer and the learning-rate schedule, chosen by name from the config.

The paper's (Appendix) is the default: ``optimizer="sgd"``, ``schedule="step"``: SGD with
momentum 0.9 and *coupled* L2 weight decay, as Caffe and Torch do it. The decay term ``wd * w``
is added to the gradient before the momentum buffer, not applied to the weights directly
(decoupled, AdamW-style). The learning rate multiplies the momentum buffer's output, as in
Torch's ``optim.sgd`` and optax; Caffe folds it into the buffer, which differs only in the few
steps right after a learning-rate drop.

Any other optax optimizer is a config change: ``optimizer`` names an optax constructor (``adamw``,
``lamb``, ``sgd`` ...) that takes ``learning_rate``, and ``optimizer_kwargs`` holds its other
arguments (``b1``, ``weight_decay`` ...). The coupled L2 decay of ``weight_decay`` applies to every
optimizer (it is part of the objective the paper minimizes); set it to 0 for AdamW's decoupled
decay alone. ``schedule`` is ``step`` (the paper's), ``cosine`` (warm-up, then cosine decay to 0
at ``num_train_steps``), ``linear`` (warm-up, then a straight line to 0 at ``num_train_steps``: the
budget-aware decay Li, Yumer and Ramanan (ICLR 2020) found best when the number of steps is set
by a time budget) or ``constant``; each keeps the ``warmup_steps`` at ``warmup_learning_rate``.
"""

from __future__ import annotations

import math
from typing import Any

import flax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

SCHEDULES = ("step", "cosine", "linear", "constant")


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    """The ``schedule`` the config names; ``step`` is the paper's."""
    if config.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {config.schedule!r}; valid: {SCHEDULES}")
    if config.schedule == "step":
        return step_schedule(config)
    base = float(config.learning_rate)
    warmup_steps = int(config.warmup_steps)
    warmup_lr = float(config.warmup_learning_rate)
    total = max(int(config.num_train_steps) - warmup_steps, 1)

    def schedule(step: Any) -> Any:
        step = jnp.asarray(step, jnp.int32)
        t = jnp.clip((step - warmup_steps) / total, 0.0, 1.0)
        if config.schedule == "cosine":
            lr = 0.5 * base * (1.0 + jnp.cos(jnp.pi * t))
        elif config.schedule == "linear":
            lr = base * (1.0 - t)
        else:
            lr = jnp.asarray(base, jnp.float32)
        return jnp.where(step < warmup_steps, warmup_lr, lr)

    return schedule


def step_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    """Step schedule in iterations: ``warmup_learning_rate`` for the first ``warmup_steps``
    (0.01 for 400 iterations, Appendix), then ``learning_rate`` divided by 10 (``lr_decay_factor``)
    at each of ``lr_boundaries_steps`` (32k and 48k)."""
    base = float(config.learning_rate)
    factor = float(config.lr_decay_factor)
    warmup_steps = int(config.warmup_steps)
    warmup_lr = float(config.warmup_learning_rate)
    boundaries = np.asarray(tuple(config.lr_boundaries_steps), np.int32)  # no tracer at build time

    def schedule(step: Any) -> Any:
        step = jnp.asarray(step, jnp.int32)
        drops = jnp.sum(step >= boundaries) if boundaries.size else 0
        lr = base * factor**drops
        return jnp.where(step < warmup_steps, warmup_lr, lr)

    return schedule


def weight_decay_mask(params: Any, all_params: bool) -> Any:
    """Which parameters decay: all of them (fb.resnet.torch decays its flattened parameter
    vector, BN's gamma and beta included), or only conv and FC weights (``kernel`` leaves)."""
    flat = flax.traverse_util.flatten_dict(params)
    return flax.traverse_util.unflatten_dict(
        {path: all_params or path[-1] == "kernel" for path in flat}
    )


def _base_optimizer(
    config: ml_collections.ConfigDict, schedule: optax.ScalarOrSchedule
) -> optax.GradientTransformation:
    kwargs = dict(config.optimizer_kwargs)
    if config.optimizer == "sgd":
        kwargs = {"momentum": config.momentum, "nesterov": config.nesterov, **kwargs}
    make = getattr(optax, config.optimizer, None)
    if not callable(make):
        raise ValueError(f"optimizer {config.optimizer!r} is not an optax optimizer")
    try:
        return make(learning_rate=schedule, **kwargs)
    except TypeError as e:
        raise ValueError(f"optimizer {config.optimizer!r} with {kwargs}: {e}") from None


def create_optimizer(
    config: ml_collections.ConfigDict, params: Any, schedule: optax.Schedule | None = None
) -> optax.GradientTransformation:
    """Coupled L2 decay (added to the gradient, masked by ``weight_decay_all_params``), then the
    optimizer ``config.optimizer`` with the schedule ``config.schedule``.

    ``schedule``: the run's :func:`learning_rate_schedule`, built once by the training loop and
    shared with the train step that logs it; built here when not given.
    """
    decay = optax.add_decayed_weights(
        config.weight_decay, mask=weight_decay_mask(params, config.weight_decay_all_params)
    )
    if schedule is None:
        schedule = learning_rate_schedule(config)
    return optax.chain(decay, _base_optimizer(config, schedule))


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raise ValueError naming the first optimizer or schedule field the config cannot use.

    Run before anything compiles (by :func:`preact.experiment.validate`). The optimizer is
    constructed once with a constant learning rate, which finds an unknown optax name or an
    argument it does not take; the schedule itself is built once, by the run.
    """
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
    if config.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {config.schedule!r}; valid: {SCHEDULES}")
    _base_optimizer(config, float(config.learning_rate))


def optimizer_identity(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """What decides the shape of the optimizer state (a checkpoint restores only into the same)."""
    kwargs = dict(config.optimizer_kwargs)
    if config.optimizer == "sgd":
        # optax keeps no momentum buffer for momentum 0 (or None).
        kwargs = {"momentum": bool(config.momentum), **kwargs}
    return {"optimizer": config.optimizer, "optimizer_kwargs": kwargs}
