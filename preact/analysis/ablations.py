r"""The ablations of Tables 1-3, re-run at a reduced scale on real offline data (Fashion-MNIST).

    nice python -m preact.analysis.ablations --table=1 --out=docs/   # 44 min on 2 CPU cores
    python -m preact.analysis.ablations --base_config=configs/smoke.py --steps=100 --out=/tmp/a

The paper's tables are CIFAR-10 ResNet-110/164/1001, median of 5 runs of 64k iterations: days of
GPU time. Here every variant of each table is trained on Fashion-MNIST (60,000 training and
10,000 test images of 28x28 pixels, :mod:`preact.data.mnist`, offline from Debian's
``dataset-fashion-mnist``) by :func:`preact.training.train_and_evaluate` (one workdir per run,
so the curves of the paper's Fig. 3 and Fig. 6 come out of the same runs). Every run starts from
``--base_config`` (default ``configs/fashion_mnist.py``: per-pixel mean subtraction, 4-pixel
pad-and-crop, flips; ``configs/smoke.py``, scikit-learn's digits, makes a quick smoke run) and
sets the network and schedule below on it. What is reduced, and what is kept:

* networks: the paper's depths and unit counts where 2 CPU cores allow them: basic-110 (54
  units, as ResNet-110; Table 1's failures are driven by depth, through lambda^L),
  bottleneck-164 (54 units, ResNet-164) and one-layer-110 (the 1-layer ResNet-110);
  bottleneck-299 (99 units) stands in for ResNet-1001 (333). Narrower than the paper's: basic
  and one-layer nets at width 8 (8-16-32 channels, half of CIFAR's), bottleneck nets at width 4
  (16-32-64 channels at the stage ends, a quarter).
* recipe: the paper's SGD (momentum 0.9, weight decay 1e-4, lr 0.1 with a warm-up at 0.01,
  /10 at 50% and 75% of training) at batch 64 for 400 steps: 25,600 images, 0.43 epoch. That
  is an early stage of training, where the optimization differences the paper shows (Fig. 1,
  3, 6) are plain, not its converged numbers. The paper warms up for 400 iterations (one CIFAR
  epoch); a run this short has no epoch to spare and warms up for its first 1/15. The test
  error is measured once, at the end, on all 10,000 test images (one image = 0.01%).
* seeds: one per variant by default (``--seeds``): 2 CPU cores afford 54-unit nets or seeds,
  not both. The noise level comes from extra seeds of a few variants (docs/ablations.md).
* "fail", as in Table 1: a run that diverged (``on_divergence='stop'`` records it) or ends above
  :data:`FAIL_ERROR` percent test error. The paper's fail is above 20% on CIFAR-10, three
  times its 6.6% baseline, for runs that could not be optimized. Our baseline ended a pilot
  run of 300 steps at 37.8% and chance is 90%; a run above 65% has not got halfway from chance
  to the baseline. Set before the tables were run; ``--fail_error`` changes it.
* reporting: the median over seeds of the final test error and final training loss (a failed run
  counts as infinitely bad, so the median is "fail" when most seeds fail).

The runs draw their random numbers with JAX's "rbg" generator (``config.rng_impl``), whose
XLA:CPU compilation takes a fraction of the default threefry's (same distributions; a different
stream); it does not change what is computed.

Outputs in ``--out``: ``ablation_table{N}.md`` (the table beside the paper's CIFAR numbers),
``ablation_table{N}.png`` (curves of the median-seed runs, drawn as the paper's figures) and
``ablation_table{N}.json`` (every run's numbers).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import shlex
import time
from collections.abc import Sequence
from typing import Any

import ml_collections
from absl import app, flags

FAIL_ERROR = 65.0  # percent test error; see the module docstring
BASE_CONFIG = "configs/fashion_mnist.py"  # what every run starts from
COMMAND = "python -m preact.analysis.ablations"
RUN_RECORD = "ablation_run.json"  # in each run's workdir: how long it trained


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

    def tag(self) -> str:
        """Names the workdirs, so runs of different scales are never mixed or resumed."""
        return (
            f"s{self.steps}_b{self.batch_size}_basic{self.basic_depth}w{self.basic_width}"
            f"_bott{self.bottleneck_depth}-{self.deep_depth}w{self.bottleneck_width}"
            f"_one{self.one_layer_depth}"
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
        """``base_config`` (a config file, ``PATH[:ARG][@field=value...]``) with this variant's
        network and the reduced schedule of ``scale``."""
        from preact.analysis.propagation import load_config

        c, _ = load_config(base_config)
        c.experiment = self.key
        block, depth, width = scale.network(self.network)
        c.model.block, c.model.depth, c.model.width = block, depth, width
        c.rng_impl = "rbg"
        c.model.unit = self.unit
        c.model.unit_options = dict(self.options)
        c.seed = seed
        c.batch_size = scale.batch_size
        c.num_train_steps = scale.steps
        c.warmup_steps = scale.steps // 15
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


def _unit_key(unit: str, network: str) -> str:
    return f"original_{network}" if unit == "original" else f"{unit}_{network}"


def table_variants(table: int) -> list[str]:
    """The variant keys a table needs, in row order."""
    if table == 1:
        return [row[0] for row in TABLE1]
    if table == 2:
        return [_unit_key(u, n) for n in ("basic", "bottleneck") for u, *_ in TABLE2]
    if table == 3:
        return [_unit_key(u, n) for n, *_ in TABLE3 for u in ("original", "full_preact")]
    raise ValueError(f"unknown table {table}; valid: {TABLES}")


# ---------------------------------------------------------------------------------------------
# Running.


@dataclasses.dataclass
class Result:
    """One run's end point."""

    variant: str
    seed: int
    workdir: str
    test_error: float  # final, percent; inf if diverged or never evaluated
    train_loss: float  # last logged; inf if diverged
    diverged_step: int | None
    seconds: float | None  # wall time of training (None: not recorded)
    finished: str = ""  # when its metrics file was last written
    trained: bool = False  # by this invocation (False: found finished and reused)

    def failed(self, fail_error: float) -> bool:
        return self.diverged_step is not None or not self.test_error <= fail_error


