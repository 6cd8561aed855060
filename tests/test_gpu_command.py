"""The one-shot GPU benchmark command runs end to end (on CPU, at tiny size) and records runs."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow  # see pyproject.toml


def test_gpu_command_runs_end_to_end_on_cpu(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable}
    tiny = ["--suite", "cpu-smoke", "--nets", "8", "--no-torch", "--steps", "2", "--warmup", "1",
            "--num-examples", "32"]  # fmt: skip
    proc = subprocess.run(["bash", "benchmarks/gpu.sh", str(out), *tiny], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    (results,) = [p for p in out.iterdir() if p.suffix == ".json"]
    runs = json.loads(results.read_text())["runs"]
    # Both JAX layouts of the GPU command ran and finished.
    assert sorted((r["net"], r["variant"], r["status"]) for r in runs) == [
        ("PreAct-8", "scanned", "ok"),
        ("PreAct-8", "unrolled", "ok"),
    ]
    assert "## Targets" in (out / results.with_suffix(".md").name).read_text()
