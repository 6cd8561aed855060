"""The GPU commands: benchmarks/gpu_box (the first contact: its driver's deadlines, budget and
$OUT check, and the whole rehearsal, offline in a Python 3.12 venv of the GPU machine's packages)
and benchmarks/gpu.sh, each run on the CPU at tiny size."""

import gzip
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from benchmarks.gpu_box import first_contact
from tests.helpers import ROOT


def _settings(tmp_path, budget_s=60.0):
    (tmp_path / "scratch").mkdir(exist_ok=True)
    return first_contact.Settings(out=str(tmp_path / "out"), rehearsal=True, budget_s=budget_s,
                                  started=time.time(), scale=1.0, python=sys.executable,
                                  scratch=str(tmp_path / "scratch"))  # fmt: skip


def test_out_check_names_what_would_not_come_back(tmp_path):
    for i in range(8):
        (tmp_path / f"f{i}.json").write_text("{}")
    assert first_contact.check_out(str(tmp_path)) == []
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "b" / "ok.txt").write_text("two folders down comes back")
    (tmp_path / "a" / "b" / "c" / "deep.txt").write_text("three does not")
    (tmp_path / "odd name.txt").write_text("")
    assert sorted(first_contact.check_out(str(tmp_path))) == [
        "11 files, more than 8",
        os.path.join("a", "b", "c", "deep.txt") + ": over 2 folders down",
        "odd name.txt: name",
    ]


# Sleeps past its deadline; prints "bye" only if the deadline's SIGINT raised KeyboardInterrupt.
GRACEFUL = "import time\ntry:\n time.sleep(30)\nexcept KeyboardInterrupt:\n print('bye')"


def test_a_command_past_its_deadline_is_interrupted_then_killed(tmp_path, monkeypatch):
    log = first_contact.Log(str(tmp_path / "log"))
    result = first_contact.run_command([sys.executable, "-c", GRACEFUL], env=dict(os.environ),
                                       timeout=2, log=log, cwd=str(tmp_path))  # fmt: skip
    assert result.timed_out and "bye" in result.output and result.seconds < 15
    monkeypatch.setattr(first_contact, "KILL_GRACE_S", 1.0)
    stubborn = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(30)"
    result = first_contact.run_command([sys.executable, "-c", stubborn], env=dict(os.environ),
                                       timeout=1, log=log, cwd=str(tmp_path))  # fmt: skip
    assert result.timed_out and result.rc == -signal.SIGKILL and result.seconds < 10
    log.close()
    assert "(deadline)" in (tmp_path / "log").read_text()


def test_the_deadline_interrupt_reaches_a_command_started_from_a_background_shell(tmp_path):
    # `nohup python first_contact.py &` starts with SIGINT ignored, and children inherit that.
    log = first_contact.Log(str(tmp_path / "log"))
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = first_contact.run_command([sys.executable, "-c", GRACEFUL], env=dict(os.environ),
                                           timeout=2, log=log, cwd=str(tmp_path))  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, previous)
        log.close()
    assert result.timed_out and "bye" in result.output and result.seconds < 15


def _fake_phase(status, seconds=0.0):
    def run(s, env, timeout, log):
        time.sleep(min(seconds, timeout))
        return {"status": status, "slept": min(seconds, timeout)}

    return run


def _run_driver(tmp_path, monkeypatch, phases, budget_s):
    monkeypatch.setattr(first_contact, "PHASES", phases)
    monkeypatch.setattr(first_contact, "MIN_PHASE_S", 3.0)
    monkeypatch.setattr(first_contact, "SUMMARY_RESERVE_S", 0.5)
    monkeypatch.setattr(sys, "argv", ["first_contact", str(tmp_path / "out")])
    monkeypatch.setenv("PREACT_REHEARSAL", "1")
    monkeypatch.setenv("PREACT_DEADLINE_SCALE", "1")
    monkeypatch.setenv("PREACT_FIRST_CONTACT_BUDGET_S", str(budget_s))
    monkeypatch.setenv("PREACT_FIRST_CONTACT_START", str(time.time()))
    rc = first_contact.main()
    return rc, json.loads((tmp_path / "out" / "summary.json").read_text())


def test_phases_keep_to_the_budget_and_a_failed_environment_stops_the_rest(tmp_path, monkeypatch):
    Phase = first_contact.Phase
    phases = (Phase("environment", 5, _fake_phase("ok")), Phase("slow", 5, _fake_phase("ok", 9)),
              Phase("late", 5, _fake_phase("ok")), Phase("last", 5, _fake_phase("ok")))  # fmt: skip
    rc, summary = _run_driver(tmp_path, monkeypatch, phases, budget_s=8.0)
    p = summary["phases"]
    assert rc == 0 and summary["complete"] and summary["rehearsal"]
    assert p["slow"]["deadline_s"] == 5 and p["slow"]["slept"] == 5  # its own deadline
    assert p["late"]["status"] == "skipped" and "budget" in p["late"]["reason"]
    assert list(p) == ["environment", "slow", "late", "last"]
    assert "CPU REHEARSAL" in summary["label"]

    phases = (Phase("environment", 5, _fake_phase("failed")), Phase("tests", 5, _fake_phase("ok")))
    rc, summary = _run_driver(tmp_path, monkeypatch, phases, budget_s=30.0)
    assert rc == 1
    assert summary["phases"]["tests"] == {"status": "skipped", "reason": "environment: None"}


