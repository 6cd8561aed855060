"""Training loses nothing: exact resume after SIGKILL, graceful SIGTERM, atomic and corrupt
checkpoints, divergence, mismatched workdirs."""

import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import chex
import jax
import numpy as np
import pytest

from preact import checkpointing, data, training
from preact.metrics import read_metrics
from tests.helpers import ROOT, TINY_FLAGS, tiny_config


def _final_state(config, workdir):
    state, step, _ = training.restore_for_eval(config, workdir)
    return step, jax.device_get((state.params, state.batch_stats, state.opt_state))


def _start_train(workdir, steps, *extra):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")  # fmt: skip
    args = [sys.executable, os.path.join(ROOT, "train.py"), "--config=configs/smoke.py",
            f"--workdir={workdir}", f"--config.num_train_steps={steps}", *TINY_FLAGS,
            "--config.log_every_steps=1", *extra]  # fmt: skip
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def _wait_for_step(workdir, step, proc, timeout=240):
    path = os.path.join(workdir, "metrics.jsonl")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.stderr.read()[-2000:]}")
        if os.path.exists(path):
            records = [r for r in read_metrics(path) if "train_loss" in r]
            if records and records[-1]["step"] >= step:
                return records[-1]["step"]
        time.sleep(0.05)
    raise AssertionError("training did not reach the step in time")


def test_sigkill_then_resume_equals_uninterrupted_run_bit_for_bit(tmp_path):
    steps = 24
    overrides = {"num_train_steps": steps, "log_every_steps": 1, "checkpoint_every_steps": 5}
    # the uninterrupted reference (same code, same 8 devices, in this process)
    reference = str(tmp_path / "reference")
    training.train_and_evaluate(tiny_config(**overrides), reference)

    interrupted = str(tmp_path / "interrupted")
    kill_at = random.Random(os.getpid()).randint(6, steps - 4)
    proc = _start_train(interrupted, steps, "--config.checkpoint_every_steps=5")
    _wait_for_step(interrupted, kill_at, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    resumed = _start_train(interrupted, steps, "--config.checkpoint_every_steps=5")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert "resumed from checkpoint at step" in err

    config = tiny_config(**overrides)
    step_a, a = _final_state(config, reference)
    step_b, b = _final_state(config, interrupted)
    assert step_a == step_b == steps
    chex.assert_trees_all_equal(a, b)  # bit for bit
    logged = [r["step"] for r in read_metrics(interrupted) if "train_loss" in r]
    assert logged == list(range(1, steps + 1))  # no gap, no duplicate after the resume


def test_sigterm_checkpoints_the_step_reached_and_exits_143(tmp_path):
    workdir = str(tmp_path)
    proc = _start_train(workdir, 100_000, "--config.checkpoint_every_steps=100000")
    _wait_for_step(workdir, 3, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    last_logged = read_metrics(workdir)[-1]["step"]
    assert sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))) == [last_logged]
    assert f"stopped at step {last_logged}; checkpoint written to" in err


def _corrupt(step_dir):
    """Truncate every data file of a checkpoint's state, as a disk full or a crash might."""
    for root, _, files in os.walk(os.path.join(step_dir, "state")):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 3)


def test_truncated_latest_checkpoint_falls_back_to_the_previous(tmp_path, caplog):
    config = tiny_config()
    workdir = str(tmp_path)
    training.train_and_evaluate(config, workdir)
    _corrupt(os.path.join(workdir, "checkpoints", "10"))
    abstract = training.abstract_train_state(
        config, training.configuration.build_model(config), (8, 8, 1)
    )
    with caplog.at_level(logging.WARNING):
        _, step = checkpointing.Checkpointer(workdir, config).restore(abstract)
    assert step == 5
    assert "instead of the corrupt [10]" in caplog.text


def test_partial_checkpoint_directory_is_ignored_and_cleaned(tmp_path):
    config = tiny_config(num_train_steps=5)
    workdir = str(tmp_path)
    training.train_and_evaluate(config, workdir)
    ckpts = os.path.join(workdir, "checkpoints")
    # what a process killed while saving step 7 leaves behind
    partial = os.path.join(ckpts, "7.orbax-checkpoint-tmp-1234567")
    shutil.copytree(os.path.join(ckpts, "5"), partial)
    checkpointer = checkpointing.Checkpointer(workdir, config)
    assert checkpointer.steps() == [5]
    assert not os.path.exists(partial)


def test_nan_at_a_given_step_stops_with_the_last_good_checkpoint(tmp_path, monkeypatch):
    real = data.make_pipeline

    def poisoned(config, **kwargs):
        pipeline = real(config, **kwargs)
        train_batch = pipeline.train_batch

        def batch(step):
            b = train_batch(step)
            if step == 7:  # the 8th update
                b = dict(b, image=b["image"] * np.nan)
            return b

        pipeline.train_batch = batch
        return pipeline

    monkeypatch.setattr(data, "make_pipeline", poisoned)
    workdir = str(tmp_path)
    config = tiny_config(log_every_steps=1)
    with pytest.raises(training.DivergenceError, match="training diverged at step 7") as e:
        training.train_and_evaluate(config, workdir)
    assert "the last good checkpoint is step 5" in str(e.value)
    assert checkpointing.Checkpointer(workdir, config).steps() == [5]

    # with on_divergence=stop the failure is recorded and the run ends cleanly
    stopped = str(tmp_path / "stop")
    result = training.train_and_evaluate(tiny_config(log_every_steps=1, on_divergence="stop"),
                                         stopped)  # fmt: skip
    assert result == {"step": 7, "diverged": True}
    assert read_metrics(stopped)[-1] == {"step": 7, "diverged": True}


def test_eval_of_a_checkpoint_from_another_config_is_refused(tmp_path):
    workdir = str(tmp_path)
    training.train_and_evaluate(tiny_config(num_train_steps=5), workdir)
    with pytest.raises(ValueError, match=r"another model.*model.unit: checkpoint 'full_preact', "
                                         r"config 'original'"):  # fmt: skip
        training.restore_for_eval(tiny_config(**{"model.unit": "original"}), workdir)