def _finished(workdir: str, steps: int) -> bool:
    from preact import metrics as metrics_lib

    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return False
    records = metrics_lib.read_metrics(path)
    return any(r.get("diverged") for r in records) or any(
        r["step"] == steps and "test_error" in r for r in records
    )


def _result(variant: str, seed: int, workdir: str) -> Result:
    from preact.analysis import curves

    run = curves.load_run(workdir)
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    finished = datetime.datetime.fromtimestamp(os.path.getmtime(metrics_path)).astimezone()
    try:
        with open(os.path.join(workdir, RUN_RECORD)) as f:
            seconds = json.load(f)["seconds"]
    except (OSError, ValueError, KeyError):
        seconds = None  # a run trained before the record existed
    diverged = run.diverged_step is not None
    error = run.final_test_error
    loss = run.final_train_loss
    return Result(
        variant=variant,
        seed=seed,
        workdir=workdir,
        test_error=math.inf if diverged or math.isnan(error) else error,
        train_loss=math.inf if diverged or math.isnan(loss) else loss,
        diverged_step=run.diverged_step,
        seconds=seconds,
        finished=finished.strftime("%Y-%m-%d %H:%M %Z"),
    )


def run_variants(
    keys: Sequence[str],
    scale: Scale,
    root: str,
    *,
    base_config: str = BASE_CONFIG,
    log=print,
) -> dict[str, list[Result]]:
    """Train every variant for every seed (skipping runs already finished in ``root``).

    Runs of another ``base_config`` than the default go to their own directories: a finished run
    is reused only for the same base config and scale."""

    from preact import training

    results: dict[str, list[Result]] = {key: [] for key in keys}
    # Seed-major: an interrupted invocation leaves every variant with the same number of seeds
    # (and the next invocation reuses what is finished).
    for seed in range(scale.seeds):
        for key in keys:
            variant = VARIANTS[key]
            workdir = os.path.join(root, _run_dir(scale, base_config), key, f"seed{seed}")
            trained = False
            if not _finished(workdir, scale.steps):
                start = time.perf_counter()
                training.train_and_evaluate(variant.config(scale, seed, base_config), workdir)
                with open(os.path.join(workdir, RUN_RECORD), "w") as f:
                    json.dump({"seconds": time.perf_counter() - start}, f)
                trained = True
            result = dataclasses.replace(_result(key, seed, workdir), trained=trained)
            results[key].append(result)
            took = f"{result.seconds:.0f}s" if trained else "reused"
            log(
                f"{key} seed {seed}: test error {result.test_error:.2f}%, train loss "
                f"{result.train_loss:.4f}{' DIVERGED' if result.diverged_step else ''} ({took})"
            )
    return results


