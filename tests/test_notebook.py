"""The Colab notebook's code runs: its cells, minus shell and magic lines, train the smoke config
on CPU for a few steps and plot the run; on a (simulated) multi-core TPU it synchronizes BN."""

import json
import os
import sys

import jax
import numpy as np
import pytest

from tests.helpers import TINY

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
    install = (
        '!pip install -q -e "{REPO_DIR}{EXTRA}" -r "{REPO_DIR}/requirements.txt" {CONSTRAINTS}'
    )
    assert install in sources
    # Each lock the notebook may constrain the install with exists, for the Python it names.
    for python, lock in (
        ("3.11", "requirements-lock.txt"),
        ("3.12", "requirements-lock-py312.txt"),
    ):
        assert f'"{python}": "{lock}"' in "".join(sources)
        with open(os.path.join(ROOT, lock)) as f:
            text = f.read()
        pins = dict(line.strip().split("==") for line in text.splitlines() if "==" in line)
        assert pins["jax"] == pins["jaxlib"], lock  # the accelerator plugin follows jax's pin
        assert f"Python {python}" in text.split("\n", 1)[0]
    assert "github.com/" not in "".join(sources)  # no made-up repository address
    # The accelerator comes from JAX, not from device files or environment variables; the
    # metadata demands no particular runtime.
    assert any("jax.default_backend()" in s for s in sources)
    assert not any(hint in "".join(sources) for hint in ("/dev/accel", "TPU_NAME", "nvidia-smi"))
    assert "accelerator" not in notebook["metadata"]
    assert "gpuType" not in notebook["metadata"].get("colab", {})


# The tests' tiny run (rbg generator included: threefry's init compiles slowly on a CPU), 6 steps.
TINY_RUN = {
    **TINY,
    "num_train_steps": 6,
    "lr_boundaries_steps": (4,),
    "log_every_steps": 3,
    "eval_every_steps": 6,
    "checkpoint_every_steps": 6,
}


def run_notebook(tmp_path, monkeypatch, overrides, *, stop_before=None, runtime="any"):
    """Executes the parameters cell, then the rest with the tests' parameters, up to the first
    cell containing ``stop_before``; returns the namespace and the cells that ran."""
    with open(NOTEBOOK) as f:
        cells = code_cells(json.load(f))
    (parameters, tags), rest = cells[0], cells[1:]
    assert "parameters" in tags
    namespace = {}
    exec(compile(parameters, "parameters", "exec"), namespace)
    assert {"REPO_DIR", "CONFIG_FILE", "OVERRIDES", "WORKDIR", "RUNTIME"} <= set(namespace)
    namespace.update(
        REPO_DIR=ROOT,
        GIT_URL="",
        CONFIG_FILE="configs/smoke.py",
        CONFIG_ARG=None,
        OVERRIDES=overrides,
        WORKDIR=str(tmp_path / "run"),
        RUNTIME=runtime,
    )
    monkeypatch.chdir(tmp_path)  # the notebook changes directory; pytest changes it back
    monkeypatch.setattr(sys, "path", list(sys.path))
    ran = []
    for index, (source, _) in enumerate(rest, start=1):
        if stop_before is not None and stop_before in source:
            break
        exec(compile(source, f"cell {index}", "exec"), namespace)
        ran.append(source)
    return namespace, ran


@pytest.mark.slow
def test_notebook_trains_and_plots(tmp_path, monkeypatch):
    namespace, _ = run_notebook(tmp_path, monkeypatch, dict(TINY_RUN))

    assert namespace["ACCELERATOR"] == jax.default_backend() == "cpu"  # conftest's 8 CPU devices
    assert namespace["config"].bn_statistics == "per_device"  # not a TPU: the paper's default
    assert namespace["config"].model.depth == 8
    assert namespace["result"]["step"] == 6
    wrong = namespace["result"]["test_error"] * 360 / 100  # of the 360 digits test images
    assert wrong == pytest.approx(round(wrong), abs=1e-6)  # each counted once
    png = tmp_path / "run" / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loss_line = namespace["fig"].axes[0].get_lines()[0]
    np.testing.assert_array_equal(loss_line.get_xdata(), [3, 6])


@pytest.mark.parametrize("runtime", ["gpu", "tpu"])
def test_notebook_stops_with_one_line_on_a_runtime_without_the_chosen_accelerator(
    tmp_path, monkeypatch, runtime
):
    """RUNTIME = "gpu" on a CPU runtime (Colab hands one out when no GPU is free): the cell after
    the install stops the notebook with one line naming what JAX sees, before any config or
    training cell runs; "any" and "cpu" go on."""
    with pytest.raises(SystemExit) as stopped:
        run_notebook(tmp_path, monkeypatch, dict(TINY_RUN), runtime=runtime)
    message = str(stopped.value)
    assert "\n" not in message
    assert message.startswith(f"this runtime has no {runtime.upper()}: JAX sees cpu")
    for runtime in ("any", "cpu"):
        namespace, _ = run_notebook(tmp_path, monkeypatch, {}, runtime=runtime,
                                    stop_before="load_config(")  # fmt: skip
        assert namespace["ACCELERATOR"] == "cpu"


def test_notebook_synchronizes_bn_on_a_multi_core_tpu_and_checks_override_names(
    tmp_path, monkeypatch
):
    """On 8 TPU cores a batch of 128 would give per-device BN statistics over 16 images: the
    notebook synchronizes them unless OVERRIDES says otherwise, and rejects misspelt names."""
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    namespace, ran = run_notebook(
        tmp_path, monkeypatch, dict(TINY_RUN), stop_before="train_and_evaluate("
    )
    assert namespace["ACCELERATOR"] == "tpu" and jax.device_count() > 1
    assert namespace["config"].bn_statistics == "synchronized"
    assert namespace["config"].model.depth == 8  # dotted override reached the nested field

    config_cell = next(source for source in ran if "load_config(" in source)
    namespace["OVERRIDES"] = dict(TINY_RUN, bn_statistics="per_device")
    exec(compile(config_cell, "config cell", "exec"), namespace)
    assert namespace["config"].bn_statistics == "per_device"  # an explicit choice is kept

    namespace["OVERRIDES"] = {"model.deph": 8}
    with pytest.raises(KeyError, match="deph"):
        exec(compile(config_cell, "config cell", "exec"), namespace)
