"""Every unit, block, shortcut and Table 1 variant computes the function of the paper.

The networks of ``preact.networks`` are compared with ``tests/reference.py``, an implementation
written separately from the paper, on the same random parameters and random BN running
statistics (scale, shift, mean and variance all far from their initial values, so no BN can be
dropped, moved or swapped unseen): the logits in training mode (batch statistics) and in eval mode
(running statistics), the running averages a training step leaves, and the set of parameters and
statistics each side uses. Tiny networks (two units per stage, width 4, 8x8 inputs), unrolled and
scanned.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from preact import networks
from tests import reference
from tests.helpers import key

UNITS = ("original", "bn_after_add", "relu_before_add", "relu_preact", "full_preact")
BLOCKS = ("basic", "bottleneck", "one_layer")
DEPTH = {"basic": 14, "bottleneck": 20, "one_layer": 8}  # n = 2: a first unit and a repeated one
WIDTH = 4


def images(shape=(4, 8, 8, 3), seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def check(model, net, x, *, scan, train=True, seed=0):
    """The model (``scan`` layout) against the reference, in eval mode and, if ``train``, in
    training mode with the running averages it leaves."""
    unrolled = model.clone(scan=False)
    shapes = jax.eval_shape(lambda: unrolled.init(key(0), x, train=False))
    variables = reference.random_variables(shapes, seed=seed)
    model = model.clone(scan=scan)
    given = reference.stack_units(variables) if scan else variables
    if scan:  # the scanned layout is what the model itself creates, and what scan_variables gives
        expected = jax.eval_shape(lambda: model.init(key(0), x, train=False))
        assert jax.tree.structure(given) == jax.tree.structure(expected)
        assert jax.tree.map(jnp.shape, given) == jax.tree.map(lambda s: s.shape, expected)
        scanned = networks.scan_variables(variables)
        assert jax.tree.all(jax.tree.map(jnp.array_equal, scanned, given))

    # Op by op, not jitted: the tiny shapes repeat from case to case, so XLA:CPU compiles each
    # op once for the whole file instead of compiling a whole network per case.
    out = {"eval": model.apply(given, x, train=False)}
    out["ref_eval"], _, ref = reference.forward(net, variables, x, train=False)
    if train:
        out["train"], state = model.apply(given, x, train=True, mutable=["batch_stats"],
                                          rngs={"dropout": key(1)})  # fmt: skip
        out["stats"] = state["batch_stats"]
        out["ref_train"], out["ref_stats"], _ = reference.forward(net, variables, x, train=True)
    # Every parameter and running statistic of the model is one the paper's network reads.
    assert ref.read_params == set(reference.flatten(variables["params"]))
    assert ref.read_stats == set(reference.flatten(variables["batch_stats"]))

    def close(actual, expected):
        scale = float(np.max(np.abs(expected))) + 1e-6
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * scale)

    close(out["eval"], out["ref_eval"])
    # The function really depends on the running statistics (they are not at their init).
    if train:
        close(out["train"], out["ref_train"])
        assert not np.allclose(out["train"], out["eval"], atol=1e-3)
        stats = reference.flatten(reference.unstack_units(out["stats"]) if scan else out["stats"])
        expected_stats = reference.flatten(out["ref_stats"])
        assert set(stats) == set(expected_stats)
        for path, value in expected_stats.items():
            close(stats[path], value)


@pytest.mark.parametrize("shortcut", ["zero_pad", "projection"])
@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("unit", UNITS)
def test_units_blocks_and_shortcuts(unit, block, shortcut):
    """Fig. 4(a)-(e) x {basic, bottleneck, one-layer} x {option A, option B}, unrolled."""
    model = networks.cifar_resnet(DEPTH[block], block=block, unit=unit, width=WIDTH,
                                  downsample_shortcut=shortcut, num_classes=5)  # fmt: skip
    net = reference.Net.cifar(DEPTH[block], block, unit, WIDTH, downsample_shortcut=shortcut)
    check(model, net, images(), scan=False)


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("unit", UNITS)
def test_scanned_networks(unit, block):
    """The scanned layout (``stageK/units/unit``, stacked) computes the same paper network."""
    model = networks.cifar_resnet(DEPTH[block], block=block, unit=unit, width=WIDTH,
                                  num_classes=5)  # fmt: skip
    shortcut = "projection" if block == "bottleneck" else "zero_pad"  # the paper's (Appendix)
    assert model.downsample_shortcut == shortcut
    net = reference.Net.cifar(DEPTH[block], block, unit, WIDTH, downsample_shortcut=shortcut)
    check(model, net, images(), scan=True)


TABLE1 = [
    ("constant_scaling", dict(shortcut_scale=0.5, residual_scale=0.5), True),
    ("constant_scaling", dict(shortcut_scale=0.7, residual_scale=0.2), True),
    ("exclusive_gating", dict(gate_bias=-6.0), True),
    ("shortcut_only_gating", dict(gate_bias=0.0), True),
    ("conv_shortcut", {}, True),
    ("conv_shortcut", dict(conv_shortcut_norm=False), True),
    # Dropout draws a mask at training time: eval mode only (plain masking and inverted).
    ("dropout_shortcut", dict(dropout_rate=0.3), False),
    ("dropout_shortcut", dict(dropout_rate=0.3, dropout_rescale=True), False),
]


@pytest.mark.parametrize("scan", [False, True])
@pytest.mark.parametrize("variant,extra,train", TABLE1)
def test_table1_shortcut_variants(variant, extra, train, scan):
    """Fig. 2(b)-(f) on the original unit, with random gate biases and running statistics."""
    model = networks.cifar_resnet(DEPTH["basic"], block="basic", unit="original", width=WIDTH,
                                  unit_options={"shortcut_variant": variant, **extra},
                                  num_classes=5)  # fmt: skip
    extra = {k: v for k, v in extra.items() if k != "gate_bias"}  # the reference's is random
    net = reference.Net.cifar(DEPTH["basic"], "basic", "original", WIDTH, variant=variant,
                              **extra)  # fmt: skip
    check(model, net, images(), scan=scan, train=train)


@pytest.mark.parametrize("unit", ["original", "full_preact"])
def test_bottleneck_stride_on_the_3x3(unit):
    model = networks.cifar_resnet(DEPTH["bottleneck"], block="bottleneck", unit=unit,
                                  width=WIDTH, bottleneck_stride="3x3", num_classes=5)  # fmt: skip
    net = reference.Net.cifar(
        DEPTH["bottleneck"], "bottleneck", unit, WIDTH,
        downsample_shortcut="projection", bottleneck_stride="3x3",
    )  # fmt: skip
    check(model, net, images(), scan=False)


@pytest.mark.slow
@pytest.mark.parametrize("unit", ["original", "relu_preact", "full_preact"])
def test_imagenet_stem(unit):
    """conv1 7x7/2-BN-ReLU-max-pool, and a first unit that does not pre-activate again."""
    model = networks.imagenet_resnet(18, unit=unit, width=2, num_classes=5)
    net = reference.Net(unit=unit, block="basic", units_per_stage=(2, 2, 2, 2), width=2,
                        downsample_shortcut="projection", stem="imagenet")  # fmt: skip
    check(model, net, images((8, 32, 32, 3)), scan=True)


def test_a_swapped_bn_is_another_function():
    """The comparison is sharp: the two BNs of one unit swapped give other logits."""
    model = networks.cifar_resnet(14, block="basic", unit="full_preact", width=WIDTH,
                                  num_classes=5, scan=False)  # fmt: skip
    x = images()
    variables = reference.random_variables(
        jax.eval_shape(lambda: model.init(key(0), x, train=False))
    )
    net = reference.Net.cifar(14, "basic", "full_preact", WIDTH)
    expected, _, _ = reference.forward(net, variables, x, train=False)
    np.testing.assert_allclose(model.apply(variables, x, train=False), expected, rtol=1e-4,
                               atol=1e-5)  # fmt: skip
    for collection in ("params", "batch_stats"):
        unit = variables[collection]["stage2"]["unit02"]
        unit["norm1"], unit["norm2"] = unit["norm2"], unit["norm1"]
    assert not np.allclose(model.apply(variables, x, train=False), expected, atol=1e-3)
