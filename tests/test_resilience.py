"""Training loses nothing: exact resume after SIGKILL, graceful SIGTERM and an immediate second
signal, atomic, truncated and corrupted checkpoints, a torn metrics line, one trainer per workdir,
divergence, mismatched workdirs."""

import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import chex
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from preact import checkpointing, data, training
from preact import workdir as workdir_lib
from preact.metrics import read_metrics
from tests.helpers import ROOT, TINY_FLAGS, tiny_config

pytestmark = pytest.mark.slow  # see pyproject.toml


@pytest.fixture
def no_compile(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the train state was built: the error came too late")

    monkeypatch.setattr(training, "create_train_state", fail)


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


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run of 10 steps with checkpoints at 5 and 10, made once; copy before changing."""
    workdir = str(tmp_path_factory.mktemp("trained") / "run")
    training.train_and_evaluate(tiny_config(), workdir)
    return workdir


@pytest.fixture
def workdir(trained, tmp_path):
    return shutil.copytree(trained, str(tmp_path / "run"))


def _abstract(config):
    return training.abstract_train_state(config, training.experiment.build_model(config), (8, 8, 1))


def _corrupt(step_dir):
    """Truncate every data file of a checkpoint's state, as a disk full or a crash might."""
    for root, _, files in os.walk(os.path.join(step_dir, "state")):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 3)


def test_truncated_latest_checkpoint_falls_back_to_the_previous(workdir, caplog):
    config = tiny_config()
    _corrupt(os.path.join(workdir, "checkpoints", "10"))
    with caplog.at_level(logging.WARNING):
        _, step = checkpointing.Checkpointer(workdir, config).restore(_abstract(config))
    assert step == 5
    assert f"restored checkpoint {workdir}/checkpoints/5 instead of" in caplog.text
    assert f"{workdir}/checkpoints/10" in caplog.text


def _orbax_reads(workdir, step, config):
    """Whether Orbax alone (no checksums) restores the state of ``step`` without an error."""
    target = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), _abstract(config))
    manager = checkpointing.Checkpointer(workdir, config, read_only=True).manager
    try:
        manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
        return True
    except Exception:  # noqa: BLE001
        return False
    finally:
        manager.close()


def _corrupt_silently(workdir, step, config, seed):
    """Random bytes in place of some in the middle of the checkpoint's largest data file (OCDBT
    keeps array data in files under ``d/``), the size and layout unchanged (a bad disk block, a
    faulty copy), at a place where Orbax reads them back without an error: the corruption only
    a checksum of the data can see."""
    step_dir = os.path.join(workdir, "checkpoints", str(step), "state")
    files = [os.path.join(r, f) for r, _, fs in os.walk(step_dir) for f in fs]
    path = max((f for f in files if os.sep + "d" + os.sep in f), key=os.path.getsize)
    with open(path, "rb") as f:
        original = f.read()
    rng = random.Random(seed)
    for _ in range(20):
        start = rng.randrange(len(original) // 4, len(original) * 3 // 4)
        with open(path, "wb") as f:
            f.write(original[:start] + rng.randbytes(64) + original[start + 64 :])
        if _orbax_reads(workdir, step, config):
            return
    pytest.fail(f"every corruption of {path} tried was caught by Orbax itself")


def test_random_bytes_in_a_checkpoint_data_file_are_detected(workdir, caplog):
    config = tiny_config()
    ckpts = os.path.join(workdir, "checkpoints")
    _corrupt_silently(workdir, 10, config, seed=0)
    with caplog.at_level(logging.WARNING):
        state, step = checkpointing.Checkpointer(workdir, config).restore(_abstract(config))
    assert step == 5
    assert f"checkpoint {ckpts}/10 is unreadable or corrupt: the bytes of" in caplog.text
    assert f"restored checkpoint {ckpts}/5 instead of the unreadable or corrupt {ckpts}/10" in (
        caplog.text
    )
    assert int(state.step) == 5

    # with no readable checkpoint left, resuming is refused instead of starting over
    _corrupt_silently(workdir, 5, config, seed=1)
    with pytest.raises(training.BadInput, match=f"no usable checkpoint: {ckpts}/10, {ckpts}/5"):
        training.train_and_evaluate(config, workdir)


def test_checksums_cover_every_array_and_see_a_single_bit():
    tree = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros((), np.int32)}
    recorded = checkpointing.checksums(tree)
    assert set(recorded) == {"['a']", "['b']"}
    flipped = tree["a"].copy()
    flipped.view(np.uint32)[1, 2] ^= 1  # the lowest mantissa bit of one value
    assert checkpointing.checksum_mismatches(dict(tree, a=flipped), recorded) == ["['a']"]
    # the same bytes in another shape are another array
    assert checkpointing.checksum_mismatches(dict(tree, a=tree["a"].reshape(3, 2)), recorded)


def test_keep_checkpoints_below_one_is_refused_before_anything_is_written(tmp_path, no_compile):
    for keep in (0, -1):
        with pytest.raises(training.BadInput, match=f"keep_checkpoints={keep} must be"):
            training.train_and_evaluate(tiny_config(keep_checkpoints=keep), str(tmp_path / "w"))
    assert not os.path.exists(tmp_path / "w")


