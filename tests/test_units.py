"""The residual units compute the paper's equations (Fig. 2, Fig. 4, Eq. 9) in the cases where
they can be written out in one line. Every unit, block and shortcut against an independent
reference, with random BN statistics, is in test_reference.py; Fig. 4(e) in test_science.py."""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from preact import units
from tests.helpers import key

CONV = units.conv_partial(jnp.float32)
NORM = units.norm_partial(jnp.float32, momentum=0.9, epsilon=1e-5, axis_name=None)


def make_unit(name, block="basic", features=8, strides=1, shortcut="identity", **kwargs):
    layers = units.residual_layers(block, features, strides)
    return units.UNITS[name](layers=layers, shortcut=shortcut, conv=CONV, norm=NORM, **kwargs)


def init_apply(unit, x, *, train, mutate=None):
    variables = unit.init({"params": key(0), "dropout": key(1)}, x, train=False)
    if mutate is not None:
        variables = mutate(flax.core.unfreeze(variables))
    mutable = ["batch_stats"] if train else False
    out = unit.apply(variables, x, train=train, rngs={"dropout": key(2)}, mutable=mutable)
    return (out[0] if train else out), variables


def zero(variables, *path):
    tree = variables["params"]
    for name in path[:-1]:
        tree = tree[name]
    tree[path[-1]] = jax.tree.map(jnp.zeros_like, tree[path[-1]])
    return variables


X = jax.random.normal(key(42), (2, 8, 8, 8))


@pytest.mark.parametrize("name", ["full_preact", "relu_preact"])
@pytest.mark.parametrize("block", units.BLOCKS)
@pytest.mark.parametrize("train", [True, False])
def test_preact_identity_unit_adds_its_input_unchanged(name, block, train):
    """Nothing on the shortcut, nothing after the addition: with F's last weight layer zeroed
    (and, for 4(d), the BN after it), the unit is the identity."""
    unit = make_unit(name, block)
    last = len(unit.layers)

    def zero_f(v):
        v = zero(v, f"conv{last}")
        return zero(v, f"norm{last}") if name == "relu_preact" else v

    y, variables = init_apply(unit, X, train=train, mutate=zero_f)
    np.testing.assert_array_equal(y, X)
    # and the shortcut has no parameters of its own
    assert not any("proj" in k or "shortcut" in k for k in variables["params"])


def test_shared_preact_feeds_the_projection():
    """Appendix: in a dimension-changing unit the projection reads the pre-activated tensor."""
    unit = make_unit("full_preact", "bottleneck", features=16, strides=2, shortcut="projection",
                     shared_preact=True)  # fmt: skip
    y, v = init_apply(unit, X, train=False, mutate=lambda v: zero(v, "conv3"))
    p, s = v["params"], v["batch_stats"]
    preact = jax.nn.relu(
        (X - s["norm1"]["mean"]) / jnp.sqrt(s["norm1"]["var"] + 1e-5) * p["norm1"]["scale"]
        + p["norm1"]["bias"]
    )
    proj = preact[:, ::2, ::2, :] @ p["conv_proj"]["kernel"][0, 0]
    np.testing.assert_allclose(y, proj, atol=1e-5)
    assert "norm_proj" not in p  # no BN on a pre-activation projection


def test_original_unit_projection_has_bn():
    unit = make_unit("original", "bottleneck", features=16, strides=2, shortcut="projection")
    _, v = init_apply(unit, X, train=False)
    assert {"conv_proj", "norm_proj"} <= set(v["params"])


def test_zero_pad_shortcut_is_option_a():
    h = units.zero_pad_shortcut(X, 16, 2)
    np.testing.assert_array_equal(h[..., :8], X[:, ::2, ::2, :])
    np.testing.assert_array_equal(h[..., 8:], 0.0)


def zero_f_output(v):
    """Zero F's last BN (scale and shift) so F(x) = 0 in the original unit."""
    return zero(v, "norm2")


POSITIVE_X = jnp.abs(X) + 0.1


