"""Layers with hand-written backward passes: the same functions as Flax's, cheaper to train.

Two layers, each a drop-in for what the units would otherwise build, with the same variable
names, so parameters and checkpoints do not change when they are switched on or off:

- :func:`canonical_grad_conv`, a ``conv_general_dilated`` for ``nn.Conv`` whose backward pass
  computes the weight gradient as a convolution in the canonical NHWC/HWIO form. Inside a scanned
  stage, XLA:CPU otherwise runs the weight gradient as a non-canonical convolution that misses
  its fast path: the train step of a scanned network was 10x slower than the unrolled one (the
  measurements are in ``docs/performance.md``).
- :class:`BatchNormReLU`, ``relu(BatchNorm(x))`` as one layer whose training backward keeps only
  what it needs: its input (in the compute dtype) and the per-channel mean and inverse standard
  deviation. Autodiff of ``nn.BatchNorm`` followed by ``nn.relu`` keeps float32 copies of the
  normalized tensor and its intermediates, about three times the activation memory of a deep
  pre-activation net, in bfloat16 as much as in float32.

Both compute exactly what the unfused layers compute in the forward pass (the same operations in
the same order); their gradients match autodiff to rounding (``tests/test_layers.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from preact import reductions

_NHWC = ("NHWC", "HWIO", "NHWC")


def _is_nhwc(dimension_numbers: Any) -> bool:
    if dimension_numbers is None:
        return False
    if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
        return tuple(dimension_numbers) == ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
    return tuple(dimension_numbers) == _NHWC


def canonical_grad_conv(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: Any,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    precision: Any = None,
    **kwargs: Any,
) -> jax.Array:
    """``lax.conv_general_dilated`` with a backward pass made of canonical convolutions.

    Handles the convolutions of the identical units of a stage (stride 1, explicit padding, no
    dilation or groups, NHWC); anything else goes to ``lax.conv_general_dilated`` unchanged.
    """
    simple = (
        all(s == 1 for s in window_strides)
        and not isinstance(padding, str)
        and all(d == 1 for d in (lhs_dilation or (1, 1)))
        and all(d == 1 for d in (rhs_dilation or (1, 1)))
        and feature_group_count == 1
        and _is_nhwc(dimension_numbers)
        and not kwargs
    )
    if not simple:
        return lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation,
            dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count,
            precision=precision,
            **kwargs,
        )
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    return _conv_stride1(lhs, rhs, pads, precision)


def _pack(x: jax.Array) -> jax.Array:
    """A saved 16-bit float activation as raw bits. XLA:CPU computes bfloat16 in float32 and
    would otherwise keep whole stacks of saved activations as float32 (docs/performance.md); an
    integer buffer it leaves alone. A no-op reinterpretation on every backend."""
    return lax.bitcast_convert_type(x, jnp.uint16) if x.dtype.itemsize == 2 else x


def _unpack(bits: jax.Array, dtype: Any) -> jax.Array:
    return lax.bitcast_convert_type(bits, dtype) if bits.dtype == jnp.uint16 else bits


def _conv(x: jax.Array, w: jax.Array, pads: Any, precision: Any) -> jax.Array:
    return lax.conv_general_dilated(
        x, w, (1, 1), pads, dimension_numbers=_NHWC, precision=precision
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_stride1(x: jax.Array, w: jax.Array, pads: Any, precision: Any) -> jax.Array:
    return _conv(x, w, pads, precision)


def _conv_stride1_fwd(x, w, pads, precision):
    return _conv(x, w, pads, precision), (_pack(x), w)


def _conv_stride1_bwd(pads, precision, res, g):
    x, w = res
    x = _unpack(x, g.dtype)
    kh, kw = w.shape[:2]
    # Input gradient: the "full" correlation with the flipped kernel, in/out channels swapped.
    (top, bottom), (left, right) = pads
    back_pads = ((kh - 1 - top, kh - 1 - bottom), (kw - 1 - left, kw - 1 - right))
    dx = _conv(g, jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2), back_pads, precision)
    if (kh, kw) == (1, 1) and pads == ((0, 0), (0, 0)):
        # A 1x1 conv's weight gradient is a plain matrix product over batch and pixels.
        dw = jnp.einsum("nhwi,nhwo->io", x, g, precision=precision)[None, None]
    else:
        # Weight gradient as a canonical convolution: the input channels play the batch, the
        # batch plays the input features, the output gradient is the kernel.
        # dW[a, b, i, o] = sum_{n,h,w} xpad[n, h + a, w + b, i] * g[n, h, w, o]
        dw = _conv(x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3), pads, precision)
        dw = dw.transpose(1, 2, 0, 3)
    return dx.astype(x.dtype), dw.astype(w.dtype)


_conv_stride1.defvjp(_conv_stride1_fwd, _conv_stride1_bwd)


# ---------------------------------------------------------------------------------------------
# BatchNorm + ReLU


def _batch_stats(
    x: jax.Array, axis_name: str | None, ordered: bool = False
) -> tuple[jax.Array, jax.Array]:
    """Per-channel mean and variance in float32, as ``nn.BatchNorm`` computes them (E[x^2] -
    E[x]^2 clipped at 0; one ``pmean`` of both moments when synchronized, in device order with
    ``ordered``: :mod:`preact.reductions`)."""
    x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    axes = tuple(range(x.ndim - 1))
    mu, mu2 = x32.mean(axes), lax.square(x32).mean(axes)
    if axis_name is not None:
        mu, mu2 = reductions.pmean(jnp.stack([mu, mu2]), axis_name, ordered=ordered)
    return mu, jnp.maximum(0.0, mu2 - lax.square(mu))


def _normalize_relu(x, mean, var, scale, bias, epsilon, dtype, relu=True):
    """Flax's ``_normalize`` (same operations, same order), then ReLU (unless ``relu=False``)."""
    y = x - mean
    mul = lax.rsqrt(var + epsilon) * scale
    y = y * mul + bias
    y = jnp.asarray(y, dtype)
    return nn.relu(y) if relu else y


