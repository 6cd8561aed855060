"""The optimizer and learning-rate schedules of the paper (Appendix; paper.md §5).

SGD with momentum 0.9 and *coupled* L2 weight decay, as Caffe and Torch do it: the decay term
``wd * w`` is added to the gradient before the momentum buffer, not applied to the weights
directly (decoupled, AdamW-style). The learning rate multiplies the momentum buffer's output, as
in Torch's ``optim.sgd`` and optax; Caffe folds it into the buffer, which differs only in the few
steps right after a learning-rate drop.
"""

from __future__ import annotations

from typing import Any

import flax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
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


def create_optimizer(
    config: ml_collections.ConfigDict, params: Any
) -> optax.GradientTransformation:
    return optax.chain(
        optax.add_decayed_weights(
            config.weight_decay, mask=weight_decay_mask(params, config.weight_decay_all_params)
        ),
        optax.sgd(
            learning_rate_schedule(config), momentum=config.momentum, nesterov=config.nesterov
        ),  # fmt: skip
    )