@pytest.mark.parametrize(
    "kwargs,expected_scale",
    [
        (dict(shortcut_variant="identity"), 1.0),
        (dict(shortcut_variant="constant_scaling", shortcut_scale=0.5, residual_scale=0.5), 0.5),
        (dict(shortcut_variant="constant_scaling", shortcut_scale=0.0), 0.0),
        (dict(shortcut_variant="exclusive_gating", gate_bias=-6.0), 1 - jax.nn.sigmoid(-6.0)),
        (dict(shortcut_variant="shortcut_only_gating", gate_bias=0.0), 0.5),
        # test time, plain masking: expectation 0.5
        (dict(shortcut_variant="dropout_shortcut"), 0.5),
        (dict(shortcut_variant="dropout_shortcut", dropout_rescale=True), 1.0),
    ],
)
def test_table1_shortcut_scales(kwargs, expected_scale):
    """With F(x) = 0 and a zero gate conv, x_{l+1} = ReLU(scale * x) (Fig. 2)."""
    unit = make_unit("original", **kwargs)

    def mutate(v):
        v = zero_f_output(v)
        if "conv_gate" in v["params"]:
            v["params"]["conv_gate"]["kernel"] = jnp.zeros_like(v["params"]["conv_gate"]["kernel"])
        return v

    y, v = init_apply(unit, POSITIVE_X, train=False, mutate=mutate)
    np.testing.assert_allclose(y, expected_scale * POSITIVE_X, rtol=1e-6, atol=1e-7)


def test_gate_bias_is_initialized_to_b_g():
    _, v = init_apply(make_unit("original", shortcut_variant="exclusive_gating", gate_bias=-7.0), X,
                      train=False)  # fmt: skip
    np.testing.assert_array_equal(v["params"]["conv_gate"]["bias"], -7.0)


def test_residual_scale_acts_on_f_output():
    """A scale on F's output survives (a scale before its BN would be undone)."""
    kw = dict(shortcut_variant="constant_scaling", shortcut_scale=0.0)
    full, _ = init_apply(make_unit("original", residual_scale=1.0, **kw), X, train=True)
    half, _ = init_apply(make_unit("original", residual_scale=0.5, **kw), X, train=True)
    np.testing.assert_allclose(half, 0.5 * full, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rescale,kept_value", [(False, 1.0), (True, 2.0)])
def test_dropout_shortcut_at_train_time(rescale, kept_value):
    unit = make_unit("original", shortcut_variant="dropout_shortcut", dropout_rescale=rescale)
    x = jnp.ones((4, 8, 8, 8))
    y, _ = init_apply(unit, x, train=True, mutate=zero_f_output)
    values = np.unique(np.asarray(y))
    np.testing.assert_allclose(values, [0.0, kept_value])
    assert 0.4 < float(jnp.mean(y == 0.0)) < 0.6


def test_conv_shortcut_on_every_unit():
    _, v = init_apply(make_unit("original", shortcut_variant="conv_shortcut"), X, train=False)
    assert v["params"]["conv_shortcut"]["kernel"].shape == (1, 1, 8, 8)
    assert "norm_shortcut" in v["params"]


def test_bn_momentum_is_flax_weight_of_old_average():
    """momentum 0.9 means running = 0.9 * running + 0.1 * batch (Torch's momentum 0.1)."""
    unit = make_unit("full_preact")
    _, state = unit.apply(unit.init(key(0), X, train=False), X, train=True,
                          mutable=["batch_stats"])  # fmt: skip
    np.testing.assert_allclose(state["batch_stats"]["norm1"]["mean"], 0.1 * X.mean((0, 1, 2)),
                               rtol=1e-5, atol=1e-7)  # fmt: skip


def test_he_init_fan_out():
    conv = functools.partial(units.conv_partial(jnp.float32, "fan_out"))(256, (3, 3))
    kernel = conv.init(key(0), jnp.zeros((1, 8, 8, 64)))["params"]["kernel"]
    assert abs(float(kernel.std()) / np.sqrt(2.0 / (9 * 256)) - 1) < 0.05
    assert kernel.dtype == jnp.float32
    assert "bias" not in conv.init(key(0), jnp.zeros((1, 8, 8, 64)))["params"]


@pytest.mark.parametrize("bad", [("block", "wide"), ("bottleneck_stride", "last")])
def test_bad_layer_spec_raises(bad):
    field, value = bad
    kwargs = {"block": "bottleneck", "features": 16, "strides": 2}
    kwargs[field] = value
    with pytest.raises(ValueError, match="valid"):
        units.residual_layers(**kwargs)
