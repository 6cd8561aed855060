"""Label smoothing (``config.label_smoothing``, preact.training.training_loss): the targets it
trains against, that 0 is exactly the paper's loss, and that the train step minimises the
configured loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from preact import configuration, training
from tests.helpers import tiny_config

K = 10


def _logits_and_labels(batch=6):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(batch, K)).astype(np.float32) * 3
    labels = rng.integers(0, K, size=(batch,)).astype(np.int32)
    return jnp.asarray(logits), jnp.asarray(labels)


def test_zero_is_exactly_the_one_hot_cross_entropy():
    logits, labels = _logits_and_labels()
    plain = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    assert float(training.training_loss(logits, labels, 0.0)) == float(plain)


@pytest.mark.parametrize("alpha", [0.1, 0.3])
def test_smoothed_loss_matches_the_hand_computed_targets(alpha):
    logits, labels = _logits_and_labels()
    z = np.asarray(logits, np.float64)
    log_p = z - z.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    targets = np.full((len(labels), K), alpha / K)
    targets[np.arange(len(labels)), np.asarray(labels)] = 1 - alpha + alpha / K
    expected = -(targets * log_p).sum(-1).mean()
    np.testing.assert_allclose(float(training.training_loss(logits, labels, alpha)), expected,
                               rtol=1e-5)  # fmt: skip


def test_the_smoothed_targets_are_the_minimum():
    """At logits whose softmax is the smoothed target the gradient vanishes; the one-hot loss
    still pushes there. A wrong share per class (alpha / (K - 1), or all of alpha on one class)
    moves the minimum."""
    alpha = 0.1
    labels = jnp.array([3, 7])
    targets = np.full((2, K), alpha / K)
    targets[[0, 1], [3, 7]] = 1 - alpha + alpha / K
    logits = jnp.log(jnp.asarray(targets, jnp.float32))
    grad = jax.grad(lambda z: training.training_loss(z, labels, alpha))(logits)
    assert float(jnp.abs(grad).max()) < 1e-6
    grad_plain = jax.grad(lambda z: training.training_loss(z, labels, 0.0))(logits)
    assert float(jnp.abs(grad_plain).max()) > 1e-2


@pytest.mark.parametrize("alpha", [0.0, 0.2])
def test_the_train_step_logs_the_configured_loss(alpha):
    """make_train_step reads config.label_smoothing: its logged loss is the smoothed loss of the
    network's training-mode logits, not the plain one."""
    config = tiny_config(label_smoothing=alpha)
    model = configuration.build_model(config)
    state = training.create_train_state(config, model, (8, 8, 1))
    rng = np.random.default_rng(1)
    images = rng.normal(size=(8, 8, 8, 1)).astype(np.float32)
    labels = rng.integers(0, K, size=(8,)).astype(np.int32)
    devices = jax.devices()[:1]
    _, metrics = training.make_train_step(config, devices)(
        state, {"image": images[None], "label": labels[None]}
    )
    logits, _ = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats},
                               images, train=True, mutable=["batch_stats"])  # fmt: skip
    logged = float(np.asarray(metrics["train_loss"]).reshape(-1)[0])
    np.testing.assert_allclose(logged, float(training.training_loss(logits, labels, alpha)),
                               rtol=1e-5)  # fmt: skip
    other = 0.2 - alpha  # the loss the config did not ask for
    assert abs(logged - float(training.training_loss(logits, labels, other))) > 1e-3