def test_figures_are_read_from_the_records():
    def bench(framework, img_per_s, peak):
        record = {"framework": framework, "net": "PreAct-1001",
                  "step": {"img_per_s": img_per_s, "median_ms": 1.0, "p10_ms": 0.9, "p90_ms": 1.1},
                  "pipelined": {"img_per_s": img_per_s}, "memory": {"after_steps": peak},
                  "compile": {"total_s": 12.0, "first_step_s": 3.0}, "epoch": None}  # fmt: skip
        return {"status": "ok", "record": record}

    phases = {"jax_preact1001": bench("jax", 3000.0, {"peak_bytes_in_use": 2**31}),
              "torch_preact1001": bench("torch", 2000.0, None),
              "jax_preact164": {"status": "failed", "reason": "exit 1"}}  # fmt: skip
    figures = first_contact.figures(phases)
    assert figures["PreAct-1001"]["jax_over_torch_eager"] == 1.5
    assert figures["PreAct-1001"]["jax_scanned"]["peak_gib"] == 2.0
    assert figures["PreAct-164"] == {"jax_scanned": None, "torch_eager": None}


def _write_tiny_fashion_mnist(directory, n_train=96, n_test=40):
    """The four IDX files, tiny and random: CI must not need Debian's package."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        for kind, magic, values in (("images-idx3", 0x803, images), ("labels-idx1", 0x801, labels)):
            header = struct.pack(f">{1 + values.ndim}I", magic, *values.shape)
            path = directory / f"{prefix}-{kind}-ubyte.gz"
            path.write_bytes(gzip.compress(header + values.tobytes()))


@pytest.mark.slow  # about 5 minutes on 2 cores, plus 1-2 to build the venv the first time
def test_rehearsal_runs_every_phase_offline_within_the_device_limits(tmp_path):
    """rehearse.sh end to end: pip builds (once) the Python 3.12 venv of the GPU machine's
    packages, prepare.sh downloads the wheels, then first_contact.sh runs without network in a
    copy of what the device call would send. Run in a copy of the checkout, so that prepare.sh
    does not touch the checkout's own .gpu_box."""
    for tool in ("git", "unshare"):
        assert shutil.which(tool), f"the rehearsal needs {tool}"
    repo = tmp_path / "repo"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode()  # fmt: skip
    for path in filter(None, listed.split("\0")):
        src = os.path.join(ROOT, path)
        if os.path.lexists(src):
            os.makedirs(repo / os.path.dirname(path), exist_ok=True)
            shutil.copy2(src, repo / path, follow_symlinks=False)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "copy"]):
        subprocess.run([*git, *args], cwd=repo, check=True)
    _write_tiny_fashion_mnist(tmp_path / "idx")
    keep = tmp_path / "keep"
    env = {**os.environ, "PREACT_FASHION_MNIST_DIR": str(tmp_path / "idx")}
    proc = subprocess.run(["bash", "benchmarks/gpu_box/rehearse.sh", str(keep)], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=1500)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]
    assert proc.stdout.splitlines()[-1] == f"kept in {keep}"
    assert "carry: .gpu_box" in proc.stdout
    summary = json.loads((keep / "summary.json").read_text())
    statuses = {name: phase["status"] for name, phase in summary["phases"].items()}
    assert list(statuses) == [phase.name for phase in first_contact.PHASES]
    for name, status in statuses.items():
        expected = "skipped" if name.startswith("torch") else "ok"
        assert status == expected, (name, summary["phases"][name])
    assert "no PyTorch in the rehearsal" in summary["phases"]["torch_preact1001"]["reason"]
    assert summary["phases"]["environment"]["jax"]["jax"] == "0.11.2"
    assert summary["environment"]["python"].startswith("3.12")
    assert summary["phases"]["tests"]["failures"] == 0 and summary["phases"]["tests"]["passed"]
    assert summary["phases"]["fashion_mnist"]["eval_results"]["num_examples"] == 40
    assert summary["figures"]["PreAct-1001"]["jax_scanned"]["net"] == "PreAct-11"
    assert summary["source"]["git_commit"] and summary["out_problems"] == []
    assert len(list(keep.iterdir())) <= 8


@pytest.mark.slow
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
    # The GPU command's JAX layout ran and finished.
    assert [(r["net"], r["variant"], r["status"]) for r in runs] == [("PreAct-8", "scanned", "ok")]
    assert "## Targets" in (out / results.with_suffix(".md").name).read_text()
    assert first_contact.check_out(str(out)) == []  # what the device sends back
