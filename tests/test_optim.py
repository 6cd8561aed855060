"""Optimizer and schedule chosen by name from the config; the paper's stays the default."""

import math

import jax
import jax.numpy as jnp
import optax
import pytest

from preact import configuration, optim, training
from tests.helpers import tiny_config


def test_cosine_schedule_values():
    config = tiny_config(schedule="cosine", num_train_steps=100, warmup_steps=10,
                         warmup_learning_rate=0.01, learning_rate=0.2)  # fmt: skip
    lr = optim.learning_rate_schedule(config)
    assert float(lr(0)) == pytest.approx(0.01) and float(lr(9)) == pytest.approx(0.01)
    assert float(lr(10)) == pytest.approx(0.2)
    assert float(lr(55)) == pytest.approx(0.1)  # half-way through the 90 decay steps
    assert float(lr(100)) == pytest.approx(0.0, abs=1e-7)
    assert float(lr(32)) == pytest.approx(0.1 * (1 + math.cos(math.pi * 22 / 90)), rel=1e-5)


def test_linear_schedule_values():
    """Warm-up, then a straight line from learning_rate to 0 at num_train_steps (catches a
    cosine, a line that ignores the warm-up, or one ending above 0)."""
    config = tiny_config(schedule="linear", num_train_steps=100, warmup_steps=10,
                         warmup_learning_rate=0.01, learning_rate=0.2)  # fmt: skip
    lr = optim.learning_rate_schedule(config)
    assert float(lr(9)) == pytest.approx(0.01) and float(lr(10)) == pytest.approx(0.2)
    assert float(lr(55)) == pytest.approx(0.1)  # half-way through the 90 decay steps
    assert float(lr(32)) == pytest.approx(0.2 * (1 - 22 / 90), rel=1e-5)
    assert float(lr(100)) == pytest.approx(0.0, abs=1e-7) and float(lr(150)) == 0.0
    config.lr_boundaries_steps = ()
    optim.check_config(config)  # a known schedule: no error


def test_adamw_is_optax_adamw_after_the_coupled_decay():
    config = tiny_config(optimizer="adamw", schedule="constant", weight_decay=0.0,
                         warmup_steps=0, learning_rate=1e-3)  # fmt: skip
    config.optimizer_kwargs = {"b1": 0.8, "weight_decay": 0.05}
    params = {"w": jnp.arange(4.0), "b": jnp.ones(2)}
    grads = {"w": jnp.array([0.1, -0.2, 0.3, 0.4]), "b": jnp.array([1.0, -1.0])}
    ours = optim.create_optimizer(config, params)
    reference = optax.adamw(1e-3, b1=0.8, weight_decay=0.05)
    u1, _ = ours.update(grads, ours.init(params), params)
    u2, _ = reference.update(grads, reference.init(params), params)
    for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2), strict=True):
        assert jnp.allclose(a, b, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(optimizer="nonesuch"), "optimizer 'nonesuch' is not an optax optimizer"),
        (dict(optimizer="adamw", optimizer_kwargs={"b3": 1.0}), "optimizer 'adamw' with"),
        (dict(schedule="polynomial"), "unknown schedule 'polynomial'"),
    ],
)
def test_bad_optimizer_or_schedule_is_refused_before_compiling(overrides, message):
    config = tiny_config(**overrides)
    with pytest.raises(ValueError, match=message):
        configuration.validate(config, num_devices=1)


@pytest.mark.slow
def test_adamw_with_cosine_trains_from_a_config(tmp_path):
    config = tiny_config(optimizer="adamw", schedule="cosine", learning_rate=1e-3,
                         weight_decay=0.0, num_train_steps=4)  # fmt: skip
    result = training.train_and_evaluate(config, str(tmp_path / "work"))
    assert result["step"] == 4 and math.isfinite(result["train_loss"])


@pytest.mark.slow
def test_resuming_with_another_optimizer_is_refused_as_a_mismatch(tmp_path):
    workdir = str(tmp_path / "work")
    training.train_and_evaluate(tiny_config(num_train_steps=2), workdir)
    adamw = tiny_config(num_train_steps=4, optimizer="adamw", weight_decay=0.0)
    with pytest.raises(ValueError, match=r"another model or optimizer.*optimizer\.optimizer: "
                       r"checkpoint 'sgd', config 'adamw'"):  # fmt: skip
        training.train_and_evaluate(adamw, workdir)
