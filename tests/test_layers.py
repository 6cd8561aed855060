"""The hand-written backward passes of preact.layers against autodiff of the plain layers."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

from preact import layers, networks

NHWC = lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))


def _key(i):
    return jax.random.key(i, impl="rbg")


def _max_diff(a, b):
    return max(
        float(jnp.max(jnp.abs(jnp.asarray(p, jnp.float32) - jnp.asarray(q, jnp.float32))))
        for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def _assert_same_forward(a, b, dtype=jnp.float32):
    """The fused layers' forward is the unfused one's operations in the same order: bitwise equal
    on XLA:CPU, which compiles them alike. On a GPU (PREACT_TEST_PLATFORM=native) XLA may fuse,
    and so sum, the two programs differently: equal there to a few roundings of ``dtype``."""
    for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        p, q = np.asarray(p, np.float32), np.asarray(q, np.float32)
        if jax.default_backend() == "cpu":
            np.testing.assert_array_equal(p, q)
        else:
            eps = 4 * float(jnp.finfo(dtype).eps)
            np.testing.assert_allclose(p, q, rtol=eps, atol=eps * (1 + float(np.max(np.abs(q)))))


@pytest.mark.parametrize(
    "kernel,pads",
    [(3, ((1, 1), (1, 1))), (1, ((0, 0), (0, 0))), (3, ((0, 2), (2, 0))), (5, ((2, 2), (2, 2)))],
)
def test_canonical_grad_conv_matches_xla(kernel, pads):
    x = jax.random.normal(_key(0), (4, 9, 7, 3))
    w = jax.random.normal(_key(1), (kernel, kernel, 3, 5))

    def xla(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=NHWC)

    def ours(x, w):
        return layers.canonical_grad_conv(x, w, (1, 1), pads, dimension_numbers=NHWC)

    y, vjp = jax.vjp(xla, x, w)
    y2, vjp2 = jax.vjp(ours, x, w)
    g = jax.random.normal(_key(2), y.shape)
    np.testing.assert_array_equal(y, y2)
    for a, b in zip(vjp(g), vjp2(g), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_canonical_grad_conv_passes_strided_convs_through():
    x = jax.random.normal(_key(0), (2, 8, 8, 3))
    w = jax.random.normal(_key(1), (3, 3, 3, 4))
    args = ((2, 2), ((1, 1), (1, 1)))
    want = jax.grad(lambda w: lax.conv_general_dilated(x, w, *args, dimension_numbers=NHWC).sum())
    got = jax.grad(lambda w: layers.canonical_grad_conv(x, w, *args, dimension_numbers=NHWC).sum())
    np.testing.assert_array_equal(want(w), got(w))


def test_canonical_grad_conv_keeps_the_scanned_weight_gradient_canonical():
    """The reason for the layer: inside a scan, JAX's weight-gradient conv reaches XLA:CPU in a
    non-canonical form (f01b_i01o->01bf); ours is canonical (b01f_01io->b01f)."""

    def loss(conv, ws, x):
        def body(x, w):
            return x + conv(
                jax.nn.relu(x), w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=NHWC
            ), None

        return jnp.sum(lax.scan(body, x, ws)[0] ** 2)

    ws = jnp.zeros((3, 3, 3, 4, 4))
    x = jnp.zeros((2, 6, 6, 4))

    def dim_labels(conv):
        hlo = jax.jit(jax.grad(lambda w: loss(conv, w, x))).lower(ws).compile().as_text()
        return {line.split("dim_labels=")[1].split(",")[0] for line in hlo.splitlines()
                if "convolution(" in line and "dim_labels=" in line}  # fmt: skip

    if jax.default_backend() != "cpu":
        pytest.skip("the layouts checked are XLA:CPU's")
    assert dim_labels(layers.canonical_grad_conv) == {"b01f_01io->b01f"}


def _bn_pair(x, dtype, axis_name=None, momentum=0.9, relu=True, ordered=False):
    """(fused, unfused) apply functions with shared random variables; ``relu=False`` pairs
    :class:`layers.BatchNorm` with ``nn.BatchNorm`` alone."""
    fused = (layers.BatchNormReLU if relu else layers.BatchNorm)(
        momentum=momentum, dtype=dtype, axis_name=axis_name, ordered_reductions=ordered
    )
    plain = nn.BatchNorm(
        momentum=momentum, dtype=dtype, param_dtype=jnp.float32, axis_name=axis_name
    )
    c = x.shape[-1]
    variables = {
        "params": {
            "scale": 1.0 + 0.5 * jax.random.normal(_key(5), (c,)),
            "bias": 0.3 * jax.random.normal(_key(6), (c,)),
        },
        "batch_stats": {
            "mean": jax.random.normal(_key(7), (c,)),
            "var": jnp.exp(jax.random.normal(_key(8), (c,))),
        },
    }

    def run(module, relu):
        def f(params, x, train):
            y, new = module.apply(
                {"params": params, "batch_stats": variables["batch_stats"]},
                x,
                use_running_average=not train,
                mutable=["batch_stats"],
            )
            return (nn.relu(y) if relu else y), new["batch_stats"]

        return f

    return run(fused, False), run(plain, relu), variables


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_batch_norm_relu_matches_batch_norm_then_relu(dtype, train):
    x = (2.0 * jax.random.normal(_key(0), (6, 5, 5, 7)) + 0.5).astype(dtype)
    g = jax.random.normal(_key(1), x.shape).astype(dtype)
    fused, plain, variables = _bn_pair(x, dtype)
    tol = 1e-5 if dtype == jnp.float32 else 2e-2
    (y1, stats1), vjp1 = jax.vjp(lambda p, x: fused(p, x, train), variables["params"], x)
    (y2, stats2), vjp2 = jax.vjp(lambda p, x: plain(p, x, train), variables["params"], x)
    assert y1.dtype == y2.dtype == dtype
    _assert_same_forward(y1, y2, dtype)
    _assert_same_forward(stats1, stats2)  # running averages updated exactly as Flax does
    zeros = jax.tree.map(jnp.zeros_like, stats1)
    (dp1, dx1), (dp2, dx2) = vjp1((g, zeros)), vjp2((g, zeros))
    assert dx1.dtype == dx2.dtype == dtype
    scale = float(jnp.max(jnp.abs(jnp.asarray(dx2, jnp.float32)))) + 1.0
    assert _max_diff(dx1, dx2) <= tol * scale
    largest = max(float(jnp.max(jnp.abs(v))) for v in jax.tree.leaves(dp2))
    assert _max_diff(dp1, dp2) <= tol * (1 + largest)


def test_batch_norm_relu_saves_only_its_input_and_two_vectors():
    x = jax.random.normal(_key(0), (8, 6, 6, 16)).astype(jnp.bfloat16)
    fused, _, variables = _bn_pair(x, jnp.bfloat16)
    _, residuals = jax.vjp(lambda x: fused(variables["params"], x, True)[0], x)
    arrays = [a for a in jax.tree.leaves(residuals) if hasattr(a, "shape")]
    big = [a for a in arrays if a.size > 16]
    # The input, as its 16 raw bits (so XLA:CPU cannot widen the saved copy to float32).
    assert len(big) == 1 and big[0].dtype.itemsize == 2 and big[0].shape == x.shape
    assert all(a.size <= 16 for a in arrays if a is not big[0])


@pytest.mark.parametrize(
    "relu, ordered",
    [(True, False), (True, True), (False, True)],
    ids=["relu", "relu-ordered", "bn-ordered"],
)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_batch_norm_relu_synchronized_over_devices_matches_autodiff(dtype, relu, ordered):
    """Also with the statistics summed in device order (config.deterministic_reductions) and,
    there, BN without the ReLU (what the networks use instead of ``nn.BatchNorm``)."""
    devices = jax.local_devices()[:4]
    if len(devices) < 4:
        pytest.skip("needs 4 (fake) devices")
    x = (jax.random.normal(_key(0), (4, 3, 5, 5, 6)) * 1.5 + 0.2).astype(dtype)
    g = jax.random.normal(_key(1), x.shape).astype(dtype)
    fused, plain, variables = _bn_pair(x[0], dtype, axis_name="batch", relu=relu, ordered=ordered)

    def grads(f):
        def per_device(params, x, g):
            (y, stats), vjp = jax.vjp(lambda p, x: f(p, x, True), params, x)
            dp, dx = vjp((g, jax.tree.map(jnp.zeros_like, stats)))
            return y, stats, dp, dx

        return jax.pmap(per_device, "batch", in_axes=(None, 0, 0), devices=devices)(
            variables["params"], x, g
        )

    y1, s1, dp1, dx1 = grads(fused)
    y2, s2, dp2, dx2 = grads(plain)
    if ordered:  # another summation order than XLA's all-reduce: equal to rounding
        assert _max_diff(y1, y2) <= (1e-5 if dtype == jnp.float32 else 2e-2) * 8
        assert _max_diff(s1, s2) <= 1e-6
    else:
        np.testing.assert_array_equal(np.asarray(y1, np.float32), np.asarray(y2, np.float32))
        assert _max_diff(s1, s2) == 0.0
    # Synchronized statistics are the same on every device.
    np.testing.assert_array_equal(s1["mean"][0], s1["mean"][3])
    tol = 1e-5 if dtype == jnp.float32 else 2e-2
    assert _max_diff(dx1, dx2) <= tol * (1 + float(jnp.max(jnp.abs(dx2.astype(jnp.float32)))))
    largest = max(float(jnp.max(jnp.abs(v))) for v in jax.tree.leaves(dp2))
    assert _max_diff(dp1, dp2) <= tol * (1 + largest)


@pytest.mark.slow
@pytest.mark.parametrize("unit", ["full_preact", "original", "bn_after_add", "relu_before_add"])
def test_network_with_fused_layers_computes_the_same_function(unit):
    """Same variables, same logits and running averages; gradients equal to rounding."""
    x = jax.random.normal(_key(0), (8, 8, 8, 3))
    labels = jnp.arange(8) % 10

    def build(**kw):
        return networks.cifar_resnet(20, block="basic", width=4, num_classes=10, unit=unit, **kw)

    plain = build(fused_bn_relu=False, conv_grad="xla")
    fast = build(fused_bn_relu=True, conv_grad="canonical")
    variables = jax.jit(lambda: plain.init(_key(1), x, train=False))()
    variables = jax.tree.map(lambda v: v + 0.1 * jax.random.normal(_key(2), v.shape), variables)
    assert jax.tree.structure(variables) == jax.tree.structure(
        jax.eval_shape(lambda: fast.init(_key(1), x, train=False))
    )

    def step(model):
        def loss(params):
            logits, new = model.apply({"params": params, "batch_stats": variables["batch_stats"]},
                                      x, train=True, mutable=["batch_stats"])  # fmt: skip
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), (
                logits,
                new,
            )

        return jax.jit(jax.grad(loss, has_aux=True))(variables["params"])

    (g1, (logits1, new1)), (g2, (logits2, new2)) = step(plain), step(fast)
    _assert_same_forward(logits1, logits2)
    _assert_same_forward(new1, new2)
    assert _max_diff(g1, g2) <= 1e-5 * (
        1 + max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(g1))
    )
    _assert_same_forward(
        plain.apply(variables, x, train=False), fast.apply(variables, x, train=False)
    )
