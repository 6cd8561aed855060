"""The one-command GPU run of the paper's recipe on Fashion-MNIST runs end to end (on CPU, at
tiny size, on the digits CI has), records both nets' test errors and leaves the workdirs out of
OUT_DIR."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT, TINY_FLAGS

pytestmark = pytest.mark.slow  # see pyproject.toml


def test_both_nets_train_evaluate_and_are_summarized(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "WORKDIR_ROOT": str(tmp_path / "work")}
    tiny = ["--config.dataset=digits", "--config.crop_padding=1", "--config.random_flip=False",
            "--config.num_train_steps=4", "--config.warmup_steps=0", "--config.dtype=float32",
            *TINY_FLAGS]  # fmt: skip
    command = ["bash", "benchmarks/fashion_mnist_paper.sh", str(out), *tiny]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["nets"]) == ["original110", "preact110"]
    for net, result in summary["nets"].items():
        assert result["step"] == 4 and 0.0 <= result["test_error"] <= 100.0, net
        config = summary["configs"][net]
        assert config["model"]["unit"] == ("full_preact" if net == "preact110" else "original")
        assert (tmp_path / "work" / net / "eval_results.json").exists()
    assert summary["environment"]["versions"]["jax"]
    # Only the summary and the logs in OUT_DIR, within what the GPU machine sends back.
    assert sorted(p.name for p in out.iterdir()) == [
        "original110.eval.log", "original110.train.log", "preact110.eval.log",
        "preact110.train.log", "summary.json"]  # fmt: skip