def test_a_torn_last_metrics_line_is_dropped_on_resume(workdir, caplog):
    path = os.path.join(workdir, "metrics.jsonl")
    with open(path, "a") as f:
        f.write('{"step": 12, "train_lo')  # killed while writing step 12's record
    with caplog.at_level(logging.WARNING):
        result = training.train_and_evaluate(tiny_config(), workdir)  # resumes at 10: done
    assert result["step"] == 10
    assert f"{path}: dropping its torn last line 3" in caplog.text
    assert [r["step"] for r in read_metrics(workdir)] == [5, 10]
    with open(path) as f:
        assert f.read().endswith("}\n")

    # a bad line that is not the last is not a torn write: refused, naming the file and line
    with open(path) as f:
        lines = f.readlines()
    with open(path, "w") as f:
        f.writelines([lines[0], "garbage\n", lines[1]])
    with pytest.raises(training.BadInput, match=f"{path}, line 2: not a metrics record"):
        training.train_and_evaluate(tiny_config(), workdir)


def test_a_second_trainer_is_refused_naming_the_first(tmp_path, no_compile):
    workdir = str(tmp_path / "w")
    os.makedirs(workdir)
    holder = f"in use by another trainer: pid {os.getpid()} on host {socket.gethostname()}"
    with workdir_lib.WorkdirLock(workdir), pytest.raises(training.BadInput, match=holder):
        training.train_and_evaluate(tiny_config(), workdir)
    assert os.listdir(workdir) == []  # the holder's lock is gone once it let go


def test_a_stale_lock_of_a_killed_trainer_is_taken_over(tmp_path, caplog):
    workdir = str(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from preact.workdir import WorkdirLock; "
         "WorkdirLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)",
         workdir],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(workdir_lib.WorkdirLocked, match=f"pid {holder.pid} "):
            workdir_lib.WorkdirLock(workdir).acquire()
    finally:
        holder.kill()
        holder.wait()
    with caplog.at_level(logging.WARNING), workdir_lib.WorkdirLock(workdir) as lock:
        assert f'"pid": {os.getpid()}' in open(lock.path).read()  # noqa: SIM115
    assert f"from pid {holder.pid} on host {socket.gethostname()}" in caplog.text
    assert "which is no longer running" in caplog.text


def test_partial_checkpoint_directory_is_ignored_and_cleaned(workdir):
    ckpts = os.path.join(workdir, "checkpoints")
    # what a process killed while saving step 12 leaves behind
    partial = os.path.join(ckpts, "12.orbax-checkpoint-tmp-1234567")
    shutil.copytree(os.path.join(ckpts, "10"), partial)
    checkpointer = checkpointing.Checkpointer(workdir, tiny_config())
    assert checkpointer.steps() == [10, 5]
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
    # Step 8 is the update that would have come from the poisoned batch: the one refused.
    with pytest.raises(training.DivergenceError, match="training diverged at step 8") as e:
        training.train_and_evaluate(config, workdir)
    assert "the update to step 8 was not applied" in str(e.value)
    assert "the last good checkpoint is step 5" in str(e.value)
    assert checkpointing.Checkpointer(workdir, config).steps() == [5]

    # with on_divergence=stop the failure is recorded and the run ends cleanly
    stopped = str(tmp_path / "stop")
    result = training.train_and_evaluate(tiny_config(log_every_steps=1, on_divergence="stop"),
                                         stopped)  # fmt: skip
    assert result == {"step": 8, "diverged": True}
    assert read_metrics(stopped)[-1] == {"step": 8, "diverged": True}
    assert [r["step"] for r in read_metrics(stopped)][-2:] == [7, 8]


def test_eval_of_a_checkpoint_from_another_config_is_refused(trained):
    with pytest.raises(ValueError, match=r"another model.*model.unit: checkpoint 'full_preact', "
                                         r"config 'original'"):  # fmt: skip
        training.restore_for_eval(tiny_config(**{"model.unit": "original"}), trained)


_SECOND_SIGNAL_CHILD = textwrap.dedent("""
    import os, signal, threading, time
    from preact import stopping

    with stopping.StopSignal() as stop:
        # The main thread stands for one inside XLA (a compilation, a long step), where Python
        # cannot run a signal handler: it blocks SIGTERM, so the handler would wait until the
        # end of the sleep. The watcher thread, started before, still receives the signals.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

        def send():
            time.sleep(0.3)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGTERM)
            print("sent", flush=True)

        threading.Thread(target=send).start()
        time.sleep(20)
        print("still running after both signals", flush=True)
""")


def test_a_second_signal_exits_at_once_even_while_the_main_thread_is_busy():
    start = time.monotonic()
    child = subprocess.run([sys.executable, "-c", _SECOND_SIGNAL_CHILD], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert child.returncode == 143, child.stderr[-2000:]
    assert "second SIGTERM: exiting now" in child.stderr
    assert "still running" not in child.stdout
    assert time.monotonic() - start < 15  # not after the 20 s "step"


def test_keep_checkpoints_keeps_the_newest_n(tmp_path):
    """Orbax keeps the newest ``keep_checkpoints`` (through preservation_policy or max_to_keep,
    whichever the installed Orbax has); the older ones are deleted."""
    workdir = str(tmp_path / "w")
    config = tiny_config(num_train_steps=5, checkpoint_every_steps=1, keep_checkpoints=2)
    training.train_and_evaluate(config, workdir)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints")), key=int) == ["4", "5"]
