"""Networks: stem, stages of residual units, head; the CIFAR and ImageNet depth tables.

CIFAR (He et al. 2015 §4.2; this paper's Appendix): conv1 3x3/16, three stages on 32x32, 16x16
and 8x8 maps, global average pooling, FC. Depth is 6n+2 with basic units (ResNet-110: n=18), 9n+2
with bottleneck units (ResNet-164: n=18, ResNet-1001: n=111) and 3n+2 with one-layer units
(ResNet-110 "1layer skip": n=36).

ImageNet (§5, footnote 3): conv1 7x7/2 64, BN-ReLU, max-pool 3x3/2, four stages on 56, 28, 14, 7
maps, global average pooling, FC-1000. Fully convolutional, so a 320x320 test crop runs as is.

The identical units of a stage (all but its first) can run under ``nn.scan`` with their
parameters and BN statistics stacked along a leading axis, so a 1001-layer net compiles as fast as
a 164-layer one; ``scan=False`` unrolls them. Both compute the same function for the same weights
(:func:`scan_variables` and :func:`unscan_variables` convert one layout to the other).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import flax.core
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from preact import layers as layers_lib
from preact import units as units_lib
from preact.units import ModuleDef

CIFAR_DEPTH_FORMULA = {"basic": "6n+2", "bottleneck": "9n+2", "one_layer": "3n+2"}

# Units per stage and block of the ImageNet ResNets (He et al. 2015 Table 1; this paper's fn. 3).
IMAGENET_DEPTHS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}
DOWNSAMPLE_SHORTCUTS = ("zero_pad", "projection")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
CONV_GRADS = ("auto", "xla", "canonical")


def _layers_per_unit(block: str) -> int:
    return len(units_lib.residual_layers(block, 4 * units_lib.BOTTLENECK_EXPANSION, 1))


def cifar_units_per_stage(depth: int, block: str) -> int:
    """n of a CIFAR net: depth = 3 * (layers per unit) * n + 2 (conv1 and the FC layer).

    Raises:
      ValueError: an unknown block, or a depth no n gives; the message names the nearest valid
        depths.
    """
    if block not in units_lib.BLOCKS:
        raise ValueError(f"unknown block {block!r}; valid: {units_lib.BLOCKS}")
    step = 3 * _layers_per_unit(block)
    if not isinstance(depth, (int, np.integer)) or depth < step + 2 or (depth - 2) % step:
        lower = max(step + 2, (int(depth) - 2) // step * step + 2)
        upper = lower if lower > depth else lower + step
        nearest = sorted({lower, upper})
        raise ValueError(
            f"depth {depth} is impossible for a CIFAR net of {block} units, whose depth is "
            f"{CIFAR_DEPTH_FORMULA[block]} (n >= 1); nearest valid depths: "
            f"{', '.join(map(str, nearest))}"
        )
    return (depth - 2) // step


def imagenet_stage_sizes(depth: int) -> tuple[str, tuple[int, ...]]:
    """(block, units per stage) of an ImageNet ResNet; ValueError names the table's depths."""
    if depth not in IMAGENET_DEPTHS:
        valid = sorted(IMAGENET_DEPTHS)
        i = bisect.bisect_left(valid, depth)
        nearest = sorted({valid[max(i - 1, 0)], valid[min(i, len(valid) - 1)]})
        raise ValueError(
            f"ImageNet depth {depth} is not in the table; valid: {valid} "
            f"(nearest: {', '.join(map(str, nearest))})"
        )
    return IMAGENET_DEPTHS[depth]


def _head_init() -> nn.initializers.Initializer:
    # Torch's nn.Linear default, which the authors' code keeps: uniform(+-1/sqrt(fan_in)).
    return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class _RepeatedUnit(nn.Module):
    """A unit in the (carry, x) -> (carry, y) form that ``nn.scan`` needs."""

    unit: ModuleDef
    train: bool

    @nn.compact
    def __call__(self, x: jax.Array, _: Any) -> tuple[jax.Array, None]:
        return self.unit(name="unit")(x, train=self.train), None


