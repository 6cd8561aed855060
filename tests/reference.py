"""An independent reference for the networks of "Identity Mappings in Deep Residual Networks".

Plain ``jax.numpy`` / ``jax.lax``, written from the paper (Fig. 2, Fig. 4, Eq. 9, Appendix) and
nothing of ``preact``: it only reads the project's parameter tree by name and computes the network
function from it, so a unit wired in the wrong order, a BN in the wrong place or a shortcut that
reads the wrong tensor gives a different output. Every parameter and running statistic it reads
is recorded, so a module with a parameter the paper's unit does not have is caught too.

Conventions the names follow (unrolled layout, ``scan=False``):

- ``conv1`` (3x3/1 CIFAR, 7x7/2 ImageNet), ``norm1`` its BN, ``stage{k}/unit{NN}`` the units,
  ``norm_final`` the BN after the last addition, ``head`` the fully connected layer;
- in a unit, ``conv{i}`` is F's i-th weight layer; ``norm{i}`` is the BN right after it in the
  post-activation units and Fig. 4(d), and the BN right before it in Fig. 4(e); ``norm_add`` is
  Fig. 4(b)'s BN after the addition; ``conv_proj``/``norm_proj`` the option-B projection,
  ``conv_gate`` the gate of Fig. 2(c, d), ``conv_shortcut``/``norm_shortcut`` Fig. 2(e).

BatchNorm in training mode normalizes with the batch mean and the biased batch variance and moves
each running average as ``momentum * old + (1 - momentum) * batch``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax

POST_ACTIVATION = ("original", "bn_after_add", "relu_before_add")
PRE_ACTIVATION = ("relu_preact", "full_preact")
BOTTLENECK_EXPANSION = 4


@dataclasses.dataclass(frozen=True)
class Net:
    """What the reference needs to know about a network, in the paper's terms."""

    unit: str  # original (4a), bn_after_add (4b), relu_before_add (4c), relu_preact (4d),
    #            full_preact (4e)
    block: str  # basic (3x3, 3x3), bottleneck (1x1, 3x3, 1x1; 4x expansion), one_layer (3x3)
    units_per_stage: tuple[int, ...]
    width: int  # conv1's channels; stage k has width * 2**k (x4 for bottleneck) channels
    downsample_shortcut: str = "zero_pad"  # option A, or projection (option B)
    stem: str = "cifar"
    variant: str = "identity"  # Table 1, original unit only
    shortcut_scale: float = 1.0
    residual_scale: float = 1.0
    dropout_rate: float = 0.5
    dropout_rescale: bool = False
    conv_shortcut_norm: bool = True
    bottleneck_stride: str = "first_1x1"
    momentum: float = 0.9
    epsilon: float = 1e-5

    @classmethod
    def cifar(cls, depth: int, block: str, unit: str, width: int, **kwargs: Any) -> Net:
        """6n+2 (basic), 9n+2 (bottleneck) or 3n+2 (one layer) weight layers, 3 stages."""
        per_unit = {"basic": 2, "bottleneck": 3, "one_layer": 1}[block]
        n, rest = divmod(depth - 2, 3 * per_unit)
        assert rest == 0 and n >= 1, (depth, block)
        return cls(unit=unit, block=block, units_per_stage=(n, n, n), width=width, **kwargs)

    def stage_features(self) -> tuple[int, ...]:
        expansion = BOTTLENECK_EXPANSION if self.block == "bottleneck" else 1
        return tuple(self.width * 2**k * expansion for k in range(len(self.units_per_stage)))


