"""The ablations' report: a table per paper table beside the paper's numbers (medians over
seeds, failures counted as in Table 1), the curves of its median-seed runs, and every run's
numbers as JSON (see :mod:`preact.analysis.ablations`)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from typing import Any

from preact.analysis.ablation_catalog import (
    TABLE1,
    TABLE2,
    TABLE3,
    TABLES,
    VARIANTS,
    Scale,
    table_variants,
    unit_key,
)
from preact.analysis.ablation_runs import Result, load_curves


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
            basic = summaries.get(unit_key(unit, "basic"))
            bott = summaries.get(unit_key(unit, "bottleneck"))
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
            orig = summaries.get(unit_key("original", kind))
            pre = summaries.get(unit_key("full_preact", kind))
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
        return load_curves(median_run(results[key]), label or VARIANTS[key].label)

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
            runs = [run(unit_key(u, kind)) for u, *_ in TABLE2]
            runs = [r for r in runs if r]
            if runs:
                block, depth, width = scale.network(kind)
                panels.append((f"{block}-{depth}, width {width}", runs))
        title = f"Table 2 activation orders, {data}"
    else:  # Fig. 1 and Fig. 6 right: original vs pre-activation
        for kind, paper_net, *_ in TABLE3:
            runs = [
                run(unit_key("original", kind), "original"),
                run(unit_key("full_preact", kind), "full pre-activation"),
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
