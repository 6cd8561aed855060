"""The networks pin the paper's architecture: depth, parameter counts, projections, final BN-ReLU,
and every bad spec raises before anything is traced. That each network computes the paper's
function, scanned and unrolled, is in test_reference.py."""

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from preact import networks
from tests.helpers import key


def abstract_params(model, shape=(1, 32, 32, 3)):
    x = jnp.zeros(shape)
    return jax.eval_shape(lambda: model.init(key(0), x, train=False))["params"]


# (depth, block, unit) -> (total params with BN, paper count without BN), CIFAR-10 head.
PARAM_COUNTS = {
    (110, "basic", "full_preact"): (1_727_962, 1_719_866),  # Table 4: 1.7M
    (110, "basic", "original"): (1_727_962, 1_719_866),
    (110, "one_layer", "full_preact"): (1_727_962, 1_719_866),
    (164, "bottleneck", "full_preact"): (1_703_258, 1_679_034),  # Table 4: 1.7M
    (164, "bottleneck", "original"): (1_704_154, 1_679_034),  # + BN on the 3 projections
    (1001, "bottleneck", "full_preact"): (10_327_706, 10_178_490),  # Table 4: 10.2M
    (1202, "basic", "original"): (19_421_274, 19_331_642),  # Table 4: 19.4M
}


@pytest.mark.parametrize("spec", list(PARAM_COUNTS))
def test_parameter_counts_match_the_paper(spec):
    depth, block, unit = spec
    model = networks.cifar_resnet(depth, block=block, unit=unit, num_classes=10)
    params = abstract_params(model)
    assert (networks.count_params(params), networks.count_paper_params(params)) == PARAM_COUNTS[
        spec
    ]
    assert model.paper_depth() == depth


def test_imagenet_parameter_counts():
    # ResNet-50 (original) has the 25,557,032 parameters of the reference implementations.
    r50 = networks.imagenet_resnet(50, unit="original", num_classes=1000)
    assert networks.count_params(abstract_params(r50, (1, 224, 224, 3))) == 25_557_032
    r200 = networks.imagenet_resnet(200, unit="full_preact", num_classes=1000)
    assert networks.count_params(abstract_params(r200, (1, 224, 224, 3))) == 64_666_152
    assert r200.stage_sizes == (3, 24, 36, 3)
    assert networks.imagenet_resnet(152, num_classes=10).stage_sizes == (3, 8, 36, 3)


@pytest.mark.parametrize("depth", sorted(networks.IMAGENET_DEPTHS))
@pytest.mark.parametrize("unit", ["original", "full_preact"])
def test_imagenet_output_shape_at_224_and_320(depth, unit):
    model = networks.imagenet_resnet(depth, unit=unit, num_classes=7, width=8)
    for size in (224, 320):  # fully convolutional: the 320 test crop of Table 5
        out = jax.eval_shape(
            lambda x, m=model: m.init_with_output(key(0), x, train=False)[0],
            jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32),
        )
        assert out.shape == (2, 7) and out.dtype == jnp.float32
    assert model.paper_depth() == depth


@pytest.mark.slow
def test_imagenet_net_runs_on_a_320_crop():
    model = networks.imagenet_resnet(18, unit="full_preact", num_classes=5, width=2)
    variables = jax.jit(lambda x: model.init(key(0), x, train=False))(jnp.ones((1, 224, 224, 3)))
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(
        variables, jnp.ones((1, 320, 320, 3))
    )
    chex.assert_shape(logits, (1, 5))
    chex.assert_tree_all_finite(logits)


@pytest.mark.slow
def test_remat_computes_the_same_gradients():
    base = networks.cifar_resnet(14, block="basic", num_classes=10, width=4)
    x = jax.random.normal(key(1), (2, 8, 8, 3))
    variables = base.init(key(0), x, train=False)

    def grads(model):
        def loss(p):
            out, _ = model.apply({**variables, "params": p}, x, train=True,
                                 mutable=["batch_stats"])  # fmt: skip
            return jnp.sum(out**2)

        return jax.grad(loss)(variables["params"])

    chex.assert_trees_all_close(grads(base), grads(base.clone(remat=True)), atol=1e-6)


