"""Curves as the paper draws them: the plotted data are the metrics files' data."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from preact import metrics
from preact.analysis import curves

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_run(workdir, experiment, losses, errors, *, diverged_at=None, log_every=10):
    """A metrics.jsonl as the training loop writes it: a loss every ``log_every`` steps, a test
    error every ``2 * log_every``."""
    os.makedirs(workdir, exist_ok=True)
    if experiment is not None:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            json.dump({"experiment": experiment, "model": {"depth": 20}}, f)
    writer = metrics.MetricsWriter(str(workdir))
    errors = iter(errors)
    for i, loss in enumerate(losses, start=1):
        step = i * log_every
        record = {"train_loss": loss, "train_error": 50.0, "learning_rate": 0.1}
        if i % 2 == 0:
            record.update(test_loss=loss, test_error=next(errors))
        writer.write(step, record)
    if diverged_at is not None:
        writer.write(diverged_at, {"diverged": True})
    return str(workdir)


def lines_by_gid(fig):
    return {line.get_gid(): line for ax in fig.axes for line in ax.get_lines() if line.get_gid()}


def test_curves_equal_the_files(tmp_path):
    a = write_run(tmp_path / "a", "original110", [2.3, 1.9, 1.2, 0.8], [60.0, 30.5])
    b = write_run(tmp_path / "b", "preact110", [2.2, 1.5, 0.9, 0.4, 0.3, 0.2], [40.0, 20.0, 9.5])
    out = tmp_path / "figs" / "fig.png"
    fig = curves.plot_runs([a, b], title="ResNet-110", out=str(out))

    assert out.read_bytes()[:8] == PNG_SIGNATURE
    loss_ax, error_ax = fig.axes
    lines = lines_by_gid(fig)
    for name, workdir in (("original110", a), ("preact110", b)):
        records = metrics.read_metrics(workdir)
        loss, error = lines[f"{name}/train_loss"], lines[f"{name}/test_error"]
        assert loss in loss_ax.get_lines() and error in error_ax.get_lines()
        np.testing.assert_array_equal(
            loss.get_xdata(), [r["step"] for r in records if "train_loss" in r]
        )
        np.testing.assert_array_equal(
            loss.get_ydata(), [r["train_loss"] for r in records if "train_loss" in r]
        )
        np.testing.assert_array_equal(
            error.get_xdata(), [r["step"] for r in records if "test_error" in r]
        )
        np.testing.assert_array_equal(
            error.get_ydata(), [r["test_error"] for r in records if "test_error" in r]
        )
        assert loss.get_linestyle() == "--"  # dashed training loss, as the paper
        assert error.get_linestyle() == "-"  # solid test error
        assert loss.get_color() == error.get_color()  # one colour per run
    assert lines["original110/test_error"].get_color() != lines["preact110/test_error"].get_color()
    legend = [t.get_text() for t in error_ax.get_legend().get_texts()]
    assert legend[:2] == ["original110", "preact110"]
    assert loss_ax.get_title() == "ResNet-110"
    assert "loss" in loss_ax.get_ylabel() and "error" in error_ax.get_ylabel()


def test_name_falls_back_to_the_directory_and_seeds_are_told_apart(tmp_path):
    plain = write_run(tmp_path / "no_config", None, [1.0, 0.5], [10.0])
    seed0 = write_run(tmp_path / "seed0", "smoke", [1.0, 0.5], [10.0])
    seed1 = write_run(tmp_path / "seed1", "smoke", [1.1, 0.6], [12.0])
    fig = curves.plot_runs([plain, seed0, seed1])
    names = {gid.split("/")[0] for gid in lines_by_gid(fig)}
    assert names == {"no_config", "smoke (seed0)", "smoke (seed1)"}


def test_diverged_run_is_marked(tmp_path):
    workdir = write_run(tmp_path / "d", "plain", [2.3, 2.4, float("nan")], [90.0], diverged_at=25)
    run = curves.load_run(workdir)
    assert run.diverged_step == 25
    assert np.isnan(run.train_loss[-1])  # written as the string "nan"
    fig = curves.plot_runs([run])
    markers = [line for line in fig.axes[0].get_lines() if line.get_marker() == "x"]
    assert len(markers) == 1 and list(markers[0].get_xdata()) == [25]
    assert "diverged at 25" in fig.axes[1].get_legend().get_texts()[0].get_text()


def test_panels_keep_one_colour_per_run(tmp_path):
    base = curves.load_run(write_run(tmp_path / "o", "original", [1.0, 0.5], [10.0]))
    var1 = curves.load_run(write_run(tmp_path / "v1", "scaling", [1.5, 1.0], [20.0]))
    var2 = curves.load_run(write_run(tmp_path / "v2", "gating", [1.2, 0.8], [15.0]))
    out = tmp_path / "panels.png"
    fig = curves.plot_panels([("(a)", [base, var1]), ("(b)", [base, var2])], out=str(out))
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    original_colors = {
        line.get_color()
        for line in fig.axes[1].get_lines() + fig.axes[3].get_lines()
        if line.get_gid() == "original/test_error"
    }
    assert len(original_colors) == 1


def test_nothing_to_plot_raises():
    with pytest.raises(ValueError):
        curves.plot_runs([])


@pytest.mark.slow
def test_command_line(tmp_path):
    a = write_run(tmp_path / "a", "original110", [2.3, 1.9], [60.0])
    out = tmp_path / "cli.png"
    result = subprocess.run(
        [sys.executable, "-m", "preact.analysis.curves", a, f"--out={out}", "--title=t"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.slow
def test_command_line_writes_into_the_workdir_by_default(tmp_path):
    a = write_run(tmp_path / "a", "original110", [2.3, 1.9], [60.0])
    b = write_run(tmp_path / "b", "preact110", [2.2, 1.5], [40.0])
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    pythonpath = [ROOT, os.environ.get("PYTHONPATH", "")]  # run from elsewhere, not installed
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, pythonpath)))
    result = subprocess.run(
        [sys.executable, "-m", "preact.analysis.curves", a, b],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "a" / "curves.png"
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    assert str(out) in result.stdout
    assert not list(cwd.iterdir())  # nothing left in the working directory