# ---------------------------------------------------------------------------------------------
# Tables and figures.


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return math.nan
    mid = n // 2
    if n % 2:
        return ordered[mid]
    if math.isinf(ordered[mid]):
        return math.inf
    return 0.5 * (ordered[mid - 1] + ordered[mid])


def over_seeds(results: Sequence[Result], fail_error: float) -> dict[str, Any]:
    """One table cell's numbers: medians over the seeds' runs of a variant, and the failures."""
    errors = [r.test_error for r in results]
    losses = [r.train_loss for r in results]
    failed = sum(r.failed(fail_error) for r in results)
    diverged = sum(r.diverged_step is not None for r in results)
    med_error = median(errors)
    return {
        "median_test_error": med_error,
        "median_train_loss": median(losses),
        "fail": not med_error <= fail_error,
        "failed_seeds": failed,
        "diverged_seeds": diverged,
        "seeds": len(results),
        "test_errors": errors,
        "train_losses": losses,
    }


def _cell(summary: dict[str, Any] | None) -> str:
    """``2.78 (0.061; 2.22-3.33)``: median test error % (median final training loss; the seeds'
    lowest-highest error), or ``fail``."""
    if summary is None:
        return "not run"
    note = ""
    if summary["failed_seeds"]:
        note = f" [{summary['failed_seeds']}/{summary['seeds']} seeds fail"
        note += f", {summary['diverged_seeds']} diverged]" if summary["diverged_seeds"] else "]"
    if summary["fail"]:
        loss = summary["median_train_loss"]
        shown = (
            f"{summary['median_test_error']:.1f}%"
            if math.isfinite(summary["median_test_error"])
            else "diverged"
        )
        return f"**fail** ({shown}, loss {loss:.3g}){note}"
    errors = summary["test_errors"]
    spread = f"; {min(errors):.2f}-{max(errors):.2f}" if len(errors) > 1 else ""
    return f"{summary['median_test_error']:.2f} ({summary['median_train_loss']:.3f}{spread}){note}"


def _paper(value: float | None) -> str:
    return "fail" if value is None else f"{value:.2f}"


def table_markdown(
    table: int,
    summaries: dict[str, dict[str, Any]],
    scale: Scale,
    fail_error: float,
    data: str = "fashion_mnist",
) -> str:
    """The table in markdown; ``data`` names the dataset the runs trained on."""
    from preact.data import datasets

    title = datasets.get(data).title
    nets = {k: scale.network(k) for k in ("basic", "bottleneck", "deep", "one_layer")}

    def name(kind: str) -> str:
        block, depth, width = nets[kind]
        return f"{block}-{depth} (width {width})"

    lines = []
    if table == 1:
        lines += [
            f"Table 1 (shortcuts on the original unit), ours: {name('basic')}; paper: "
            "ResNet-110 on CIFAR-10.",
            "",
            f"| case | on shortcut | on F | paper: CIFAR-10 error (%) | ours: {title} error % "
            "(train loss) |",
            "|---|---|---|---|---|",
        ]
        for key, on_shortcut, on_f, paper in TABLE1:
            case = VARIANTS[key].label
            lines.append(
                f"| {case} | {on_shortcut} | {on_f} | {_paper(paper)} | "
                f"{_cell(summaries.get(key))} |"
            )
    elif table == 2:
        lines += [
            f"Table 2 (activation orders), ours: {name('basic')} and {name('bottleneck')}; "
            "paper: ResNet-110 and ResNet-164 on CIFAR-10.",
            "",
            f"| case | paper: ResNet-110 | paper: ResNet-164 | ours: {name('basic')} | "
            f"ours: {name('bottleneck')} |",
            "|---|---|---|---|---|",
        ]
        for unit, label, p110, p164 in TABLE2:
            basic = summaries.get(_unit_key(unit, "basic"))
            bott = summaries.get(_unit_key(unit, "bottleneck"))
            lines.append(
                f"| {label} | {_paper(p110)} | {_paper(p164)} | {_cell(basic)} | {_cell(bott)} |"
            )
    elif table == 3:
        lines += [
            "Table 3 (original vs pre-activation units); paper: CIFAR-10.",
            "",
            "| paper network | paper: original | paper: pre-act | ours: network | "
            "ours: original | ours: pre-act |",
            "|---|---|---|---|---|---|",
        ]
        for kind, paper_net, p_orig, p_pre in TABLE3:
            orig = summaries.get(_unit_key("original", kind))
            pre = summaries.get(_unit_key("full_preact", kind))
            lines.append(
                f"| {paper_net} | {_paper(p_orig)} | {_paper(p_pre)} | {name(kind)} | "
                f"{_cell(orig)} | {_cell(pre)} |"
            )
        lines.append(
            "| CIFAR-100 rows (ResNet-164, ResNet-1001) | 25.16, 27.82 | 24.33, 22.71 | "
            f"not run: {title} has 10 classes | | |"
        )
    else:
        raise ValueError(f"unknown table {table}; valid: {TABLES}")
    lines += [
        "",
        f"Ours: median over {scale.seeds} seed(s) of the final test error in % (and of the final "
        f"training loss) on {describe_data(data)}, "
        f"{scale.steps} iterations of batch {scale.batch_size}. **fail**: the median run diverged "
        f"or ended above {fail_error:g}% test error (the paper's fail is >20% on CIFAR-10). "
        "Reduced scale: these are not the paper's networks or data.",
    ]
    return "\n".join(lines) + "\n"


