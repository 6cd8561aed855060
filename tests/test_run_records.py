"""What a run prints and records: the devices, the data and the compile step on the console, the
software and hardware (preact.provenance) in its checkpoints, config.json and eval_results.json,
and float32 metrics written as the numbers they are."""

import importlib.metadata
import json
import os
import subprocess

import pytest

from preact import checkpointing, provenance, training
from tests.helpers import ROOT, TINY_FLAGS, run_script, tiny_config

STEPS = 10  # TINY: lr 0.1, divided by 10 at step 6; logged at 5 and 10, evaluated at 10


def _check_environment(env):
    for name in provenance.PACKAGES:
        assert env["versions"][name] == importlib.metadata.version(name), name
    assert env["backend"] == "cpu" and env["device_kind"] == "cpu"
    assert env["device_count"] == 8 and env["process_count"] == 1
    assert env["cpu_count"] == os.cpu_count() and env["cpu_model"]
    # HEAD itself, or an older commit if someone committed since the record was made
    assert len(env["git_commit"]) == 40
    ancestor = ["git", "merge-base", "--is-ancestor", env["git_commit"], "HEAD"]
    assert subprocess.run(ancestor, cwd=ROOT).returncode == 0, env["git_commit"]
    assert isinstance(env["git_dirty"], bool)


def test_environment_names_the_installed_software_and_the_devices():
    env = provenance.environment()
    assert set(provenance.PACKAGES) == set(env["versions"])
    _check_environment(env)
    env["versions"]["jax"] = "changed"  # a copy: the record of this process stays as it was
    assert provenance.environment()["versions"]["jax"] == importlib.metadata.version("jax")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny train.py run and an eval.py of it."""
    workdir = str(tmp_path_factory.mktemp("run"))
    train = run_script("train.py", "--config=configs/smoke.py", f"--workdir={workdir}",
                       f"--config.num_train_steps={STEPS}", *TINY_FLAGS)  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    evaluation = run_script("eval.py", "--config=configs/smoke.py", f"--workdir={workdir}",
                            *TINY_FLAGS)  # fmt: skip
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    return workdir, train, evaluation


@pytest.mark.slow
def test_train_py_says_what_it_runs_on_and_when_it_compiles(run):
    _, train, _ = run
    lines = train.stderr.strip().splitlines()
    assert lines[0] == (
        "devices: 8 x cpu (backend cpu; 1 process, 8 local devices); batch 16 images = 2 per device"
    ), train.stderr[-3000:]
    assert lines[1].startswith("data: digits, 1,437 train / 360 test images (8x8x1, 10 classes")
    assert "read from: digits (scikit-learn load_digits" in lines[1]
    assert lines[2].startswith("initialized ") and lines[2].endswith(" s")
    assert lines[3] == "compiling the train step (first call) ..."
    assert lines[4].startswith("compiled the train step: the first call (compile and one step) "
                               "took ") and lines[4].endswith(" s")  # fmt: skip
    assert "compiling the eval step (first evaluation) ..." in lines
    assert any(line.startswith("step 10: test_error ") and "% test_loss" in line for line in lines)
    assert lines[-1].startswith("trained steps 1-10 in ")
    summary = train.stdout.strip().splitlines()[-1]
    assert summary.startswith("step=10 ") and " test_error=" in summary
    assert all(f.endswith("%") for f in summary.split() if f.split("=")[0].endswith("_error"))


@pytest.mark.slow
def test_metrics_jsonl_writes_float32_values_to_float32_precision(run):
    workdir, _, _ = run
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    # not 0.10000000149011612 (float32 0.1) and 0.010000001 (float32 0.1 * 0.1)
    assert [r["learning_rate"] for r in records] == [0.1, 0.01]
    for r in records:  # 7 significant digits
        assert float(f"{r['train_loss']:.7g}") == r["train_loss"], r


@pytest.mark.slow
def test_checkpoint_config_and_eval_results_record_the_environment(run):
    workdir, _, evaluation = run
    config = tiny_config()
    checkpoints = checkpointing.Checkpointer(workdir, config, read_only=True)
    try:
        meta = checkpoints.meta(STEPS)
    finally:
        checkpoints.close()
    _check_environment(meta["environment"])
    assert meta["code_version"].endswith("+" + meta["environment"]["git_commit"][:7])
    with open(os.path.join(workdir, "eval_results.json")) as f:
        results = json.load(f)
    _check_environment(results["environment"])
    errors = results["test_error"] * results["num_examples"] / 100
    assert results["step"] == STEPS and abs(errors - round(errors)) < 1e-6  # whole images
    assert evaluation.stdout.startswith(f"step {STEPS}: test_error ")
    with open(os.path.join(workdir, "config.json")) as f:
        recorded = json.load(f)
    _check_environment(recorded["environment"])
    assert recorded["experiment"] == "smoke" and recorded["model"]["depth"] == 8


def test_a_window_of_only_the_compiling_step_records_no_throughput():
    host = [{"train_loss": 1.5, "train_error": 50.0, "learning_rate": 0.1, "finite": True}]
    scalars = training._train_scalars(host, None)
    assert "images_per_sec" not in scalars and scalars["learning_rate"] == 0.1


def test_float32_values_and_durations_are_written_with_their_precision_and_units():
    import numpy as np

    from preact import metrics

    assert metrics.float32_value(np.float32(0.1)) == 0.1
    assert metrics.float32_value(np.float32(0.1) * np.float32(0.1)) == 0.01
    assert metrics.float32_value(np.float32(2.3025851)) == 2.302585
    assert [metrics.duration(s) for s in (4.4, 185, 7380, 93780, float("inf"))] == [
        "4 s", "3 min 05 s", "2 h 03 min", "1 d 02 h 03 min", "?"
    ]  # fmt: skip