class Stage(nn.Module):
    """One stage: a first unit (which may change dimensions), then ``num_units - 1`` identical
    units, scanned (``units/unit/...``, stacked) or unrolled (``unit02``, ``unit03``, ...)."""

    first: ModuleDef
    rest: ModuleDef
    num_units: int
    scan: bool = True
    remat: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = self.first(name="unit01")(x, train=train)
        repeats = self.num_units - 1
        if repeats == 0:
            return x
        if self.scan:
            body = _RepeatedUnit
            if self.remat:
                body = nn.remat(body, prevent_cse=False)
            scanned = nn.scan(
                body,
                # Each unit has its own parameters and its own running BN statistics: both are
                # stacked along axis 0. Carrying batch_stats would share one average across units.
                variable_axes={"params": 0, "batch_stats": 0},
                split_rngs={"params": True, "dropout": True},
                length=repeats,
            )
            x, _ = scanned(self.rest, train, name="units")(x, None)
            return x
        unit = nn.remat(self.rest.func, prevent_cse=True) if self.remat else self.rest.func
        for i in range(repeats):
            x = unit(*self.rest.args, **self.rest.keywords, name=f"unit{i + 2:02d}")(x, train=train)
        return x


class ResNet(nn.Module):
    """A ResNet of residual units; build it with :func:`cifar_resnet` or :func:`imagenet_resnet`.

    Attributes:
      stage_sizes: units per stage.
      widths: output channels of each stage (bottleneck: 4x the inner width).
      stem: ``cifar`` (3x3/1 conv) or ``imagenet`` (7x7/2 conv, BN-ReLU, 3x3/2 max-pool).
      stem_width: conv1's channels.
      block, unit: see :mod:`preact.units`.
      unit_options: fields of the unit class, passed to every unit as they are and checked by
        the unit's ``check_options``: the Table 1 shortcuts of the original unit
        (``shortcut_variant`` ..., see ``OriginalUnit``), or the options of a unit of your own.
      downsample_shortcut: h of a unit that changes dimensions: ``zero_pad`` (option A, the
        paper's choice for the basic CIFAR nets) or ``projection`` (option B, its choice for the
        bottleneck nets and ImageNet).
      bottleneck_stride: which conv of a downsampling bottleneck unit strides.
      scan, remat: run the identical units of each stage under ``nn.scan`` / ``nn.remat``.
      fused_bn_relu: every BN followed by ReLU is one :class:`preact.layers.BatchNormReLU`
        (same variables and forward, a backward that keeps a third of the memory).
      conv_grad: how the scanned units' convs compute their gradients: ``xla`` (JAX's own
        transpose rule), ``canonical`` (:func:`preact.layers.canonical_grad_conv`, which keeps
        XLA:CPU on its fast convolution path inside the scan loop) or ``auto`` (canonical on
        CPU, XLA's elsewhere). Units outside a scan always use XLA's.
      dtype: compute dtype; parameters and BN statistics stay float32, logits come out float32.
      bn_momentum: Flax's momentum, the weight of the old running average (0.9 = Torch's 0.1).
      bn_axis_name: the device axis to synchronize BN statistics over (None: per device).
      bn_ordered_reductions: synchronized BN statistics summed over devices in one fixed order
        (:mod:`preact.reductions`), bit-identical on every process layout.
      conv_init_mode: ``fan_out`` or ``fan_in`` He-normal init.
    """

    stage_sizes: Sequence[int]
    widths: Sequence[int]
    num_classes: int
    stem: str = "cifar"
    stem_width: int = 16
    block: str = "basic"
    unit: str = "full_preact"
    unit_options: Mapping[str, Any] = flax.core.FrozenDict()
    downsample_shortcut: str = "zero_pad"
    bottleneck_stride: str = "first_1x1"
    scan: bool = True
    remat: bool = False
    fused_bn_relu: bool = True
    conv_grad: str = "auto"
    dtype: Any = jnp.float32
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_axis_name: str | None = None
    bn_ordered_reductions: bool = False
    conv_init_mode: str = "fan_out"

    def __post_init__(self) -> None:
        # A plain dict would make the module unhashable, and jit takes it as a static argument.
        object.__setattr__(self, "unit_options", flax.core.FrozenDict(self.unit_options))
        _validate(self)
        super().__post_init__()

    @property
    def unit_cls(self) -> type[units_lib.ResidualUnit]:
        return units_lib.UNITS[self.unit]

    def stage_strides(self) -> tuple[int, ...]:
        return (1,) + (2,) * (len(self.stage_sizes) - 1)

    def paper_depth(self) -> int:
        """Weight layers on the main path, as the paper counts: conv1, F's layers, FC."""
        return 2 + sum(self.stage_sizes) * _layers_per_unit(self.block)

    def _make_unit(
        self, layers: dict[str, ModuleDef], in_features: int, stage: int, first: bool
    ) -> ModuleDef:
        features = self.widths[stage]
        strides = self.stage_strides()[stage] if first else 1
        residual = units_lib.residual_layers(self.block, features, strides, self.bottleneck_stride)
        changes = first and (in_features != features or strides != 1)
        shortcut = self.downsample_shortcut if changes else "identity"
        kwargs = dict(self.unit_options)
        if self.unit_cls.SHARED_PREACTIVATION:
            # Appendix: the first unit of each stage pre-activates before the split; after the
            # ImageNet stem (BN-ReLU-maxpool) the first unit needs no pre-activation at all.
            kwargs["shared_preact"] = first
            kwargs["preactivate"] = not (first and stage == 0 and self.stem == "imagenet")
        scanned = self.scan and not first
        return functools.partial(
            self.unit_cls,
            layers=residual,
            shortcut=shortcut,
            conv=layers["scan_conv" if scanned else "conv"],
            norm=layers["norm"],
            norm_act=layers["norm_act"],
            **kwargs,
        )

    def _canonical_conv_grad(self) -> bool:
        if self.conv_grad == "auto":
            # Measured (docs/performance.md): XLA:CPU runs JAX's weight-gradient conv inside a
            # while loop 10x slower than the canonical form; other backends are left to XLA.
            return jax.default_backend() == "cpu"
        return self.conv_grad == "canonical"

    def _layers(self) -> dict[str, ModuleDef]:
        """The configured conv and norm layers every unit receives."""
        conv = units_lib.conv_partial(self.dtype, self.conv_init_mode)
        bn = (
            self.dtype,
            self.bn_momentum,
            self.bn_epsilon,
            self.bn_axis_name,
            self.bn_ordered_reductions,
        )
        scan_conv = conv
        if self._canonical_conv_grad():
            scan_conv = functools.partial(conv, conv_general_dilated=layers_lib.canonical_grad_conv)
        return {
            "conv": conv,
            "scan_conv": scan_conv,
            "norm": units_lib.norm_partial(*bn),
            "norm_act": (
                units_lib.norm_partial(*bn, fused_relu=True) if self.fused_bn_relu else None
            ),
        }

    def _norm_act(self, x: jax.Array, *, train: bool, name: str, act: bool = True) -> jax.Array:
        """BN (and ReLU when ``act``) outside the units: after the stem and before pooling."""
        layers = self._layers()
        if act and layers["norm_act"] is not None:
            return layers["norm_act"](use_running_average=not train, name=name)(x)
        x = layers["norm"](use_running_average=not train, name=name)(x)
        return nn.relu(x) if act else x

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        layers = self._layers()
        conv = layers["conv"]
        x = jnp.asarray(x, self.dtype)
        unit_cls = self.unit_cls
        if self.stem == "imagenet":
            # fb.resnet.torch: conv1-BN-ReLU-maxpool for every unit type, since the max-pool
            # sits between conv1 and the first unit.
            x = conv(self.stem_width, (7, 7), strides=(2, 2), padding=((3, 3), (3, 3)),
                     name="conv1")(x)  # fmt: skip
            x = self._norm_act(x, train=train, name="norm1")
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        else:
            x = conv(self.stem_width, (3, 3), padding=((1, 1), (1, 1)), name="conv1")(x)
            if unit_cls.STEM_NORM:
                x = self._norm_act(x, train=train, name="norm1", act=unit_cls.STEM_ACT)
            elif unit_cls.STEM_ACT:
                x = nn.relu(x)

        in_features = self.stem_width
        for stage, num_units in enumerate(self.stage_sizes):
            x = Stage(
                first=self._make_unit(layers, in_features, stage, first=True),
                rest=self._make_unit(layers, self.widths[stage], stage, first=False),
                num_units=num_units,
                scan=self.scan,
                remat=self.remat,
                name=f"stage{stage + 1}",
            )(x, train=train)
            in_features = self.widths[stage]

        if unit_cls.FINAL_NORM:
            x = self._norm_act(x, train=train, name="norm_final", act=unit_cls.FINAL_ACT)
        elif unit_cls.FINAL_ACT:
            x = nn.relu(x)
        x = jnp.mean(x, axis=(1, 2), dtype=jnp.float32)  # global average pooling
        return nn.Dense(self.num_classes, kernel_init=_head_init(), dtype=jnp.float32, name="head")(
            x
        )