class Reference:
    """Reads variables by path; keeps the running averages a training-mode pass produces."""

    def __init__(self, variables: Mapping[str, Any], net: Net, *, train: bool):
        self.params = variables["params"]
        self.stats = variables.get("batch_stats", {})
        self.net = net
        self.train = train
        self.read_params: set[tuple[str, ...]] = set()
        self.read_stats: set[tuple[str, ...]] = set()
        self.new_stats: dict[tuple[str, ...], jnp.ndarray] = {}

    def param(self, *path: str) -> jnp.ndarray:
        assert path not in self.read_params, f"{path} read twice"
        self.read_params.add(path)
        return _get(self.params, path)

    def stat(self, *path: str) -> jnp.ndarray:
        self.read_stats.add(path)
        return _get(self.stats, path)

    # --- layers -------------------------------------------------------------------------------

    def conv(self, x, path, kernel, features, stride):
        """A bias-free ``kernel x kernel`` convolution, zero padding kernel // 2 on every side."""
        w = self.param(*path, "kernel")
        assert w.shape == (kernel, kernel, x.shape[-1], features), (path, w.shape)
        pad = kernel // 2
        return lax.conv_general_dilated(
            x, w, (stride, stride), ((pad, pad), (pad, pad)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=lax.Precision.HIGHEST,
        )  # fmt: skip

    def bn(self, x, path):
        scale, shift = self.param(*path, "scale"), self.param(*path, "bias")
        old_mean, old_var = self.stat(*path, "mean"), self.stat(*path, "var")
        if self.train:
            mean = jnp.mean(x, axis=(0, 1, 2))
            var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
            m = self.net.momentum
            self.new_stats[(*path, "mean")] = m * old_mean + (1 - m) * mean
            self.new_stats[(*path, "var")] = m * old_var + (1 - m) * var
        else:
            mean, var = old_mean, old_var
        return (x - mean) / jnp.sqrt(var + self.net.epsilon) * scale + shift

    # --- residual units -----------------------------------------------------------------------

    def weight_layers(self, features, stride):
        """(kernel, channels, stride) of F's weight layers."""
        block = self.net.block
        if block == "basic":
            return [(3, features, stride), (3, features, 1)]
        if block == "one_layer":
            return [(3, features, stride)]
        mid = features // BOTTLENECK_EXPANSION
        s1, s3 = (stride, 1) if self.net.bottleneck_stride == "first_1x1" else (1, stride)
        return [(1, mid, s1), (3, mid, s3), (1, features, 1)]

    def shortcut(self, x, path, kind, features, stride):
        """h(x): identity, option A (subsample, zero channels) or option B (1x1 conv)."""
        if kind == "identity":
            assert x.shape[-1] == features and stride == 1
            return x
        if kind == "zero_pad":
            x = x[:, ::stride, ::stride, :]
            return jnp.concatenate([x, jnp.zeros((*x.shape[:-1], features - x.shape[-1]))], -1)
        h = self.conv(x, (*path, "conv_proj"), 1, features, stride)
        # He et al. 2015 give the projection a BN; in a pre-activation unit it reads a tensor
        # that is already normalized and has none (Appendix).
        return self.bn(h, (*path, "norm_proj")) if self.net.unit in POST_ACTIVATION else h

    def unit(self, x, path, *, features, stride, shortcut, first, first_after_stem):
        layers = self.weight_layers(features, stride)
        last = len(layers)
        relu = lambda v: jnp.maximum(v, 0.0)  # noqa: E731
        conv = lambda v, i: self.conv(v, (*path, f"conv{i}"), *layers[i - 1])  # noqa: E731
        bn = lambda v, name: self.bn(v, (*path, name))  # noqa: E731
        h = lambda v: self.shortcut(v, path, shortcut, features, stride)  # noqa: E731
        unit = self.net.unit

        if unit == "original":  # Fig. 4(a): ReLU(h(x) + BN(W(...ReLU(BN(W x)))))
            f = x
            for i in range(1, last + 1):
                f = bn(conv(f, i), f"norm{i}")
                if i < last:
                    f = relu(f)
            return relu(self.table1(x, path, h, f, features, stride))
        if unit == "bn_after_add":  # Fig. 4(b): ReLU(BN(h(x) + W(...ReLU(BN(W x)))))
            f = x
            for i in range(1, last + 1):
                f = conv(f, i)
                if i < last:
                    f = relu(bn(f, f"norm{i}"))
            return relu(bn(h(x) + f, "norm_add"))
        if unit == "relu_before_add":  # Fig. 4(c): h(x) + ReLU(BN(W(...ReLU(BN(W x)))))
            f = x
            for i in range(1, last + 1):
                f = relu(bn(conv(f, i), f"norm{i}"))
            return h(x) + f

        # Pre-activation (Eq. 9): x + F(f^(x)). The first unit of a stage (and the first after
        # conv1) pre-activates before the split and its shortcut reads the activated tensor
        # (Appendix); after the ImageNet stem's BN-ReLU-max-pool it does not pre-activate again.
        full = unit == "full_preact"
        if first_after_stem and self.net.stem == "imagenet":
            a = x
        else:
            a = relu(bn(x, "norm1")) if full else relu(x)
        s = h(a if first else x)
        f = a
        for i in range(1, last + 1):
            if full:  # Fig. 4(e): (BN-ReLU-W) repeated
                if i > 1:
                    f = relu(bn(f, f"norm{i}"))
                f = conv(f, i)
            else:  # Fig. 4(d): ReLU-W-BN-ReLU-W-BN
                if i > 1:
                    f = relu(f)
                f = bn(conv(f, i), f"norm{i}")
        return s + f

    def table1(self, x, path, h, f, features, stride):
        """y = h'(x) + F' for the shortcuts of Table 1 / Fig. 2 (f is F's output)."""
        net = self.net
        if net.variant == "identity":  # Fig. 2(a)
            return h(x) + f
        if net.variant == "constant_scaling":  # Fig. 2(b)
            return net.shortcut_scale * h(x) + net.residual_scale * f
        if net.variant in ("exclusive_gating", "shortcut_only_gating"):  # Fig. 2(c, d)
            w = self.param(*path, "conv_gate", "kernel")
            b = self.param(*path, "conv_gate", "bias")
            assert w.shape == (1, 1, x.shape[-1], features)
            g = 1.0 / (1.0 + jnp.exp(-(x[:, ::stride, ::stride, :] @ w[0, 0] + b)))
            gated = g * f if net.variant == "exclusive_gating" else f
            return (1.0 - g) * h(x) + gated
        if net.variant == "conv_shortcut":  # Fig. 2(e): a 1x1 conv on every shortcut
            c = self.conv(x, (*path, "conv_shortcut"), 1, features, stride)
            if net.conv_shortcut_norm:
                c = self.bn(c, (*path, "norm_shortcut"))
            return c + f
        if net.variant == "dropout_shortcut":  # Fig. 2(f), test time
            assert not self.train, "the reference has no dropout mask"
            keep = 1.0 if net.dropout_rescale else 1.0 - net.dropout_rate
            return keep * h(x) + f
        raise ValueError(net.variant)

    # --- the network --------------------------------------------------------------------------

    def network(self, x):
        net = self.net
        relu = lambda v: jnp.maximum(v, 0.0)  # noqa: E731
        if net.stem == "imagenet":  # conv1 7x7/2, BN, ReLU, max-pool 3x3/2 for every unit
            x = relu(self.bn(self.conv(x, ("conv1",), 7, net.width, 2), ("norm1",)))
            x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1),
                                  ((0, 0), (1, 1), (1, 1), (0, 0)))  # fmt: skip
        else:
            x = self.conv(x, ("conv1",), 3, net.width, 1)
            # Appendix: full pre-activation leaves conv1 bare, its first unit's BN-ReLU follows;
            # Fig. 4(d) keeps BN after every weight layer, conv1's included, and its first ReLU
            # is the unit's; the post-activation units have conv1-BN-ReLU.
            if net.unit != "full_preact":
                x = self.bn(x, ("norm1",))
            if net.unit in POST_ACTIVATION:
                x = relu(x)

        channels = net.width
        stages = zip(net.units_per_stage, net.stage_features(), strict=True)
        for k, (n, features) in enumerate(stages, 1):
            for j in range(1, n + 1):
                stride = 2 if (j == 1 and k > 1) else 1
                changes = j == 1 and (channels != features or stride != 1)
                x = self.unit(
                    x,
                    (f"stage{k}", f"unit{j:02d}"),
                    features=features,
                    stride=stride,
                    shortcut=net.downsample_shortcut if changes else "identity",
                    first=j == 1,
                    first_after_stem=(j == 1 and k == 1),
                )
                channels = features

        # Appendix: an extra activation after the last addition of a pre-activation net.
        if net.unit == "full_preact":
            x = relu(self.bn(x, ("norm_final",)))
        elif net.unit == "relu_preact":
            x = relu(x)
        pooled = jnp.mean(x, axis=(1, 2))
        return pooled @ self.param("head", "kernel") + self.param("head", "bias")


