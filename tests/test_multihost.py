"""Multi-host training as JAX runs it: two processes on this machine, 4 fake CPU devices each and a
loopback coordinator, started through train.py and eval.py as a user would start them on two
hosts. Every wait is bounded, and the children are killed if anything fails."""

import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import chex
import jax
import numpy as np
import pytest

from preact import training
from preact.metrics import read_metrics
from tests.helpers import ROOT, TINY_FLAGS, tiny_config

pytestmark = pytest.mark.slow  # see pyproject.toml

DEVICES_PER_PROCESS = 4
FLAGS = [*TINY_FLAGS, "--config.log_every_steps=1", "--config.checkpoint_every_steps=100000"]
TIMEOUT = 240  # seconds for any one launch; a hang fails the test instead of blocking CI


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(i, port, slurm, cache, devices=DEVICES_PER_PROCESS):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "JAX_"))}
    env.update(
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        PYTHONUNBUFFERED="1",
        # Later launches reuse the first one's compiled programs: the test's time is CPU time.
        JAX_COMPILATION_CACHE_DIR=str(cache),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    if slurm:  # what a SLURM job step sets; JAX's cluster detection reads it
        env.update(SLURM_JOB_ID="1", SLURM_STEP_NODELIST="127.0.0.1", SLURM_NTASKS="2",
                   SLURM_PROCID=str(i), SLURM_LOCALID=str(i),
                   JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}")  # fmt: skip
    return env


def _command(script):
    """``train.py`` (a file in the checkout) or ``-m tests.layout_probe`` (a module)."""
    return [os.path.join(ROOT, script)] if script.endswith(".py") else ["-m", script]


class Launch:
    """Two processes of one script; ``slurm`` picks how they find each other (cluster
    detection, or the explicit --coordinator_address/--num_processes/--process_id flags)."""

    def __init__(self, tmp_path, name, script, *args, slurm, devices=DEVICES_PER_PROCESS):
        port = _free_port()
        self.procs, self.logs = [], []
        for i in range(2):
            how = (["--distributed"] if slurm else [f"--coordinator_address=127.0.0.1:{port}",
                   "--num_processes=2", f"--process_id={i}"])  # fmt: skip
            log = open(tmp_path / f"{name}.{i}.log", "w+")  # noqa: SIM115 - closed in finish
            self.logs.append(log)
            self.procs.append(subprocess.Popen(
                [sys.executable, *_command(script), *args, *how], cwd=ROOT,
                env=_env(i, port, slurm, tmp_path / "jax-cache", devices), stdout=log,
                stderr=subprocess.STDOUT,
            ))  # fmt: skip
        self.deadline = time.monotonic() + TIMEOUT

    def output(self, i):
        self.logs[i].flush()
        self.logs[i].seek(0)
        lines = [line for line in self.logs[i].read().splitlines() if "[Gloo]" not in line]
        return "\n".join(lines)

    def alive(self):
        return all(p.poll() is None for p in self.procs)

    def finish(self):
        """Wait for both; return their exit codes. Kills both if either runs out of time."""
        try:
            for p in self.procs:
                p.wait(timeout=max(1.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"a process hung:\n{self.output(0)[-2000:]}\n{self.output(1)[-2000:]}")
        return [p.returncode for p in self.procs]

    def kill(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        for log in self.logs:
            log.close()


def _wait_for_step(workdir, step, launch):
    path = os.path.join(workdir, "metrics.jsonl")
    while time.monotonic() < launch.deadline and launch.alive():
        if os.path.exists(path) and any(r["step"] >= step for r in read_metrics(path)):
            return
        time.sleep(0.05)
    launch.kill()
    pytest.fail(f"no step {step} in time:\n{launch.output(0)[-3000:]}\n{launch.output(1)[-2000:]}")


def test_two_processes_train_stop_resume_and_evaluate_like_one(tmp_path):
    workdir = str(tmp_path / "run")
    common = ["--config=configs/smoke.py", f"--workdir={workdir}", *FLAGS]

    # 1. Train until Ctrl-C reaches one process: passed on to JAX's preemption notifier (as a
    # SIGTERM, which a scheduler would send), it stops both after the same step, checkpointed.
    with Launch(tmp_path, "train1", "train.py", *common, "--config.num_train_steps=100000",
                slurm=True) as launch:  # fmt: skip
        _wait_for_step(workdir, 2, launch)
        launch.procs[1].send_signal(signal.SIGINT)
        codes = launch.finish()
        outputs = [launch.output(0), launch.output(1)]
    assert codes == [143, 130], outputs
    stopped = [re.search(r"stopped by SIG\w+ at step (\d+);", o) for o in outputs]
    assert all(stopped) and stopped[0][1] == stopped[1][1], outputs
    stop_step = int(stopped[0][1])
    assert os.listdir(os.path.join(workdir, "checkpoints")) == [str(stop_step)]
    assert not any(".orbax-checkpoint-tmp" in n for n in os.listdir(workdir + "/checkpoints"))

    # 2. Resume to the end, the processes now told who they are by flags.
    total = stop_step + 3
    with Launch(tmp_path, "train2", "train.py", *common, f"--config.num_train_steps={total}",
                slurm=False) as launch:  # fmt: skip
        codes = launch.finish()
        outputs = [launch.output(0), launch.output(1)]
    assert codes == [0, 0], outputs
    assert f"resumed from checkpoint at step {stop_step}" in outputs[0]

    # 3. eval.py on two processes agrees with the training run's last evaluation.
    with Launch(tmp_path, "eval", "eval.py", "--config=configs/smoke.py", f"--workdir={workdir}",
                *FLAGS, slurm=True) as launch:  # fmt: skip
        codes = launch.finish()
        outputs = [launch.output(0), launch.output(1)]
    assert codes == [0, 0], outputs
    with open(os.path.join(workdir, "eval_results.json")) as f:
        results = json.load(f)
    assert results["step"] == total and results["num_examples"] == 360

    # One set of logs and checkpoints: process 0 wrote them, once.
    records = read_metrics(workdir)
    assert [r["step"] for r in records] == list(range(1, total + 1))
    assert results["test_error"] == pytest.approx(records[-1]["test_error"], abs=1e-9)
    assert len(glob.glob(os.path.join(workdir, "tensorboard", "*tfevents*"))) == 2  # 2 launches
    ckpt = os.path.join(workdir, "checkpoints", str(total))
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == sorted(
        [str(stop_step), str(total)]
    )
    assert not glob.glob(os.path.join(ckpt, "**", "*process_1*"), recursive=True)
    assert not os.path.exists(os.path.join(workdir, "train.lock"))

    # 4. The same as one process with 8 devices, to float32 rounding: the mean over devices is
    # summed in another order across processes (each process's 4 devices first, then the two
    # partial sums over gloo) than within one process, so the last bits differ.
    reference = str(tmp_path / "reference")
    config = tiny_config(num_train_steps=total, log_every_steps=1, checkpoint_every_steps=100000)
    training.train_and_evaluate(config, reference)
    ours, step_a, _ = training.restore_for_eval(config, workdir)
    theirs, step_b, _ = training.restore_for_eval(config, reference)
    assert step_a == step_b == total
    leaves = lambda s: jax.tree.leaves((s.params, s.batch_stats, s.opt_state))  # noqa: E731
    chex.assert_trees_all_close(leaves(ours), leaves(theirs), atol=1e-5, rtol=1e-5)
    for a, b in zip(records, read_metrics(reference), strict=True):
        assert a["step"] == b["step"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)


# Exact multi-host: one process with 4 devices and two processes with 2 devices each run the
# same global batches through the same reductions (config.deterministic_reductions).
EXACT = [*FLAGS, "--config.deterministic_reductions=True", "--config.eval_every_steps=10",
         "--config.checkpoint_every_steps=10", "--config.keep_checkpoints=5"]  # fmt: skip


def _one_process(tmp_path, name, *args, devices=4):
    """``python <script> args`` as one process with ``devices`` fake CPU devices."""
    env = _env(0, 0, False, tmp_path / "jax-cache", devices)
    done = subprocess.run([sys.executable, *_command(args[0]), *args[1:]], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


def _two_processes(tmp_path, name, *args, devices=2):
    with Launch(tmp_path, name, *args, slurm=False, devices=devices) as launch:
        codes = launch.finish()
        assert codes == [0, 0], [launch.output(0)[-3000:], launch.output(1)[-3000:]]


def _records(workdir):
    """metrics.jsonl less the throughput, the one field that is a wall-clock measurement."""
    return [{k: v for k, v in r.items() if k != "images_per_sec"} for r in read_metrics(workdir)]


def _checkpoint(workdir, config, step):
    state, restored, _ = training.restore_for_eval(config, workdir, step)
    assert restored == step
    return jax.tree.leaves((state.params, state.batch_stats, state.opt_state))


def test_batches_and_initial_parameters_do_not_depend_on_the_process_layout(tmp_path):
    """Each process's rows of the first batches (and of the first batch of epoch 2) and its
    initial parameters, saved by tests/layout_probe.py: 2 processes x 2 devices put together
    are 1 process x 4 devices, bit for bit."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    _one_process(tmp_path, "probe1", "tests.layout_probe", str(one))
    _two_processes(tmp_path, "probe2", "tests.layout_probe", str(two))
    whole = np.load(one / "process0.npz")
    parts = [np.load(two / f"process{i}.npz") for i in range(2)]
    assert sorted(whole.files) == sorted(parts[0].files) == sorted(parts[1].files)
    assert sum(k.startswith("step") for k in whole.files) == 6  # 3 steps x (image, label)
    for key in whole.files:
        if key.startswith("step"):  # each process holds its half of the global batch
            assert len(parts[0][key]) == len(parts[1][key]) == len(whole[key]) // 2
            np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])
        else:  # every process initializes all the parameters
            for part in parts:
                np.testing.assert_array_equal(part[key], whole[key], err_msg=key)


def test_deterministic_reductions_give_the_same_run_on_every_layout(tmp_path):
    """config.deterministic_reductions: 30 steps of the smoke config with evaluations and
    checkpoints every 10, on 1 process x 4 devices and on 2 processes x 2 devices, write the
    same metrics.jsonl (every value but the throughput) and bit-identical checkpoints.

    The control, the same two layouts with XLA's all-reduce, must differ somewhere in 30 steps
    (the sums are rounded in another order): without it this test could pass on a run whose
    flag never reached the reductions."""
    config = tiny_config(num_train_steps=30, log_every_steps=1, eval_every_steps=10,
                         checkpoint_every_steps=10, keep_checkpoints=5,
                         deterministic_reductions=True)  # fmt: skip
    runs = {}
    for exact in (True, False):
        flags = [*EXACT, "--config.num_train_steps=30",
                 f"--config.deterministic_reductions={exact}"]  # fmt: skip
        for layout in ("1x4", "2x2"):
            workdir = str(tmp_path / f"{layout}-{exact}")
            args = ["train.py", "--config=configs/smoke.py", f"--workdir={workdir}", *flags]
            if layout == "1x4":
                _one_process(tmp_path, f"train-{layout}-{exact}", *args)
            else:
                _two_processes(tmp_path, f"train-{layout}-{exact}", *args)
            runs[layout, exact] = workdir

    a, b = _records(runs["1x4", True]), _records(runs["2x2", True])
    assert [r["step"] for r in a] == list(range(1, 31))
    assert sum("test_error" in r for r in a) == 3  # evaluated at steps 10, 20 and 30
    assert a == b
    for step in (10, 20, 30):
        for x, y in zip(_checkpoint(runs["1x4", True], config, step),
                        _checkpoint(runs["2x2", True], config, step), strict=True):  # fmt: skip
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))

    control = tiny_config(num_train_steps=30)
    differ = [
        not np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(
            _checkpoint(runs["1x4", False], control, 30),
            _checkpoint(runs["2x2", False], control, 30),
            strict=True,
        )  # fmt: skip
    ]
    assert any(differ), "XLA's all-reduce gave bit-identical layouts: the control is not one"


def test_deterministic_reductions_with_synchronized_batch_norm(tmp_path):
    """Synchronized BN sums its statistics (and their gradients) over devices inside every
    layer: with deterministic_reductions those sums go through the ordered BatchNorm layers, and
    the two layouts still give the same run, bit for bit (12 steps, evaluated and checkpointed
    at the end)."""
    flags = [*EXACT, "--config.num_train_steps=12", "--config.eval_every_steps=12",
             "--config.checkpoint_every_steps=12",
             "--config.bn_statistics=synchronized"]  # fmt: skip
    runs = {}
    for layout in ("1x4", "2x2"):
        workdir = str(tmp_path / layout)
        args = ["train.py", "--config=configs/smoke.py", f"--workdir={workdir}", *flags]
        if layout == "1x4":
            _one_process(tmp_path, f"train-{layout}", *args)
        else:
            _two_processes(tmp_path, f"train-{layout}", *args)
        runs[layout] = workdir
    a, b = _records(runs["1x4"]), _records(runs["2x2"])
    assert len(a) == 12 and "test_error" in a[-1] and a == b
    config = tiny_config(num_train_steps=12, bn_statistics="synchronized",
                         deterministic_reductions=True)  # fmt: skip
    for x, y in zip(_checkpoint(runs["1x4"], config, 12), _checkpoint(runs["2x2"], config, 12),
                    strict=True):  # fmt: skip
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