# Unit fields the network sets itself (the layers, the shortcut, the Appendix rules).
_NETWORK_SET_FIELDS = ("layers", "shortcut", "conv", "norm", "norm_act", "act", "shared_preact",
                       "preactivate", "parent", "name")  # fmt: skip


def _validate(net: ResNet) -> None:
    """Every bad spec raises a ValueError naming the valid choices, before anything is traced."""

    def choose(field: str, value: Any, valid: Sequence[Any]) -> None:
        if value not in valid:
            raise ValueError(f"unknown {field} {value!r}; valid: {tuple(valid)}")

    choose("unit", net.unit, tuple(units_lib.UNITS))
    unit_fields = {f.name for f in dataclasses.fields(net.unit_cls)} - set(_NETWORK_SET_FIELDS)
    unknown = sorted(set(net.unit_options) - unit_fields)
    if unknown:
        raise ValueError(
            f"unit_options {unknown} are not fields of unit {net.unit!r} "
            f"({net.unit_cls.__qualname__}); its options: {sorted(unit_fields)}"
        )
    net.unit_cls.check_options(net.unit_options)
    choose("block", net.block, units_lib.BLOCKS)
    choose("stem", net.stem, ("cifar", "imagenet"))
    choose("downsample_shortcut", net.downsample_shortcut, DOWNSAMPLE_SHORTCUTS)
    choose("bottleneck_stride", net.bottleneck_stride, units_lib.BOTTLENECK_STRIDES)
    choose("conv_init_mode", net.conv_init_mode, ("fan_in", "fan_out"))
    choose("conv_grad", net.conv_grad, CONV_GRADS)
    if net.dtype not in DTYPES.values():
        raise ValueError(f"unknown dtype {net.dtype!r}; valid: {tuple(DTYPES)}")
    if len(net.stage_sizes) != len(net.widths) or not net.stage_sizes:
        raise ValueError(f"stage_sizes {net.stage_sizes} and widths {net.widths} must match")
    if any(n < 1 for n in net.stage_sizes):
        raise ValueError(f"every stage needs at least one unit, got {net.stage_sizes}")
    if net.num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {net.num_classes}")
    if net.block == "bottleneck" and any(w % units_lib.BOTTLENECK_EXPANSION for w in net.widths):
        raise ValueError(f"bottleneck widths must be multiples of 4, got {net.widths}")


