"""The PyTorch peer: the same pre-activation CIFAR ResNets as ``preact.networks``, for timing.

Same graph as ``cifar_resnet(depth, block=...)`` with the full pre-activation unit (the Appendix;
docs/reproduction.md#the-first-and-last-unit): conv1 3x3/16 without BN; three stages; the first unit
of each stage shares its BN-ReLU with the shortcut, which reads the pre-activated tensor; option-A
shortcuts (subsample ``x[..., ::2, ::2]``, zero-pad the new channels) in basic nets, a 1x1
projection without BN in bottleneck nets; the stride on the first 1x1 conv of a bottleneck unit;
nothing after the addition; final BN-ReLU, global average pooling and FC, the head in float32 as in
the Flax net. Conv weights He-normal fan-out, no conv biases, symmetric padding k//2; BN gamma 1,
beta 0, momentum 0.1 (Flax's 0.9) and epsilon 1e-5; FC weight uniform(+-1/sqrt(fan_in)), bias 0.

Module names mirror the Flax parameter tree (``stages[0][0].convs[0]`` is ``stage1/unit01/conv1``)
so :func:`load_flax_variables` can copy a Flax net's weights for the equivalence test.
One difference remains that no benchmark sees: Torch updates ``running_var`` with the unbiased
batch variance, Flax with the biased one (a factor n/(n-1), n = images x pixels >= 256).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

BN_MOMENTUM = 0.1  # Torch's convention: the weight of the new batch; Flax's momentum 0.9
BN_EPSILON = 1e-5
BOTTLENECK_EXPANSION = 4
# The paper's SGD (Appendix; preact/optim.py, configs/default.py): coupled L2 weight decay on
# every parameter, which is what torch.optim.SGD's weight_decay does.
LEARNING_RATE = 0.1
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4


def units_per_stage(depth: int, block: str) -> int:
    """n of a CIFAR net: depth = 6n+2 (basic) or 9n+2 (bottleneck)."""
    step = {"basic": 6, "bottleneck": 9}.get(block)
    if step is None:
        raise ValueError(f"unknown block {block!r}; valid: ('basic', 'bottleneck')")
    if depth < step + 2 or (depth - 2) % step:
        raise ValueError(f"depth {depth} is not {step}n+2 for {block} units")
    return (depth - 2) // step


def _conv(cin: int, cout: int, kernel: int, stride: int) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def _norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPSILON, momentum=BN_MOMENTUM)


class PreActUnit(nn.Module):
    """x_{l+1} = h(x_l) + F(x_l), F = (BN-ReLU-conv) repeated; nothing after the addition.

    ``first``: the first unit of a stage, whose BN-ReLU comes before the split so the shortcut
    reads the pre-activated tensor (Appendix). ``shortcut``: identity, zero_pad (option A) or
    projection (1x1 conv, no BN).
    """

    def __init__(self, block: str, cin: int, cout: int, stride: int, first: bool):
        super().__init__()
        if block == "basic":
            layers = [(3, cout, stride), (3, cout, 1)]
        else:  # bottleneck; the stride on the first 1x1 conv, as resnet-1k-layers
            mid = cout // BOTTLENECK_EXPANSION
            layers = [(1, mid, stride), (3, mid, 1), (1, cout, 1)]
        channels = [cin] + [features for _, features, _ in layers[:-1]]
        self.norms = nn.ModuleList(_norm(c) for c in channels)
        self.convs = nn.ModuleList(
            _conv(c, features, k, s) for c, (k, features, s) in zip(channels, layers, strict=True)
        )
        self.first = first
        self.stride = stride
        self.cout = cout
        changes = first and (cin != cout or stride != 1)
        if not changes:
            self.shortcut = "identity"
        elif block == "basic":
            self.shortcut = "zero_pad"
        else:
            self.shortcut = "projection"
            self.conv_proj = _conv(cin, cout, 1, stride)

    def _h(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut == "identity":
            return x
        if self.shortcut == "projection":
            return self.conv_proj(x)
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.cout - x.shape[1]))  # new channels at the end

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preact = F.relu(self.norms[0](x))
        h = self._h(preact if self.first else x)
        residual = self.convs[0](preact)
        for norm, conv in zip(self.norms[1:], self.convs[1:], strict=True):
            residual = conv(F.relu(norm(residual)))
        return h + residual


class PreActResNet(nn.Module):
    """A CIFAR pre-activation ResNet of ``depth`` layers (see the module docstring)."""

    def __init__(
        self, depth: int, block: str, num_classes: int = 10, width: int = 16, in_channels: int = 3
    ):
        super().__init__()
        n = units_per_stage(depth, block)
        expansion = BOTTLENECK_EXPANSION if block == "bottleneck" else 1
        widths = [width * m * expansion for m in (1, 2, 4)]
        self.depth, self.block = depth, block
        self.conv1 = _conv(in_channels, width, 3, 1)
        stages, cin = [], width
        for index, cout in enumerate(widths):
            stride = 1 if index == 0 else 2
            units = [PreActUnit(block, cin, cout, stride, first=True)]
            units += [PreActUnit(block, cout, cout, 1, first=False) for _ in range(n - 1)]
            stages.append(nn.ModuleList(units))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.norm_final = _norm(cin)
        self.head = nn.Linear(cin, num_classes)
        bound = 1.0 / np.sqrt(cin)  # Torch's nn.Linear default, kept by the authors' code
        nn.init.uniform_(self.head.weight, -bound, bound)
        nn.init.zeros_(self.head.bias)

    def units(self) -> list[PreActUnit]:
        return [unit for stage in self.stages for unit in stage]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for unit in self.units():
            x = unit(x)
        x = F.relu(self.norm_final(x))
        # Pool and classify in float32, as the Flax net does, also under bf16 autocast.
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.head(x.float().mean(dim=(2, 3)))


def count_params(model: nn.Module) -> int:
    """Trainable parameters (BN gamma and beta included, running statistics not): the Flax
    ``count_params`` of ``params``."""
    return sum(p.numel() for p in model.parameters())


def make_optimizer(model: nn.Module, *, fused: bool | None = None) -> torch.optim.Optimizer:
    """SGD, momentum 0.9 (not Nesterov), coupled weight decay 1e-4 on every parameter, lr 0.1.

    ``fused`` picks PyTorch's single-kernel CUDA implementation (None: PyTorch's default).
    """
    return torch.optim.SGD(
        model.parameters(),
        lr=LEARNING_RATE,
        momentum=MOMENTUM,
        weight_decay=WEIGHT_DECAY,
        nesterov=False,
        fused=fused,
    )


def _unstack(stage: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The units of a Flax stage in order, scanned (``units/unit`` stacked on axis 0) or not."""
    units = [stage["unit01"]]
    if "units" in stage:
        stacked = stage["units"]["unit"]
        length = len(next(iter(_leaves(stacked))))
        units += [_index(stacked, i) for i in range(length)]
    else:
        names = sorted((k for k in stage if k != "unit01"), key=lambda k: int(k[len("unit") :]))
        units += [stage[k] for k in names]
    return units