def forward(net: Net, variables: Mapping[str, Any], x, *, train: bool):
    """(logits, new running averages as a nested dict or None in eval mode, the Reference)."""
    ref = Reference(variables, net, train=train)
    logits = ref.network(jnp.asarray(x, jnp.float32))
    new_stats = _unflatten(ref.new_stats) if train else None
    return logits, new_stats, ref


# --- variables ----------------------------------------------------------------------------------


def random_variables(shapes: Mapping[str, Any], seed: int = 0) -> dict[str, Any]:
    """Random values for every leaf of an (unrolled) variable tree of shapes: He-normal kernels,
    BN scale, shift, mean and variance far from their initial 1, 0, 0, 1 (so no BN can be
    dropped, moved or swapped without changing the function), random gate and head biases."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name, shape = path[-1], leaf.shape
        if name == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        elif name == "scale":
            value = rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape, p=[0.2, 0.8])
        elif name == "var":
            value = rng.uniform(0.3, 3.0, shape)
        elif path[-2] == "conv_gate":  # the gate bias b_g: gates from ~0.1 to ~0.9
            value = rng.uniform(-2.0, 2.0, shape)
        else:  # BN shift and running mean, the head's bias
            value = rng.normal(0.0, 0.5, shape)
        return jnp.asarray(value, leaf.dtype)

    return {
        collection: _unflatten({p: draw(p, leaf) for p, leaf in _flatten(tree).items()})
        for collection, tree in shapes.items()
    }


def stack_units(tree: Mapping[str, Any]) -> dict[str, Any]:
    """Unrolled (``stageK/unit02..unitNN``) -> scanned (``stageK/units/unit``, leading axis)."""
    out = {}
    for key, value in tree.items():
        if not isinstance(value, Mapping):
            out[key] = value
            continue
        repeated = sorted(k for k in value if k.startswith("unit") and k != "unit01")
        if key.startswith("stage") and repeated:
            value = {k: v for k, v in value.items() if k not in repeated}
            flats = [_flatten(tree[key][k]) for k in repeated]
            stacked = {p: jnp.stack([f[p] for f in flats]) for p in flats[0]}
            out[key] = {**value, "units": {"unit": _unflatten(stacked)}}
        else:
            out[key] = stack_units(value)
    return out


def unstack_units(tree: Mapping[str, Any]) -> dict[str, Any]:
    """Scanned -> unrolled: the inverse of :func:`stack_units`."""
    out = {}
    for key, value in tree.items():
        if not isinstance(value, Mapping):
            out[key] = value
        elif key.startswith("stage") and "units" in value:
            flat = _flatten(value["units"]["unit"])
            count = next(iter(flat.values())).shape[0]
            out[key] = {k: v for k, v in value.items() if k != "units"}
            for i in range(count):
                out[key][f"unit{i + 2:02d}"] = _unflatten({p: v[i] for p, v in flat.items()})
        else:
            out[key] = unstack_units(value)
    return out


def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def _flatten(tree, prefix=()):
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, (*prefix, key)))
        else:
            flat[(*prefix, key)] = value
    return flat


def _unflatten(flat):
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def flatten(tree: Mapping[str, Any]) -> dict[tuple[str, ...], Any]:
    """{path: leaf} of a nested mapping (public, for the tests)."""
    return _flatten(tree)
