"""The Colab notebook's code runs: its cells, minus shell and magic lines, train the smoke config
on CPU for a few steps and plot the run."""

import json
import os
import sys

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "notebooks", "colab_train.ipynb")


def code_cells(notebook):
    """Each code cell's source without ``!`` (shell) and ``%`` (IPython magic) lines."""
    cells = []
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        lines = "".join(cell["source"]).splitlines()
        kept = [line for line in lines if not line.lstrip().startswith(("!", "%"))]
        cells.append(("\n".join(kept), cell["metadata"].get("tags", [])))
    return cells


def test_notebook_is_valid_and_installs_the_package_with_the_accelerator_extra():
    with open(NOTEBOOK) as f:
        notebook = json.load(f)
    assert notebook["nbformat"] == 4
    assert all(c["cell_type"] in ("code", "markdown") for c in notebook["cells"])
    assert all(not c.get("outputs") for c in notebook["cells"] if c["cell_type"] == "code")
    sources = ["".join(c["source"]) for c in notebook["cells"]]
    assert any('pip install -q -e "{REPO_DIR}{EXTRA}"' in s for s in sources)
    assert "github.com/" not in "".join(sources)  # no made-up repository address


def test_notebook_trains_and_plots(tmp_path, monkeypatch):
    with open(NOTEBOOK) as f:
        cells = code_cells(json.load(f))
    (parameters, tags), rest = cells[0], cells[1:]
    assert "parameters" in tags
    namespace = {}
    exec(compile(parameters, "parameters", "exec"), namespace)
    assert {"REPO_DIR", "CONFIG_FILE", "OVERRIDES", "WORKDIR"} <= set(namespace)
    namespace.update(
        REPO_DIR=ROOT,
        GIT_URL="",
        CONFIG_FILE="configs/smoke.py",
        CONFIG_ARG=None,
        OVERRIDES={
            "model.depth": 8,
            "model.width": 4,
            "batch_size": 16,
            "num_train_steps": 6,
            "lr_boundaries_steps": (4,),
            "log_every_steps": 3,
            "eval_every_steps": 6,
            "checkpoint_every_steps": 6,
            "progress_bar": False,
        },
        WORKDIR=str(tmp_path / "run"),
    )
    monkeypatch.chdir(tmp_path)  # the notebook changes directory; pytest changes it back
    monkeypatch.setattr(sys, "path", list(sys.path))
    with jax.default_prng_impl("rbg"):  # threefry's init compiles slowly on a CPU
        for index, (source, _) in enumerate(rest, start=1):
            exec(compile(source, f"cell {index}", "exec"), namespace)

    assert namespace["ACCELERATOR"] in ("cpu", "gpu", "tpu")
    assert namespace["config"].model.depth == 8
    assert namespace["result"]["step"] == 6
    assert 0 <= namespace["result"]["test_error"] <= 100
    png = tmp_path / "run" / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loss_line = namespace["fig"].axes[0].get_lines()[0]
    np.testing.assert_array_equal(loss_line.get_xdata(), [3, 6])