def test_conv_shortcut_on_every_unit():
    """Fig. 2(e): a 1x1 conv on every shortcut, the dimension-changing ones included."""
    model = networks.cifar_resnet(14, block="basic", unit="original", num_classes=10, width=4,
                                  unit_options={"shortcut_variant": "conv_shortcut"})  # fmt: skip
    params = flax.traverse_util.flatten_dict(abstract_params(model, (1, 8, 8, 3)), sep="/")
    assert {k for k in params if "conv_shortcut" in k} == {
        f"stage{s}/{u}/conv_shortcut/kernel" for s in (1, 2, 3) for u in ("unit01", "units/unit")
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant,bias", [("exclusive_gating", -6.0), ("shortcut_only_gating", 0.0)]
)
def test_gate_bias_reaches_every_gate(variant, bias):
    """Table 1's b_g initializes the gate of every unit, scanned ones included."""
    model = networks.cifar_resnet(14, block="basic", unit="original", num_classes=10, width=4,
                                  unit_options={"shortcut_variant": variant,
                                                "gate_bias": bias})  # fmt: skip
    variables = model.init(key(0), jnp.ones((1, 8, 8, 3)), train=False)  # op by op: cached ops
    gates = {k: v for k, v in flax.traverse_util.flatten_dict(variables["params"], sep="/").items()
             if k.endswith("conv_gate/bias")}  # fmt: skip
    assert len(gates) == 6  # unit01 and the stacked units/unit of each stage
    for value in gates.values():
        np.testing.assert_array_equal(value, bias)


def test_projections_only_where_dimensions_change():
    preact164 = flax.traverse_util.flatten_dict(
        abstract_params(networks.cifar_resnet(164, block="bottleneck", num_classes=10)), sep="/"
    )
    projections = sorted(k.rsplit("/", 1)[0] for k in preact164 if "proj" in k)
    assert projections == ["stage1/unit01/conv_proj", "stage2/unit01/conv_proj",
                           "stage3/unit01/conv_proj"]  # fmt: skip
    assert preact164["stage2/unit01/conv_proj/kernel"].shape == (1, 1, 64, 128)
    preact110 = abstract_params(networks.cifar_resnet(110, block="basic", num_classes=10))
    assert not [k for k in flax.traverse_util.flatten_dict(preact110, sep="/") if "proj" in k]
    projected = networks.cifar_resnet(20, block="basic", num_classes=10,
                                      downsample_shortcut="projection")  # fmt: skip
    flat = flax.traverse_util.flatten_dict(abstract_params(projected), sep="/")
    assert sorted(k for k in flat if "proj" in k) == [
        "stage2/unit01/conv_proj/kernel", "stage3/unit01/conv_proj/kernel"]  # fmt: skip


def test_first_and_last_unit_follow_the_appendix():
    """Pre-act: conv1 has no BN of its own (the first unit's shared BN-ReLU plays that role) and
    an extra BN-ReLU follows the last addition; original: conv1-BN-ReLU and no final BN."""
    pre = abstract_params(networks.cifar_resnet(20, block="basic", num_classes=10))
    assert "norm1" not in pre and "norm_final" in pre
    orig = abstract_params(networks.cifar_resnet(20, block="basic", unit="original",
                                                 num_classes=10))  # fmt: skip
    assert "norm1" in orig and "norm_final" not in orig


@pytest.mark.parametrize("unit", ["full_preact", "relu_preact"])
def test_final_activation_before_pooling(unit):
    """Appendix: an extra activation after the last addition. With an identity head the logits
    are the pooled features: the final ReLU makes them >= 0, and for full pre-activation a very
    negative shift in ``norm_final`` (BN, then ReLU) zeroes them."""
    model = networks.cifar_resnet(8, block="basic", unit=unit, num_classes=16, width=4)
    x = jax.random.normal(key(3), (8, 8, 8, 3)) * 3
    variables = flax.core.unfreeze(model.init(key(0), x, train=False))
    variables["params"]["head"] = {"kernel": jnp.eye(16), "bias": jnp.zeros(16)}
    logits, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert bool(jnp.all(logits >= 0)) and bool(jnp.any(logits > 0))
    if unit == "full_preact":
        variables["params"]["norm_final"]["bias"] = jnp.full(16, -100.0)
        logits, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
        np.testing.assert_array_equal(logits, 0.0)