def cifar_resnet(
    depth: int, *, block: str, width: int = 16, downsample_shortcut: str | None = None, **kwargs
) -> ResNet:
    """A CIFAR ResNet of ``depth`` layers; ``width`` is conv1's channels (16 in the paper).

    ``downsample_shortcut`` defaults to the paper's: option A for basic and one-layer nets,
    projection for bottleneck nets (Appendix).
    """
    n = cifar_units_per_stage(depth, block)
    expansion = units_lib.BOTTLENECK_EXPANSION if block == "bottleneck" else 1
    if downsample_shortcut is None:
        downsample_shortcut = "projection" if block == "bottleneck" else "zero_pad"
    return ResNet(
        stage_sizes=(n, n, n),
        widths=tuple(width * m * expansion for m in (1, 2, 4)),
        stem="cifar",
        stem_width=width,
        block=block,
        downsample_shortcut=downsample_shortcut,
        **kwargs,
    )


def imagenet_resnet(
    depth: int, *, width: int = 64, downsample_shortcut: str = "projection", **kwargs
) -> ResNet:
    """An ImageNet ResNet-18/34/50/101/152/200 (projection shortcuts, option B)."""
    block, sizes = imagenet_stage_sizes(depth)
    expansion = units_lib.BOTTLENECK_EXPANSION if block == "bottleneck" else 1
    return ResNet(
        stage_sizes=sizes,
        widths=tuple(width * m * expansion for m in (1, 2, 4, 8)),
        stem="imagenet",
        stem_width=width,
        block=block,
        downsample_shortcut=downsample_shortcut,
        **kwargs,
    )


