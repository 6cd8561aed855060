"""The ablation experiments of Tables 1-3: which networks run, at which reduced scale, and the
paper's numbers beside which they are reported (see :mod:`preact.analysis.ablations`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from preact import cli

FAIL_ERROR = 65.0  # percent test error; see preact.analysis.ablations
BASE_CONFIG = "configs/fashion_mnist.py"  # what every run starts from


@dataclasses.dataclass(frozen=True)
class Scale:
    """How small the runs are."""

    steps: int = 400
    seeds: int = 1
    basic_depth: int = 110  # 6n+2: ResNet-110
    bottleneck_depth: int = 164  # 9n+2: ResNet-164
    deep_depth: int = 299  # 9n+2, stands in for ResNet-1001
    one_layer_depth: int = 110  # 3n+2: ResNet-110 (1layer skip)
    basic_width: int = 8  # basic and one-layer nets
    bottleneck_width: int = 4
    batch_size: int = 64
    # Iterations at the warm-up learning rate 0.01; 0: the first 1/15 of the run. The paper warms
    # up 400 iterations (one CIFAR epoch) for the original unit's early instability on deep
    # nets; a longer warm-up here measures how much of a failure that instability explains.
    warmup_steps: int = 0

    def warmup(self) -> int:
        return self.warmup_steps or self.steps // 15

    def tag(self) -> str:
        """Names the workdirs and run records, so runs of different scales are never mixed or
        resumed (the default warm-up adds nothing: the names of earlier runs stay valid)."""
        return (
            f"s{self.steps}_b{self.batch_size}_basic{self.basic_depth}w{self.basic_width}"
            f"_bott{self.bottleneck_depth}-{self.deep_depth}w{self.bottleneck_width}"
            f"_one{self.one_layer_depth}" + (f"_wu{self.warmup_steps}" if self.warmup_steps else "")
        )

    def network(self, kind: str) -> tuple[str, int, int]:
        """(block, depth, width) of a network kind: basic, bottleneck, deep or one_layer."""
        return {
            "basic": ("basic", self.basic_depth, self.basic_width),
            "bottleneck": ("bottleneck", self.bottleneck_depth, self.bottleneck_width),
            "deep": ("bottleneck", self.deep_depth, self.bottleneck_width),
            "one_layer": ("one_layer", self.one_layer_depth, self.basic_width),
        }[kind]


@dataclasses.dataclass(frozen=True)
class Variant:
    """One network to train: a unit and shortcut on a network kind."""

    key: str
    label: str
    network: str  # basic | bottleneck | deep | one_layer
    unit: str = "full_preact"
    options: tuple[tuple[str, Any], ...] = ()  # config.model.unit_options

    def config(
        self, scale: Scale, seed: int, base_config: str = BASE_CONFIG
    ) -> ml_collections.ConfigDict:
        """``base_config`` (a config and its ``--config.FIELD=VALUE`` overrides in one string,
        :func:`preact.cli.config_from_spec`) with this variant's network and the reduced
        schedule of ``scale``."""
        c = cli.config_from_spec(base_config)
        c.experiment = self.key
        block, depth, width = scale.network(self.network)
        c.model.block, c.model.depth, c.model.width = block, depth, width
        c.rng_impl = "rbg"
        c.model.unit = self.unit
        c.model.unit_options = dict(self.options)
        c.seed = seed
        c.batch_size = scale.batch_size
        c.num_train_steps = scale.steps
        c.warmup_steps = scale.warmup()
        c.warmup_learning_rate = 0.01
        c.lr_boundaries_steps = (scale.steps // 2, 3 * scale.steps // 4)
        c.log_every_steps = min(10, scale.steps)
        c.eval_every_steps = scale.steps  # once, at the end: 10,000 test images cost ~15 s
        c.checkpoint_every_steps = scale.steps  # one checkpoint, at the end
        c.keep_checkpoints = 1
        c.progress_bar = False
        c.on_divergence = "stop"
        return c


def _original(key: str, label: str, network: str = "basic", **options: Any) -> Variant:
    return Variant(key, label, network, "original", tuple(options.items()))


def _unit(unit: str, label: str, network: str) -> Variant:
    return Variant(f"{unit}_{network}", label, network, unit)


VARIANTS: dict[str, Variant] = {
    v.key: v
    for v in [
        # Table 1 (Fig. 2): shortcuts of the original unit on the basic net.
        _original("original_basic", "original"),
        _original(
            "scaling_0_1",
            "constant scaling 0 / 1 (plain net)",
            shortcut_variant="constant_scaling",
            shortcut_scale=0.0,
        ),
        _original(
            "scaling_0.5_1",
            "constant scaling 0.5 / 1",
            shortcut_variant="constant_scaling",
            shortcut_scale=0.5,
        ),
        _original(
            "scaling_0.5_0.5",
            "constant scaling 0.5 / 0.5",
            shortcut_variant="constant_scaling",
            shortcut_scale=0.5,
            residual_scale=0.5,
        ),
        _original(
            "exclusive_gating_0",
            "exclusive gating, b_g=0",
            shortcut_variant="exclusive_gating",
            gate_bias=0.0,
        ),
        _original(
            "exclusive_gating_-6",
            "exclusive gating, b_g=-6",
            shortcut_variant="exclusive_gating",
            gate_bias=-6.0,
        ),
        _original(
            "shortcut_gating_0",
            "shortcut-only gating, b_g=0",
            shortcut_variant="shortcut_only_gating",
            gate_bias=0.0,
        ),
        _original(
            "shortcut_gating_-6",
            "shortcut-only gating, b_g=-6",
            shortcut_variant="shortcut_only_gating",
            gate_bias=-6.0,
        ),
        _original("conv_shortcut", "1x1 conv shortcut", shortcut_variant="conv_shortcut"),
        _original(
            "dropout_shortcut", "dropout shortcut (0.5)", shortcut_variant="dropout_shortcut"
        ),
        # Table 2 (Fig. 4): activation orders, basic and bottleneck.
        _unit("bn_after_add", "BN after addition", "basic"),
        _unit("relu_before_add", "ReLU before addition", "basic"),
        _unit("relu_preact", "ReLU-only pre-activation", "basic"),
        _unit("full_preact", "full pre-activation", "basic"),
        _original("original_bottleneck", "original", "bottleneck"),
        _unit("bn_after_add", "BN after addition", "bottleneck"),
        _unit("relu_before_add", "ReLU before addition", "bottleneck"),
        _unit("relu_preact", "ReLU-only pre-activation", "bottleneck"),
        _unit("full_preact", "full pre-activation", "bottleneck"),
        # Table 3: original vs pre-activation on the other two networks.
        _original("original_one_layer", "original", "one_layer"),
        _unit("full_preact", "full pre-activation", "one_layer"),
        _original("original_deep", "original", "deep"),
        _unit("full_preact", "full pre-activation", "deep"),
    ]
}

# The paper's CIFAR-10 test errors (%), median of 5 runs (docs/reproduction.md#the-papers-tables);
# None = "fail" (>20%).
TABLE1 = (  # (variant, on shortcut, on F, paper error)
    ("original_basic", "1", "1", 6.61),
    ("scaling_0_1", "0", "1", None),
    ("scaling_0.5_1", "0.5", "1", None),
    ("scaling_0.5_0.5", "0.5", "0.5", 12.35),
    ("exclusive_gating_0", "1-g(x)", "g(x)", None),
    ("exclusive_gating_-6", "1-g(x)", "g(x)", 8.70),
    ("shortcut_gating_0", "1-g(x)", "1", 12.86),
    ("shortcut_gating_-6", "1-g(x)", "1", 6.91),
    ("conv_shortcut", "1x1 conv", "1", 12.22),
    ("dropout_shortcut", "dropout 0.5", "1", None),
)
TABLE2 = (  # (unit, label, paper ResNet-110, paper ResNet-164)
    ("original", "original Residual Unit", 6.61, 5.93),
    ("bn_after_add", "BN after addition", 8.17, 6.50),
    ("relu_before_add", "ReLU before addition", 7.84, 6.14),
    ("relu_preact", "ReLU-only pre-activation", 6.71, 5.91),
    ("full_preact", "full pre-activation", 6.37, 5.46),
)
TABLE3 = (  # (network kind, paper network, paper baseline, paper pre-activation)
    ("one_layer", "ResNet-110 (1layer skip)", 9.90, 8.91),
    ("basic", "ResNet-110", 6.61, 6.37),
    ("bottleneck", "ResNet-164", 5.93, 5.46),
    ("deep", "ResNet-1001", 7.61, 4.92),
)
TABLES = (1, 2, 3)


def unit_key(unit: str, network: str) -> str:
    return f"original_{network}" if unit == "original" else f"{unit}_{network}"


def table_variants(table: int) -> list[str]:
    """The variant keys a table needs, in row order."""
    if table == 1:
        return [row[0] for row in TABLE1]
    if table == 2:
        return [unit_key(u, n) for n in ("basic", "bottleneck") for u, *_ in TABLE2]
    if table == 3:
        return [unit_key(u, n) for n, *_ in TABLE3 for u in ("original", "full_preact")]
    raise ValueError(f"unknown table {table}; valid: {TABLES}")