def test_dtype_bfloat16_keeps_float32_state_and_logits():
    model = networks.cifar_resnet(8, block="basic", num_classes=10, width=4, dtype=jnp.bfloat16)
    x = jnp.ones((2, 8, 8, 3))
    variables = model.init(key(0), x, train=False)
    logits, state = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert logits.dtype == jnp.float32
    for leaf in jax.tree.leaves((variables, state)):
        assert leaf.dtype == jnp.float32


def test_train_is_keyword_only_without_default():
    model = networks.cifar_resnet(8, block="basic", num_classes=10, width=4)
    x = jnp.ones((1, 8, 8, 3))
    variables = model.init(key(0), x, train=False)
    with pytest.raises(TypeError):
        model.apply(variables, x)
    with pytest.raises(TypeError):
        model.apply(variables, x, True)


def test_bn_axis_name_is_a_field():
    model = networks.cifar_resnet(8, block="basic", num_classes=10, width=4, bn_axis_name="devs")
    x = jnp.ones((2, 1, 8, 8, 3))
    variables = model.init(key(0), x[0], train=False)  # no axis at init in eval mode
    apply = jax.pmap(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])[0],
                     axis_name="devs", in_axes=(None, 0), devices=jax.devices()[:2])  # fmt: skip
    chex.assert_shape(apply(variables, x), (2, 1, 10))


# --- bad input: ValueError naming the valid choices, before anything is traced ---------------


@pytest.mark.parametrize(
    "depth,block,nearest",
    [
        (100, "bottleneck", "92, 101"),
        (111, "basic", "110, 116"),
        (3, "basic", "8"),
        (109, "one_layer", "107, 110"),
    ],  # fmt: skip
)
def test_impossible_cifar_depth(depth, block, nearest):
    with pytest.raises(ValueError, match=f"nearest valid depths: {nearest}$"):
        networks.cifar_resnet(depth, block=block, num_classes=10)


def test_imagenet_depth_not_in_table():
    with pytest.raises(
        ValueError, match=r"valid: \[18, 34, 50, 101, 152, 200\] \(nearest: 152, 200\)"
    ):
        networks.imagenet_resnet(164, num_classes=1000)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(unit="preact"), "unknown unit 'preact'; valid: .*full_preact"),
        (dict(block="wide"), "unknown block 'wide'; valid"),
        (
            dict(unit="original", unit_options={"shortcut_variant": "highway"}),
            "unknown shortcut_variant 'highway'",
        ),
        (dict(downsample_shortcut="C"), "unknown downsample_shortcut 'C'; valid"),
        (
            dict(unit="original", unit_options={"gate_bias": -6.0}),
            "gate_bias is set but shortcut_variant 'identity'",
        ),
        (
            dict(
                unit="original",
                unit_options={"gate_bias": -6.0, "shortcut_variant": "conv_shortcut"},
            ),
            "has no gate",
        ),
        # a Table 1 option on another unit is not one of its fields
        (
            dict(unit_options={"shortcut_variant": "exclusive_gating"}),
            r"unit_options \['shortcut_variant'\] are not fields of unit 'full_preact'",
        ),
        (dict(unit="original", unit_options={"shortcut_scale": 0.5}), "constant_scaling' only"),
        (
            dict(unit="original", unit_options={"dropout_rate": 1.0}),
            r"dropout_rate must be in \[0, 1\)",
        ),
        (dict(dtype=jnp.float16), "unknown dtype"),
    ],
)
def test_bad_spec_raises_before_tracing(kwargs, match):
    block = kwargs.pop("block", "basic")
    with pytest.raises(ValueError, match=match):
        networks.cifar_resnet(20, block=block, num_classes=10, **kwargs)


def test_create_model_from_config_section():
    from preact.configs import preact1001

    config = preact1001.get_config()
    model = networks.create_model(config.model, num_classes=10, dtype="bfloat16")
    assert (model.stage_sizes, model.block, model.downsample_shortcut) == (
        (111, 111, 111), "bottleneck", "projection")  # fmt: skip
    assert model.dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="unknown dtype 'float64'"):
        networks.create_model(config.model, num_classes=10, dtype="float64")
