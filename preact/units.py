"""Residual units of "Identity Mappings in Deep Residual Networks" (He et al., 2016).

A residual unit computes ``y_l = h(x_l) + F(x_l)`` and ``x_{l+1} = f(y_l)`` (Eq. 1-2). The units
here differ only in the order of the same components (Fig. 4) or in what sits on the shortcut
``h`` (Fig. 2):

============================  ===========================================================  =====
unit name                     computation (W = weight layer)                               paper
============================  ===========================================================  =====
``original``                  ``x -> W-BN-ReLU-W-BN -> (+h(x)) -> ReLU``                   4(a)
``bn_after_add``              ``x -> W-BN-ReLU-W -> (+h(x)) -> BN-ReLU``                   4(b)
``relu_before_add``           ``x -> W-BN-ReLU-W-BN-ReLU -> (+h(x))``                      4(c)
``relu_preact``               ``x -> ReLU-W-BN-ReLU-W-BN -> (+x)``                         4(d)
``full_preact``               ``x -> BN-ReLU-W-BN-ReLU-W -> (+x)``  (proposed, Eq. 9)      4(e)
============================  ===========================================================  =====

The weight layers ``W`` of F come from :func:`residual_layers`: two 3x3 convs (``basic``), a
1x1-3x3-1x1 bottleneck with 4x expansion (``bottleneck``), or a single 3x3 conv
(``one_layer``, the "ResNet-110 (1layer skip)" of Table 3).

The shortcut variants of Table 1 (Fig. 2) are options of the ``original`` unit only, as in the
paper: constant scaling, exclusive gating, shortcut-only gating, a 1x1 conv on every shortcut and
dropout on the shortcut. Each is one function in the ``SHORTCUT_VARIANTS`` registry; a variant of
your own is one more, decorated with ``@register_shortcut_variant("name")`` and selected with
``model.unit_options={"shortcut_variant": "name"}``.

To add a unit of your own, in this file or in a module of yours: subclass :class:`ResidualUnit`
(or :class:`PreActivationUnit`), declare the Appendix rules it needs as class attributes
(``STEM_NORM``, ``STEM_ACT``, ``FINAL_NORM``, ``FINAL_ACT``, ``SHARED_PREACTIVATION``), give it
dataclass fields for options of its own, decorate it with ``@register_unit("name")``, and select
it with ``model.unit="name"`` and its options with ``model.unit_options``; nothing else changes.
Units receive their conv and norm layers already configured (dtype, init, BN momentum, axis
name), so a unit knows nothing about devices or precision.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from preact import layers as layers_lib

ModuleDef = Any

BLOCKS = ("basic", "bottleneck", "one_layer")
SHORTCUTS = ("identity", "zero_pad", "projection")
GATING_VARIANTS = ("exclusive_gating", "shortcut_only_gating")
BOTTLENECK_STRIDES = ("first_1x1", "3x3")
BOTTLENECK_EXPANSION = 4


@dataclasses.dataclass(frozen=True)
class Layer:
    """One weight layer of the residual function F: a ``kernel x kernel`` conv."""

    kernel: int
    features: int
    strides: int = 1


def residual_layers(
    block: str, features: int, strides: int, bottleneck_stride: str = "first_1x1"
) -> tuple[Layer, ...]:
    """The weight layers of F for a unit whose output has ``features`` channels.

    ``bottleneck_stride`` places the stride of a downsampling bottleneck unit. The paper does not
    say (docs/reproduction.md#choices-where-the-paper-is-silent): the authors' Torch code for
    ResNet-1001 (resnet-1k-layers) strides the first 1x1 conv, as the original Caffe ResNets do;
    fb.resnet.torch strides the 3x3. We default to ``first_1x1``.
    """
    if block == "basic":
        return (Layer(3, features, strides), Layer(3, features, 1))
    if block == "bottleneck":
        if features % BOTTLENECK_EXPANSION:
            raise ValueError(f"bottleneck features must be a multiple of 4, got {features}")
        mid = features // BOTTLENECK_EXPANSION
        if bottleneck_stride not in BOTTLENECK_STRIDES:
            raise ValueError(
                f"unknown bottleneck_stride {bottleneck_stride!r}; valid: {BOTTLENECK_STRIDES}"
            )
        first, middle = (strides, 1) if bottleneck_stride == "first_1x1" else (1, strides)
        return (Layer(1, mid, first), Layer(3, mid, middle), Layer(1, features, 1))
    if block == "one_layer":
        return (Layer(3, features, strides),)
    raise ValueError(f"unknown block {block!r}; valid: {BLOCKS}")


def zero_pad_shortcut(x: jax.Array, features: int, strides: int) -> jax.Array:
    """Option A of He et al. (2015): subsample, then pad the new channels with zeros.

    No parameters. Subsampling keeps the top-left pixel of each 2x2 window, which is what
    fb.resnet.torch's ``SpatialAveragePooling(1, 1, 2, 2)`` does.
    """
    if strides > 1:
        x = x[:, ::strides, ::strides, :]
    extra = features - x.shape[-1]
    if extra < 0:
        raise ValueError(f"zero-padding shortcut cannot reduce channels {x.shape[-1]}->{features}")
    if extra:
        x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, extra)))
    return x


class ResidualUnit(nn.Module):
    """Fields shared by every unit.

    Attributes:
      layers: the weight layers of F (see :func:`residual_layers`); the last one sets the output
        width and the stride is carried by the layer that has it.
      shortcut: how ``h`` matches dimensions: ``identity`` (none needed), ``zero_pad`` (option A)
        or ``projection`` (a 1x1 conv, option B).
      conv: a configured ``nn.Conv`` partial (no bias, He init, dtype).
      norm: a configured ``nn.BatchNorm`` partial (momentum, epsilon, dtype, axis name), without
        ``use_running_average``, which the unit sets from ``train``.
      norm_act: the same BN followed by ReLU as one layer (``preact.layers.BatchNormReLU``,
        same variables, leaner backward), or None to compose ``norm`` and ``act``. Used
        wherever a BN is followed by ReLU and ``act`` is ReLU.
    """

    layers: tuple[Layer, ...]
    shortcut: str
    conv: ModuleDef
    norm: ModuleDef
    act: Callable[[jax.Array], jax.Array] = nn.relu
    norm_act: ModuleDef | None = None

    # Activations the network adds around the units (Appendix, Fig. 5). Overridden per unit.
    STEM_NORM: ClassVar[bool] = True  # BN after conv1
    STEM_ACT: ClassVar[bool] = True  # ReLU after conv1 (and its BN)
    FINAL_NORM: ClassVar[bool] = False  # BN after the last addition, before pooling
    FINAL_ACT: ClassVar[bool] = False  # ReLU after the last addition, before pooling
    # Post-activation units give their projection a BN, as in He et al. (2015); pre-activation
    # projections read a tensor that is already normalized (Appendix) and have none.
    PROJECTION_NORM: ClassVar[bool] = True
    # Appendix: the unit takes ``shared_preact`` and ``preactivate`` fields and the network sets
    # them (shared pre-activation for the first unit of each stage; none after the ImageNet
    # stem's BN-ReLU). See :class:`PreActivationUnit`.
    SHARED_PREACTIVATION: ClassVar[bool] = False

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Raise a ValueError on a bad combination of this unit's own fields (``options`` holds
        the ones a config sets). The network calls it before anything is traced; the network
        has already checked that every key is a field of the unit."""
        del options  # a unit with no constraints between its options

    @property
    def features(self) -> int:
        return self.layers[-1].features

    @property
    def strides(self) -> int:
        return max(layer.strides for layer in self.layers)

    def _conv(self, layer: Layer, name: str) -> nn.Module:
        pad = (
            layer.kernel // 2
        )  # symmetric, as Torch and Caffe pad; "SAME" would shift stride-2 maps
        return self.conv(
            layer.features,
            (layer.kernel, layer.kernel),
            strides=(layer.strides, layer.strides),
            padding=((pad, pad), (pad, pad)),
            name=name,
        )

    def _norm(self, train: bool, name: str) -> nn.Module:
        return self.norm(use_running_average=not train, name=name)

    def _norm_act(self, x: jax.Array, *, train: bool, name: str) -> jax.Array:
        """BN (variables under ``name``) then the activation."""
        if self.norm_act is not None and self.act is nn.relu:
            return self.norm_act(use_running_average=not train, name=name)(x)
        return self.act(self._norm(train, name)(x))

    def _post_activation_residual(self, x: jax.Array, *, train: bool, end: str) -> jax.Array:
        """F of the post-activation units: (W-BN-ReLU) for every weight layer but the last, whose
        W is followed by ``end``: ``"bn"`` (Fig. 4a), ``"none"`` (4b: the BN comes after the
        addition) or ``"bn_relu"`` (4c). Variables ``conv<i>``, ``norm<i>``."""
        for i, layer in enumerate(self.layers, start=1):
            x = self._conv(layer, f"conv{i}")(x)
            if i < len(self.layers) or end == "bn_relu":
                x = self._norm_act(x, train=train, name=f"norm{i}")
            elif end == "bn":
                x = self._norm(train, f"norm{i}")(x)
        return x

    def _h(self, x: jax.Array, *, train: bool) -> jax.Array:
        """The shortcut h(x): identity, zero padding (option A) or projection (option B)."""
        if self.shortcut == "identity":
            if x.shape[-1] != self.features or self.strides != 1:
                raise ValueError(
                    f"identity shortcut needs matching dimensions, got {x.shape[-1]} channels "
                    f"-> {self.features} at stride {self.strides}; use zero_pad or projection"
                )
            return x
        if self.shortcut == "zero_pad":
            return zero_pad_shortcut(x, self.features, self.strides)
        if self.shortcut == "projection":
            h = self._conv(Layer(1, self.features, self.strides), "conv_proj")(x)
            return self._norm(train, "norm_proj")(h) if self.PROJECTION_NORM else h
        raise ValueError(f"unknown shortcut {self.shortcut!r}; valid: {SHORTCUTS}")


class OriginalUnit(ResidualUnit):
    """Fig. 4(a) / Fig. 2: ``x_{l+1} = ReLU(h'(x) + s * F(x))``, F = W-BN-ReLU-...-W-BN.

    ``shortcut_variant`` picks the shortcut of Table 1 (Fig. 2); every variant keeps f = ReLU. In
    the two dimension-increasing units of a CIFAR net the variant acts on the option-A
    (zero-padded) shortcut; the gate conv reads the unit input at the unit's stride (our choice:
    the paper does not say). The fields below are this unit's options: a config sets them in
    ``model.unit_options``, e.g. ``{"shortcut_variant": "constant_scaling", "shortcut_scale":
    0.5}`` for Table 1's lambda = 0.5 row.

    Attributes:
      shortcut_variant: a name in ``SHORTCUT_VARIANTS`` (Fig. 2(a)-(f), or one registered with
        :func:`register_shortcut_variant`).
      shortcut_scale: lambda of constant scaling (0 gives the plain net of Table 1).
      residual_scale: the scale on F's output (after its last BN: a scale before a BN would be
        undone by it).
      gate_bias: initial b_g of the 1x1-conv gate ``g(x) = sigmoid(W_g x + b_g)``; None means
        -6, the value Table 1 reports best. The gate conv has a bias and no BN: a BN would make
        b_g redundant with its own shift. W_g gets the same He init as every conv (the paper
        does not say).
      dropout_rate: dropout ratio on the shortcut (0.5 in the paper).
      dropout_rescale: False (default) is plain masking, so the shortcut is scaled by 0.5 in
        expectation as the paper's text says, and by 0.5 exactly at test time; True is inverted
        dropout (Caffe's layer), expectation 1 at train time and identity at test time.
      conv_shortcut_norm: whether the 1x1 conv shortcut of Fig. 2(e) is followed by BN. Fig. 2's
        caption says BN follows every weight layer, so True by default.
    """

    shortcut_variant: str = "identity"
    shortcut_scale: float = 1.0
    residual_scale: float = 1.0
    gate_bias: float | None = None
    dropout_rate: float = 0.5
    dropout_rescale: bool = False
    conv_shortcut_norm: bool = True

    DEFAULT_GATE_BIAS: ClassVar[float] = -6.0  # Table 1: the best b_g of its search over 0..-10

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        variant = options.get("shortcut_variant", "identity")
        if variant not in SHORTCUT_VARIANTS:
            raise ValueError(
                f"unknown shortcut_variant {variant!r}; valid: {tuple(SHORTCUT_VARIANTS)}"
            )
        if options.get("gate_bias") is not None and variant not in GATING_VARIANTS:
            raise ValueError(
                f"gate_bias is set but shortcut_variant {variant!r} has no gate; gated variants: "
                f"{GATING_VARIANTS}"
            )
        scales = [options.get(k, 1.0) for k in ("shortcut_scale", "residual_scale")]
        if variant != "constant_scaling" and scales != [1.0, 1.0]:
            raise ValueError(
                "shortcut_scale and residual_scale apply to shortcut_variant 'constant_scaling' "
                f"only, not {variant!r}"
            )
        rate = options.get("dropout_rate", 0.5)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {rate}")

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        residual = self._post_activation_residual(x, train=train, end="bn")
        combine = SHORTCUT_VARIANTS.get(self.shortcut_variant)
        if combine is None:
            raise ValueError(f"unknown shortcut variant {self.shortcut_variant!r}; valid: "
                             f"{tuple(SHORTCUT_VARIANTS)}")  # fmt: skip
        return self.act(combine(self, x, residual, train=train))

    def _dropout(self, h: jax.Array, *, train: bool) -> jax.Array:
        keep = 1.0 - self.dropout_rate
        if not train:
            return h if self.dropout_rescale else h * keep
        mask = jax.random.bernoulli(self.make_rng("dropout"), keep, h.shape)
        kept = jnp.where(mask, h, jnp.zeros_like(h))
        return kept / keep if self.dropout_rescale else kept


ShortcutVariant = Callable[[OriginalUnit, jax.Array, jax.Array], jax.Array]
"""``(unit, x, residual, *, train) -> y``: the sum before the original unit's final ReLU, from
the unit input ``x`` and the residual branch F(x) (ending in BN). A variant builds what it puts
on the shortcut inside the unit (``unit._h(x, train=train)`` for the network's shortcut,
``unit.conv``/``unit._norm`` for layers of its own, named under the unit) and reads its options
from the unit's fields."""

SHORTCUT_VARIANTS: dict[str, ShortcutVariant] = {}


def register_shortcut_variant(name: str) -> Callable[[ShortcutVariant], ShortcutVariant]:
    """Decorator: adds a shortcut variant of the original unit under ``name`` (Fig. 2 has six;
    a name registered twice is a mistake, not an update)."""

    def add(variant: ShortcutVariant) -> ShortcutVariant:
        if not callable(variant):
            raise TypeError(f"shortcut variant {name!r} must be callable, got {variant!r}")
        if name in SHORTCUT_VARIANTS:
            raise ValueError(f"shortcut variant name {name!r} is taken")
        SHORTCUT_VARIANTS[name] = variant
        return variant

    return add


@register_shortcut_variant("identity")
def _identity(unit: OriginalUnit, x: jax.Array, residual: jax.Array, *, train: bool):
    """Fig. 2(a): ``h(x) + F(x)``."""
    return unit._h(x, train=train) + residual


@register_shortcut_variant("constant_scaling")
def _constant_scaling(unit: OriginalUnit, x: jax.Array, residual: jax.Array, *, train: bool):
    """Fig. 2(b): ``lambda h(x) + s F(x)`` (lambda = 0: the plain net)."""
    return unit.shortcut_scale * unit._h(x, train=train) + unit.residual_scale * residual


def _gate(unit: OriginalUnit, x: jax.Array) -> jax.Array:
    """``g(x) = sigmoid(W_g x + b_g)``: a 1x1 conv with a bias and no BN, at the unit's stride."""
    gate = unit.conv(
        unit.features,
        (1, 1),
        strides=(unit.strides, unit.strides),
        use_bias=True,
        bias_init=nn.initializers.constant(
            unit.DEFAULT_GATE_BIAS if unit.gate_bias is None else unit.gate_bias
        ),
        name="conv_gate",
    )(x)
    return nn.sigmoid(gate)


@register_shortcut_variant("exclusive_gating")
def _exclusive_gating(unit: OriginalUnit, x: jax.Array, residual: jax.Array, *, train: bool):
    """Fig. 2(c): ``(1 - g(x)) h(x) + g(x) F(x)``."""
    g = _gate(unit, x)
    return (1.0 - g) * unit._h(x, train=train) + g * residual


@register_shortcut_variant("shortcut_only_gating")
def _shortcut_only_gating(unit: OriginalUnit, x: jax.Array, residual: jax.Array, *, train: bool):
    """Fig. 2(d): ``(1 - g(x)) h(x) + F(x)``."""
    g = _gate(unit, x)
    return (1.0 - g) * unit._h(x, train=train) + residual


@register_shortcut_variant("conv_shortcut")
def _conv_shortcut(unit: OriginalUnit, x: jax.Array, residual: jax.Array, *, train: bool):
    """Fig. 2(e): a 1x1 conv (and BN, ``conv_shortcut_norm``) on every shortcut."""
    h = unit._conv(Layer(1, unit.features, unit.strides), "conv_shortcut")(x)
    if unit.conv_shortcut_norm:
        h = unit._norm(train, "norm_shortcut")(h)
    return h + residual


@register_shortcut_variant("dropout_shortcut")
def _dropout_shortcut(unit: OriginalUnit, x: jax.Array, residual: jax.Array, *, train: bool):
    """Fig. 2(f): dropout on the shortcut (``dropout_rate``, ``dropout_rescale``)."""
    return unit._dropout(unit._h(x, train=train), train=train) + residual


class BNAfterAdditionUnit(ResidualUnit):
    """Fig. 4(b): ``x_{l+1} = ReLU(BN(h(x) + F(x)))``, F = W-BN-ReLU-...-W (no BN on F's end).

    The BN after the addition alters the signal on the shortcut, which is why it trains worse
    (Table 2: 8.17% vs 6.61%).
    """

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        residual = self._post_activation_residual(x, train=train, end="none")
        y = self._h(x, train=train) + residual
        return self._norm_act(y, train=train, name="norm_add")


class ReLUBeforeAdditionUnit(ResidualUnit):
    """Fig. 4(c): ``x_{l+1} = h(x) + ReLU(F(x))``, F = W-BN-ReLU-...-W-BN; f is the identity.

    F is non-negative, so the signal can only grow along the depth (Table 2: 7.84%).
    """

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        residual = self._post_activation_residual(x, train=train, end="bn_relu")
        return self._h(x, train=train) + residual


class PreActivationUnit(ResidualUnit):
    """Shared by the pre-activation units (Eq. 9): ``x_{l+1} = x_l + F(f^(x_l))``.

    ``BN_BEFORE_CONV`` is the only difference between the two: full pre-activation puts each BN
    before its ReLU-W (Fig. 4e), ReLU-only pre-activation keeps BN right after each W (Fig. 4d).

    Attributes:
      shared_preact: the pre-activation comes before the split and the shortcut reads the
        pre-activated tensor. True for the first unit after conv1 and for the units that change
        dimensions (Appendix: "these projection shortcuts are also with pre-activation");
        identity units pre-activate only the residual branch, keeping the shortcut clean.
      preactivate: False skips the unit's first activation because its input is already
        activated (the first unit after the ImageNet stem's BN-ReLU-maxpool, as in
        fb.resnet.torch's ``no_preact``).
    """

    shared_preact: bool = False
    preactivate: bool = True

    BN_BEFORE_CONV: ClassVar[bool] = True
    SHARED_PREACTIVATION: ClassVar[bool] = True
    STEM_ACT: ClassVar[bool] = False  # the first unit's shared pre-activation plays that role
    FINAL_ACT: ClassVar[bool] = True  # Appendix: extra activation after the last addition
    PROJECTION_NORM: ClassVar[bool] = False

    def _preact(self, x: jax.Array, *, train: bool, index: int) -> jax.Array:
        if self.BN_BEFORE_CONV:
            return self._norm_act(x, train=train, name=f"norm{index}")
        return self.act(x)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        preact = self._preact(x, train=train, index=1) if self.preactivate else x
        h = self._h(preact if self.shared_preact else x, train=train)
        residual = preact
        for i, layer in enumerate(self.layers, start=1):
            if i > 1:
                residual = self._preact(residual, train=train, index=i)
            residual = self._conv(layer, f"conv{i}")(residual)
            if not self.BN_BEFORE_CONV:
                residual = self._norm(train, f"norm{i}")(residual)
        return h + residual  # nothing after the addition: the identity path stays clean


class FullPreActUnit(PreActivationUnit):
    """Fig. 4(e), the proposed unit: ``x_{l+1} = x_l + F(x_l)``, F = (BN-ReLU-W) repeated.

    Table 2: 6.37% on ResNet-110; Table 3: 4.92% on ResNet-1001.
    """

    STEM_NORM: ClassVar[bool] = False  # conv1 -> first unit's BN-ReLU (resnet-1k-layers)
    FINAL_NORM: ClassVar[bool] = True


class ReLUPreActUnit(PreActivationUnit):
    """Fig. 4(d): ``x_{l+1} = x_l + F(ReLU(x_l))``, F = W-BN-ReLU-...-W-BN.

    BN stays right after each weight layer, so conv1 keeps its BN and the pre-activation and
    the final activation after the last addition are ReLU alone (our reading of the Appendix
    for this variant, which the paper does not spell out). Table 2: 6.71%.
    """

    BN_BEFORE_CONV: ClassVar[bool] = False


UNITS: dict[str, type[ResidualUnit]] = {
    "original": OriginalUnit,
    "bn_after_add": BNAfterAdditionUnit,
    "relu_before_add": ReLUBeforeAdditionUnit,
    "relu_preact": ReLUPreActUnit,
    "full_preact": FullPreActUnit,
}


def register_unit(name: str) -> Callable[[type[ResidualUnit]], type[ResidualUnit]]:
    """Class decorator: make a unit selectable as ``model.unit=name``."""

    def register(cls: type[ResidualUnit]) -> type[ResidualUnit]:
        if not (isinstance(cls, type) and issubclass(cls, ResidualUnit)):
            raise TypeError(f"unit {name!r} must subclass preact.units.ResidualUnit, got {cls!r}")
        if name in UNITS and UNITS[name] is not cls:
            raise ValueError(f"unit name {name!r} is taken by {UNITS[name].__qualname__}")
        UNITS[name] = cls
        return cls

    return register


def is_preactivation(unit: str) -> bool:
    return UNITS[unit].SHARED_PREACTIVATION


def conv_partial(dtype: Any, init_mode: str = "fan_out") -> ModuleDef:
    """Conv without bias, He-normal init ``N(0, 2/fan)`` (He et al. 2015, ref. [23]).

    ``fan_out`` (k*k*out) is what the authors' Torch code uses; Caffe's MSRA filler is fan-in by
    default. Untruncated normal, as both.
    """
    if init_mode not in ("fan_in", "fan_out"):
        raise ValueError(f"unknown conv_init_mode {init_mode!r}; valid: ('fan_in', 'fan_out')")
    init = nn.initializers.variance_scaling(2.0, init_mode, "normal")
    return functools.partial(nn.Conv, use_bias=False, dtype=dtype, kernel_init=init)


def norm_partial(
    dtype: Any,
    momentum: float,
    epsilon: float,
    axis_name: str | None,
    ordered_reductions: bool = False,
    *,
    fused_relu: bool = False,
) -> ModuleDef:
    """BatchNorm with gamma=1, beta=0 at init, statistics kept in float32; with ``fused_relu``,
    BN followed by ReLU as one layer (:class:`preact.layers.BatchNormReLU`, same variables).

    Synchronized statistics (``axis_name``) with ``ordered_reductions`` are summed over devices
    in one fixed order (:mod:`preact.reductions`), which needs the project's own
    :class:`preact.layers.BatchNorm` where stock ``nn.BatchNorm`` would be used (same variables).

    Flax's ``momentum`` is the weight of the old running average: Torch's momentum 0.1 is Flax's
    0.9.
    """
    ordered = axis_name is not None and ordered_reductions
    if fused_relu or ordered:
        layer = layers_lib.BatchNormReLU if fused_relu else layers_lib.BatchNorm
        return functools.partial(
            layer,
            momentum=momentum,
            epsilon=epsilon,
            dtype=dtype,
            param_dtype=jnp.float32,
            axis_name=axis_name,
            ordered_reductions=ordered,
        )
    return functools.partial(
        nn.BatchNorm,
        momentum=momentum,
        epsilon=epsilon,
        dtype=dtype,
        param_dtype=jnp.float32,
        axis_name=axis_name,
    )
