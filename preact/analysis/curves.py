r"""Training curves drawn as the paper draws them (Fig. 1 right, Fig. 3, Fig. 6).

    python -m preact.analysis.curves runs/original1001 runs/preact1001 --out=fig1.png \
        --title="ResNet-1001"

Iterations on the x-axis, the training loss dashed on the left y-axis, the test error (%) solid
on the right y-axis, one colour per run, as in the paper's figures
(docs/reproduction.md#the-papers-figures). The data come from each run's ``metrics.jsonl``
(:mod:`preact.metrics`); a run's name is the ``experiment`` of its ``config.json``, or the
directory's name when there is none. Without ``--out`` the command writes ``curves.png`` into the
first workdir given, next to the ``metrics.jsonl`` it was drawn from.

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas, never pyplot, so
nothing here needs a display or touches global matplotlib state; a notebook shows the returned
Figure as it is.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence

import numpy as np
from absl import app, flags
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from preact import metrics as metrics_lib

LOSS_STYLE = "--"  # the paper's dashed training loss
ERROR_STYLE = "-"  # the paper's solid test error
# Matplotlib's tab10 without its grey (C7), which the legend's style keys use.
COLORS = tuple(f"C{i}" for i in range(10) if i != 7)
DEFAULT_NAME = "curves.png"  # in the first workdir, when the command is given no --out


@dataclasses.dataclass(frozen=True)
class Run:
    """The curves of one run, as written to ``metrics.jsonl``."""

    name: str
    train_steps: np.ndarray
    train_loss: np.ndarray
    eval_steps: np.ndarray
    test_error: np.ndarray
    diverged_step: int | None = None

    @property
    def final_test_error(self) -> float:
        return float(self.test_error[-1]) if len(self.test_error) else math.nan

    @property
    def final_train_loss(self) -> float:
        return float(self.train_loss[-1]) if len(self.train_loss) else math.nan


def run_name(workdir: str) -> str:
    """The ``experiment`` of ``<workdir>/config.json``, else the directory's name."""
    try:
        with open(os.path.join(workdir, "config.json")) as f:
            name = json.load(f).get("experiment")
    except (OSError, ValueError, AttributeError):
        name = None
    return name or os.path.basename(os.path.normpath(workdir))


def load_run(workdir: str, name: str | None = None) -> Run:
    """Read ``<workdir>/metrics.jsonl``; non-finite values (written as strings) become NaN."""
    return run_from_metrics(metrics_lib.read_metrics(workdir), name or run_name(workdir))


def run_from_metrics(records: Sequence[dict], name: str) -> Run:
    """The curves of ``metrics.jsonl``'s records (kept elsewhere too, e.g. an ablation run's
    record)."""
    train = [(r["step"], float(r["train_loss"])) for r in records if "train_loss" in r]
    test = [(r["step"], float(r["test_error"])) for r in records if "test_error" in r]
    diverged = [r["step"] for r in records if r.get("diverged")]
    return Run(
        name=name,
        train_steps=np.array([s for s, _ in train], dtype=np.int64),
        train_loss=np.array([v for _, v in train], dtype=np.float64),
        eval_steps=np.array([s for s, _ in test], dtype=np.int64),
        test_error=np.array([v for _, v in test], dtype=np.float64),
        diverged_step=diverged[0] if diverged else None,
    )


def _unique_names(runs: Sequence[Run], workdirs: Sequence[str | None]) -> list[str]:
    """Runs of the same experiment (seeds, say) are told apart by their directory."""
    names = [r.name for r in runs]
    out = []
    for run, workdir in zip(runs, workdirs, strict=True):
        if names.count(run.name) > 1 and workdir is not None:
            out.append(f"{run.name} ({os.path.basename(os.path.normpath(workdir))})")
        else:
            out.append(run.name)
    return out


def draw_runs(
    loss_ax, error_ax, runs: Sequence[Run], *, colors: Sequence[str] | None = None
) -> None:
    """Draw ``runs`` on a pair of axes sharing x: ``loss_ax`` (left) and its twin ``error_ax``.

    Every line carries a ``gid`` of ``"<name>/train_loss"`` or ``"<name>/test_error"``, so the
    curves can be found again (the tests compare them with the files).
    """
    colors = colors or [COLORS[i % len(COLORS)] for i in range(len(runs))]
    for run, color in zip(runs, colors, strict=True):
        label = run.name
        if run.diverged_step is not None:
            label += f" (diverged at {run.diverged_step})"
        # A lone point (a run stopped after one log) would draw no line: give it a marker.
        loss_marker = "." if len(run.train_steps) < 2 else None
        error_marker = "o" if len(run.eval_steps) < 2 else None
        (loss_line,) = loss_ax.plot(
            run.train_steps,
            run.train_loss,
            LOSS_STYLE,
            color=color,
            linewidth=1.0,
            marker=loss_marker,
        )
        loss_line.set_gid(f"{run.name}/train_loss")
        (error_line,) = error_ax.plot(
            run.eval_steps,
            run.test_error,
            ERROR_STYLE,
            color=color,
            linewidth=1.5,
            label=label,
            marker=error_marker,
        )
        error_line.set_gid(f"{run.name}/test_error")
        if run.diverged_step is not None:
            finite = run.train_loss[np.isfinite(run.train_loss)]
            y = finite[-1] if len(finite) else 0.0
            loss_ax.plot([run.diverged_step], [y], "x", color=color, markersize=8)
    loss_ax.set_xlabel("iterations")
    loss_ax.set_ylabel("training loss (dashed)")
    error_ax.set_ylabel("test error % (solid)")
    loss_ax.set_ylim(bottom=0)
    error_ax.set_ylim(bottom=0)
    loss_ax.grid(True, alpha=0.3)