def describe_data(name: str) -> str:
    """A dataset in a table's footnote: its name, sizes and image shape."""
    from preact.data import datasets

    info = datasets.get(name)
    sizes = " / ".join(f"{n:,} {split}" for split, n in info.splits.items())
    height, width, _ = info.image_shape
    return f"{info.title} ({sizes} images of {height}x{width})"


def median_run(results: Sequence[Result]) -> Result:
    """The seed whose final test error is the median (the lower middle one for even counts)."""
    ordered = sorted(results, key=lambda r: (r.test_error, r.seed))
    return ordered[(len(ordered) - 1) // 2]


def table_figure(
    table: int,
    results: dict[str, list[Result]],
    scale: Scale,
    out: str,
    data: str = "fashion_mnist",
) -> str | None:
    """The paper's figure for a table, from each variant's median-seed run."""
    from preact.analysis import curves
    from preact.data import datasets

    data = datasets.get(data).title

    def run(key: str, label: str | None = None) -> curves.Run | None:
        if key not in results:
            return None
        return curves.load_run(median_run(results[key]).workdir, name=label or VARIANTS[key].label)

    panels: list[tuple[str, list[curves.Run]]] = []
    if table == 1:  # Fig. 3: the original against one variant per panel
        base = run("original_basic")
        for key, *_ in TABLE1[1:]:
            variant = run(key)
            if base and variant:
                panels.append((VARIANTS[key].label, [base, variant]))
        block, depth, width = scale.network("basic")
        title = f"Table 1 variants vs original, {block}-{depth} width {width}, {data}"
    elif table == 2:  # Fig. 6 left: every activation order on each network
        for kind in ("basic", "bottleneck"):
            runs = [run(_unit_key(u, kind)) for u, *_ in TABLE2]
            runs = [r for r in runs if r]
            if runs:
                block, depth, width = scale.network(kind)
                panels.append((f"{block}-{depth}, width {width}", runs))
        title = f"Table 2 activation orders, {data}"
    else:  # Fig. 1 and Fig. 6 right: original vs pre-activation
        for kind, paper_net, *_ in TABLE3:
            runs = [
                run(_unit_key("original", kind), "original"),
                run(_unit_key("full_preact", kind), "full pre-activation"),
            ]
            runs = [r for r in runs if r]
            if runs:
                block, depth, width = scale.network(kind)
                panels.append((f"{block}-{depth}, width {width} (for {paper_net})", runs))
        title = f"Table 3 original vs pre-activation, {data}"
    if not panels:
        return None
    curves.plot_panels(panels, title=f"{title}; median-seed runs", out=out, ncols=3)
    return out


def write_outputs(
    tables: Sequence[int],
    results: dict[str, list[Result]],
    scale: Scale,
    out_dir: str,
    *,
    fail_error: float,
    command: str,
    data: str = "fashion_mnist",
) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    summaries = {k: over_seeds(v, fail_error) for k, v in results.items()}
    written = []
    for table in tables:
        keys = [k for k in table_variants(table) if k in results]
        if not keys:
            continue
        stem = os.path.join(out_dir, f"ablation_table{table}")
        figure = table_figure(table, results, scale, stem + ".png", data)
        runs = [r for k in keys for r in results[k]]
        dates = sorted(r.finished for r in runs)
        timed = [r.seconds for r in runs if r.seconds is not None]
        took = f"{sum(timed) / 60:.1f} min of training" + (
            f" ({len(timed)} of {len(runs)} runs timed)" if len(timed) < len(runs) else ""
        )
        header = (
            f"<!-- written by preact/analysis/ablations.py; do not edit by hand -->\n"
            f"Command: `{command}`  \nRuns finished {dates[0]} to {dates[-1]}; {took} for "
            f"this table's {len(runs)} runs.\n\n"
        )
        body = table_markdown(table, summaries, scale, fail_error, data)
        if figure:
            body += f"\n![curves]({os.path.basename(figure)})\n"
        with open(stem + ".md", "w") as f:
            f.write(header + body)
        from preact import provenance

        record = {
            "table": table,
            "runs_finished": [dates[0], dates[-1]],
            "command": command,
            "environment": provenance.environment(),  # each run's config.json has its own
            "scale": dataclasses.asdict(scale),
            "fail_error": fail_error,
            "variants": {
                k: {**summaries[k], "runs": [dataclasses.asdict(r) for r in results[k]]}
                for k in keys
            },
        }
        with open(stem + ".json", "w") as f:
            json.dump(record, f, indent=1, default=str)
        written += [stem + ".md", stem + ".json"] + ([figure] if figure else [])
    return written


def _run_dir(scale: Scale, base_config: str) -> str:
    if base_config == BASE_CONFIG:
        return scale.tag()
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in base_config)
    return f"{scale.tag()}_{safe}"