def create_model(
    model_config: Mapping[str, Any],
    *,
    num_classes: int,
    dtype: str = "float32",
    bn_axis_name: str | None = None,
    bn_ordered_reductions: bool = False,
) -> ResNet:
    """The network a config's ``model`` section describes (see ``configs/default.py``)."""
    cfg = dict(model_config)
    family = cfg.pop("family", "cifar")
    options = cfg.pop("unit_options", None) or {}
    cfg["unit_options"] = flax.core.FrozenDict(
        options.to_dict() if hasattr(options, "to_dict") else options
    )
    depth = cfg.pop("depth")
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: {tuple(DTYPES)}")
    common = dict(
        num_classes=num_classes,
        dtype=DTYPES[dtype],
        bn_axis_name=bn_axis_name,
        bn_ordered_reductions=bn_ordered_reductions,
    )
    for field in ("width", "downsample_shortcut"):  # None: the family's default
        if cfg.get(field) is None:
            cfg.pop(field, None)
    if family == "cifar":
        return cifar_resnet(depth, **cfg, **common)
    if family == "imagenet":
        cfg.pop("block", None)  # the depth table fixes the block
        return imagenet_resnet(depth, **cfg, **common)
    raise ValueError(f"unknown model family {family!r}; valid: ('cifar', 'imagenet')")


def scan_variables(variables: Mapping[str, Any]) -> dict[str, Any]:
    """Convert the variables of an unrolled network (``scan=False``) to the scanned layout.

    ``stageK/unit02 ... unitNN`` become ``stageK/units/unit`` with a leading axis of N-1.
    """

    def convert(tree: Any) -> Any:
        if not isinstance(tree, Mapping):
            return tree
        out = {}
        repeated = sorted(
            k for k in tree if k.startswith("unit") and k[4:].isdigit() and k != "unit01"
        )
        for key, value in tree.items():
            if key not in repeated:
                out[key] = convert(value)
        if repeated:
            stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[tree[k] for k in repeated])
            out["units"] = {"unit": stacked}
        return out

    return {collection: convert(tree) for collection, tree in variables.items()}


def unscan_variables(variables: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`scan_variables`: ``stageK/units/unit`` (stacked on axis 0) becomes
    ``stageK/unit02 ... unitNN``, the layout of the unrolled network."""

    def convert(tree: Any) -> Any:
        if not isinstance(tree, Mapping):
            return tree
        out = {}
        for key, value in tree.items():
            if key == "units" and isinstance(value, Mapping) and set(value) == {"unit"}:
                stacked = value["unit"]
                count = jax.tree.leaves(stacked)[0].shape[0]
                for i in range(count):
                    out[f"unit{i + 2:02d}"] = jax.tree.map(lambda a, i=i: a[i], stacked)
            else:
                out[key] = convert(value)
        return out

    return {collection: convert(tree) for collection, tree in variables.items()}


def count_params(params: Any) -> int:
    return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))


def count_paper_params(params: Any) -> int:
    """Parameters as the paper counts them: conv and FC weights (and gate biases), no BN.

    With this count ResNet-1001 has 10.2M parameters (Table 4); with BN's gamma and beta 10.3M.
    """
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    total = 0
    for path, leaf in flat:
        names = [getattr(k, "key", str(k)) for k in path]
        if not any(n.startswith("norm") for n in names):
            total += int(np.prod(leaf.shape))
    return total