def _legend(error_ax, runs: Sequence[Run]) -> None:
    handles, labels = error_ax.get_legend_handles_labels()
    # The paper says which style is which in its captions; a legend has to say it itself.
    handles += [
        Line2D([], [], color="grey", linestyle=LOSS_STYLE),
        Line2D([], [], color="grey", linestyle=ERROR_STYLE),
    ]
    labels += ["training loss", "test error"]
    error_ax.legend(handles, labels, loc="best", fontsize="small", framealpha=0.8)


def plot_runs(
    runs: Sequence[str | Run],
    *,
    title: str | None = None,
    out: str | None = None,
    figsize: tuple[float, float] = (7.0, 4.5),
    dpi: int = 120,
) -> Figure:
    """One figure of ``runs`` (workdirs or :class:`Run`), saved as PNG to ``out`` if given.

    Returns the Figure: ``fig.axes[0]`` holds the training losses, ``fig.axes[1]`` (its twin)
    the test errors.
    """
    if not runs:
        raise ValueError("no runs to plot")
    workdirs = [r if isinstance(r, str) else None for r in runs]
    loaded = [load_run(r) if isinstance(r, str) else r for r in runs]
    loaded = [
        dataclasses.replace(r, name=n)
        for r, n in zip(loaded, _unique_names(loaded, workdirs), strict=True)
    ]
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    loss_ax = fig.add_subplot(1, 1, 1)
    error_ax = loss_ax.twinx()
    draw_runs(loss_ax, error_ax, loaded)
    _legend(error_ax, loaded)
    if title:
        loss_ax.set_title(title)
    fig.tight_layout()
    if out:
        save(fig, out)
    return fig


def plot_panels(
    panels: Sequence[tuple[str, Sequence[Run]]],
    *,
    title: str | None = None,
    out: str | None = None,
    ncols: int = 2,
    panel_size: tuple[float, float] = (5.5, 3.6),
    dpi: int = 110,
) -> Figure:
    """Several panels of runs, as Fig. 3 (the original unit against one variant per panel).

    Each panel is ``(panel title, runs)``; the colour of a run name is the same in every panel.
    """
    if not panels:
        raise ValueError("no panels to plot")
    names: list[str] = []
    for _, runs in panels:
        names += [r.name for r in runs if r.name not in names]
    palette = {name: COLORS[i % len(COLORS)] for i, name in enumerate(names)}
    ncols = min(ncols, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), dpi=dpi)
    FigureCanvasAgg(fig)
    pairs = []
    for i, (panel_title, runs) in enumerate(panels):
        loss_ax = fig.add_subplot(nrows, ncols, i + 1)
        error_ax = loss_ax.twinx()
        draw_runs(loss_ax, error_ax, runs, colors=[palette[r.name] for r in runs])
        _legend(error_ax, runs)
        loss_ax.set_title(panel_title, fontsize="medium")
        pairs.append((loss_ax, error_ax))
    # One scale for every panel, so a curve shared by several panels looks the same in each.
    for column in (0, 1):
        top = max(pair[column].get_ylim()[1] for pair in pairs)
        for pair in pairs:
            pair[column].set_ylim(0, top)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if out:
        save(fig, out)
    return fig


def save(fig: Figure, out: str) -> str:
    """Write ``fig`` as a PNG, creating the directory; returns the path."""
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    fig.savefig(out, format="png")
    return out


# ---------------------------------------------------------------------------------------------
# The command.


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    flags.DEFINE_string(
        "out",
        None,
        f"PNG file to write; default <first WORKDIR>/{DEFAULT_NAME}.",
        flag_values=flag_values,
    )
    flags.DEFINE_string("title", None, "Figure title.", flag_values=flag_values)


def default_out(workdirs: Sequence[str]) -> str:
    """``<first workdir>/curves.png``: the figure stays with the run it was drawn from."""
    return os.path.join(workdirs[0], DEFAULT_NAME)


def main(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """``argv[1:]`` are the workdirs (each with a ``metrics.jsonl``)."""
    workdirs = argv[1:]
    if not workdirs:
        raise app.UsageError("give one or more workdirs (each with a metrics.jsonl)")
    out = flag_values.out or default_out(workdirs)
    plot_runs(workdirs, title=flag_values.title, out=out)
    print(f"wrote {out}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