# nondiff: epsilon, axis_name, relu, ordered (the last two are static switches of the layer).
@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def _bn_relu_train(x, scale, bias, epsilon, axis_name, relu=True, ordered=False):
    mean, var = _batch_stats(x, axis_name, ordered)
    return _normalize_relu(x, mean, var, scale, bias, epsilon, x.dtype, relu), mean, var


def _bn_relu_train_fwd(x, scale, bias, epsilon, axis_name, relu=True, ordered=False):
    mean, var = _batch_stats(x, axis_name, ordered)
    y = _normalize_relu(x, mean, var, scale, bias, epsilon, x.dtype, relu)
    # Saved for the backward pass: x in its own dtype, two per-channel vectors and the params.
    return (y, mean, var), (_pack(x), mean, lax.rsqrt(var + epsilon), scale, bias)


def _bn_relu_train_bwd(epsilon, axis_name, relu, ordered, res, cotangents):
    # The mean and variance outputs only feed the running averages, which are not
    # differentiated; their cotangents are zero and are ignored.
    g, _, _ = cotangents
    x, mean, rstd, scale, bias = res
    x = _unpack(x, g.dtype)
    x32 = x.astype(jnp.float32)
    xhat = (x32 - mean) * rstd
    gz = g.astype(jnp.float32)
    if relu:
        gz = jnp.where(xhat * scale + bias > 0, gz, 0.0)
    axes = tuple(range(x.ndim - 1))
    dbias, dscale = gz.sum(axes), (gz * xhat).sum(axes)
    count = x.size // x.shape[-1]
    sums = jnp.stack([dbias, dscale])
    if axis_name is not None:
        # The statistics are global: every device's x moves every device's output.
        sums = reductions.psum(sums, axis_name, ordered=ordered)
        count = count * lax.psum(1, axis_name)
    dx = (scale * rstd) * (gz - (sums[0] + xhat * sums[1]) / count)
    return dx.astype(x.dtype), dscale.astype(scale.dtype), dbias.astype(bias.dtype)


_bn_relu_train.defvjp(_bn_relu_train_fwd, _bn_relu_train_bwd)


class BatchNormReLU(nn.Module):
    """``relu(nn.BatchNorm(...)(x))`` with a memory-lean training backward.

    The variables (``params/scale``, ``params/bias``, ``batch_stats/mean``, ``batch_stats/var``)
    and the running-average update are ``nn.BatchNorm``'s, for a channels-last input, so this
    layer and the unfused pair read the same checkpoints.
    """

    use_running_average: bool | None = None
    momentum: float = 0.99
    epsilon: float = 1e-5
    dtype: Any = None
    param_dtype: Any = jnp.float32
    axis_name: str | None = None
    # Synchronized statistics summed in one fixed device order (preact.reductions).
    ordered_reductions: bool = False
    relu: bool = True  # False: BatchNorm alone (the class BatchNorm below)

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        use_running_average = nn.merge_param(
            "use_running_average", self.use_running_average, use_running_average
        )
        features = (x.shape[-1],)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, features, jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, features, jnp.float32)
        scale = self.param("scale", nn.initializers.ones, features, self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, features, self.param_dtype)
        dtype = self.dtype or x.dtype
        x = jnp.asarray(x, dtype)
        if use_running_average:
            return _normalize_relu(
                x, ra_mean.value, ra_var.value, scale, bias, self.epsilon, dtype, self.relu
            )
        # As nn.BatchNorm: no cross-device statistics and no running update while initializing.
        axis_name = None if self.is_initializing() else self.axis_name
        y, mean, var = _bn_relu_train(
            x, scale, bias, self.epsilon, axis_name, self.relu, self.ordered_reductions
        )
        if not self.is_initializing():
            ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
            ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        return y


class BatchNorm(BatchNormReLU):
    """``nn.BatchNorm`` (channels last) with the same memory-lean backward and no ReLU.

    Same variables as ``nn.BatchNorm``. The networks use it only where synchronized statistics
    must be reduced in a fixed device order (``config.deterministic_reductions``), which stock
    ``nn.BatchNorm``'s ``lax.pmean`` cannot do.
    """

    relu: bool = False