# ---------------------------------------------------------------------------------------------
# The command.


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("table", "1,2,3", "Comma-separated tables: 1, 2, 3.", **fv)
    flags.DEFINE_string("out", "docs", "Directory for tables and figures.", **fv)
    flags.DEFINE_string(
        "workdir_root",
        "/tmp/preact_ablations",
        "Run directories; finished runs found there are reused.",
        **fv,
    )
    flags.DEFINE_string("only", None, "Comma-separated variant keys to run.", **fv)
    flags.DEFINE_float("fail_error", FAIL_ERROR, "Test error (%) above which a run fails.", **fv)
    flags.DEFINE_string(
        "base_config",
        BASE_CONFIG,
        "Config every run starts from: PATH[:ARG][@field=value...] (data, normalization, "
        "augmentation); the network and schedule are set on it.",
        **fv,
    )
    default = Scale()
    for field in dataclasses.fields(Scale):
        flags.DEFINE_integer(field.name, getattr(default, field.name), f"Scale.{field.name}.", **fv)


def command_line(flag_values: flags.FlagValues) -> str:
    """The command with the flags that were given, to record beside the tables."""
    names = ["table", "out", "workdir_root", "only", "fail_error", "base_config"]
    names += [f.name for f in dataclasses.fields(Scale)]
    given = [shlex.quote(flag_values[n].serialize()) for n in names if flag_values[n].present]
    return " ".join([COMMAND, *given])


def main(
    argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS
) -> dict[str, list[Result]]:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {list(argv[1:])}")
    args = flag_values
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)  # Orbax logs every save
    scale = Scale(**{f.name: args[f.name].value for f in dataclasses.fields(Scale)})
    try:
        tables = [int(t) for t in args.table.split(",")]
        keys = list(dict.fromkeys(k for t in tables for k in table_variants(t)))
    except ValueError as e:
        raise app.UsageError(f"--table={args.table}: {e}") from None
    if args.only:
        only = args.only.split(",")
        unknown = sorted(set(only) - set(VARIANTS))
        if unknown:
            raise app.UsageError(f"unknown variants {unknown}; valid: {sorted(VARIANTS)}")
        keys = [k for k in keys if k in only]
    command = command_line(flag_values)
    print(f"{len(keys)} variants x {scale.seeds} seeds at reduced scale {scale}", flush=True)
    start = time.perf_counter()
    results = run_variants(
        keys,
        scale,
        args.workdir_root,
        base_config=args.base_config,
        log=lambda s: print(s, flush=True),
    )
    from preact.analysis.propagation import load_config

    written = write_outputs(
        tables,
        results,
        scale,
        args.out,
        fail_error=args.fail_error,
        command=command,
        data=load_config(args.base_config)[0].dataset,
    )
    print(f"done in {(time.perf_counter() - start) / 60:.1f} min; wrote {', '.join(written)}")
    return results


def _command(argv: list[str]) -> None:
    main(argv)  # app.run would exit with main's return value, which is for callers in Python


if __name__ == "__main__":
    define_flags()
    app.run(_command)