def _leaves(tree: Any) -> list[Any]:
    if isinstance(tree, Mapping):
        return [leaf for v in tree.values() for leaf in _leaves(v)]
    return [tree]


def _index(tree: Any, i: int) -> Any:
    if isinstance(tree, Mapping):
        return {k: _index(v, i) for k, v in tree.items()}
    return tree[i]


@torch.no_grad()
def load_flax_variables(model: PreActResNet, variables: Mapping[str, Any]) -> None:
    """Copy a Flax net's ``params`` and ``batch_stats`` into ``model`` (same depth and block).

    Conv kernels go from HWIO to OIHW, the FC kernel from [in, out] to [out, in].
    """
    params, stats = variables["params"], variables["batch_stats"]

    def put(target: torch.Tensor, value: Any, conv: bool = False) -> None:
        array = np.array(value, np.float32)  # a writable copy, which torch.from_numpy wants
        if conv:
            array = array.transpose(3, 2, 0, 1)
        if tuple(array.shape) != tuple(target.shape):
            raise ValueError(f"shape {array.shape} does not fit {tuple(target.shape)}")
        target.copy_(torch.from_numpy(np.ascontiguousarray(array)))

    def put_norm(norm: nn.BatchNorm2d, p: Mapping[str, Any], s: Mapping[str, Any]) -> None:
        put(norm.weight, p["scale"])
        put(norm.bias, p["bias"])
        put(norm.running_mean, s["mean"])
        put(norm.running_var, s["var"])

    put(model.conv1.weight, params["conv1"]["kernel"], conv=True)
    for k, stage in enumerate(model.stages, start=1):
        name = f"stage{k}"
        for unit, p, s in zip(stage, _unstack(params[name]), _unstack(stats[name]), strict=True):
            for i, (norm, conv) in enumerate(zip(unit.norms, unit.convs, strict=True), start=1):
                put_norm(norm, p[f"norm{i}"], s[f"norm{i}"])
                put(conv.weight, p[f"conv{i}"]["kernel"], conv=True)
            if unit.shortcut == "projection":
                put(unit.conv_proj.weight, p["conv_proj"]["kernel"], conv=True)
    put_norm(model.norm_final, params["norm_final"], stats["norm_final"])
    put(model.head.weight, np.asarray(params["head"]["kernel"]).T)
    put(model.head.bias, params["head"]["bias"])
