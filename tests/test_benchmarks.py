"""The benchmark suite runs and records what it must: tiny nets on the CPU, no timing assertions.

The driver test runs ``run_all.py --suite cpu-smoke`` restricted to PreAct-8 (two repetitions, so
the warm-cache path runs too). The PyTorch peer's own checks (parameter count, the same logits
for the same weights, a tiny training run) need torch, which the test environment does not
install: they are benchmarks/test_torch_peer.py, run by the GPU command before it measures.
The committed smoke results (benchmarks/results/) hold both frameworks.
"""

import json
import os
import subprocess
import sys

import jax
import pytest

from benchmarks import common, run_all, summarize

RESULTS_DIR = os.path.join(common.REPO_ROOT, "benchmarks", "results")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """(results, output directory) of the driver's cpu-smoke run on PreAct-8, JAX only: the
    PyTorch workers run in-process below, and the committed smoke results hold both."""
    out = tmp_path_factory.mktemp("bench")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # no fake devices there
    args = ["--suite", "cpu-smoke", "--nets", "8", "--reps", "2", "--no-torch", "--out"]
    cmd = [sys.executable, "-m", "benchmarks.run_all", *args, str(out)]
    proc = subprocess.run(
        cmd, cwd=common.REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / "train_step_cpu_smoke.json") as f:
        return json.load(f), out


def _check_results_file(results):
    assert results["schema_version"] == common.SCHEMA_VERSION
    assert results["kind"] == "cpu_smoke"
    assert "not a performance figure" in results["label"].lower()
    for key in common.ENVIRONMENT_KEYS:
        assert key in results["environment"], key
    versions = results["environment"]["versions"]
    for package in ("jax", "jaxlib", "flax", "numpy"):
        assert versions[package], package
    assert "torch" in versions  # None where it is not installed, but recorded
    for run in results["runs"]:
        for key in common.RUN_KEYS:
            assert key in run, key


def _committed_smoke():
    with open(os.path.join(RESULTS_DIR, "train_step_cpu_smoke.json")) as f:
        return json.load(f)


@pytest.mark.slow
def test_smoke_run_records_every_piece(smoke):
    results, out = smoke
    _check_results_file(results)
    assert results["complete"]
    runs = results["runs"]
    assert [(r["framework"], r["rep"], r["status"]) for r in runs] == [
        ("jax", 1, "ok"),
        ("jax", 2, "ok"),
    ], runs
    cold, warm = runs
    # Repetition 2 is a new process that finds the step in the persistent cache.
    assert (cold["compile"]["cache"], warm["compile"]["cache"]) == ("cold", "warm")
    for r in runs:
        assert r["params"] == common.jax_param_count(8, "basic")
        assert r["step"]["steps"] == 3 and r["warmup_steps"] == 2
        assert r["step"]["p10_ms"] <= r["step"]["median_ms"] <= r["step"]["p90_ms"]
        assert r["pipelined"]["steps"] == 3 and r["loss_finite"]
        assert r["memory"]["after_steps"] is None  # the CPU keeps no memory statistics
        assert r["memory"]["compiled"]["temp_size_in_bytes"] > 0
        assert r["worker_env"]["backend"] == "cpu" and r["worker_env"]["jax"] == jax.__version__
        assert "xla_flags" in r["worker_env"]
        # cpu-smoke pins every worker to one core: XLA's pool has one thread.
        assert r["threads"]["intra_op"] == r["threads"]["affinity_cores"] == 1
    assert results["threads"]["per_worker"] == 1 and results["thread_mismatches"] == []
    assert cold["epoch"]["steps"] == 32 // 4 and cold["epoch"]["ratio"] > 0
    assert warm["epoch"] is None  # the epoch runs in repetition 1 only
    for suffix in (".log", ".md"):
        assert (out / f"train_step_cpu_smoke{suffix}").exists()


@pytest.mark.slow
def test_summary_renders_and_counts_no_cpu_figure(smoke, tmp_path):
    _, out = smoke
    other = tmp_path / "not_results.json"
    other.write_text(json.dumps({"environment": {}, "results": []}))
    text = summarize.render([str(out / "train_step_cpu_smoke.json"), str(other)])
    assert "| jax | PreAct-8 | 4 | bfloat16 | scanned | 1 |" in text
    assert "(cold)" in text and "(warm)" in text
    assert "not_results.json" in text  # listed as skipped
    rows = summarize.targets(summarize.load([str(out / "train_step_cpu_smoke.json")])[0])
    assert len(rows) == 11
    assert {row["verdict"] for row in rows} == {summarize.NOT_MEASURED}


def test_committed_smoke_results_are_labelled_and_alternate():
    results = _committed_smoke()
    _check_results_file(results)
    assert results["complete"]
    order = [(r["framework"], r["depth"], r["rep"]) for r in results["runs"]]
    # For each repetition, for each net: JAX, then the PyTorch peer.
    expected = [("jax", 8, 1), ("torch", 8, 1), ("torch", 11, 1), ("jax", 8, 2), ("torch", 8, 2)]
    assert order == expected
    for r in results["runs"]:
        assert r["status"] == "ok" and r["loss_finite"], r
        assert r["params"] == common.jax_param_count(r["depth"], r["block"])
    paths = sorted(os.path.join(RESULTS_DIR, p) for p in os.listdir(RESULTS_DIR))
    text = summarize.render([p for p in paths if p.endswith(".json")])
    assert "## Targets" in text and "memory_cpu.json" in text  # another schema: skipped


def test_targets_judge_only_protocol_gpu_runs():
    """The target logic on a copy of the committed smoke results relabelled as a GPU run of
    PreAct-110: the figures are CPU ones, so the verdicts mean nothing; what is checked is which
    runs count and that each target then gets a verdict."""
    gpu = _committed_smoke()
    gpu["kind"] = "gpu"
    rows = {row["target"]: row for row in summarize.targets([("gpu.json", gpu)])}
    assert {row["verdict"] for row in rows.values()} == {summarize.NOT_MEASURED}
    for r in gpu["runs"]:
        r.update(depth=110, net="PreAct-110", batch=128, dtype="bfloat16", warmup_steps=20)
        r["step"]["steps"] = 100
        r["worker_env"].update(backend="gpu", device="gpu")
    rows = {row["target"]: row for row in summarize.targets([("gpu.json", gpu)])}
    judged = (summarize.PASS, summarize.FAIL)
    assert rows["PreAct-110 JAX bf16 b128 >= 30,000 img/s"]["verdict"] in judged
    assert rows["PreAct-110 JAX >= 1.3x best PyTorch (b128)"]["verdict"] in judged
    epoch = rows["PreAct-110 epoch end-to-end within 5% of step-only (bf16 b128)"]
    assert epoch["verdict"] in judged
    assert rows["PreAct-1001 JAX bf16 b128 >= 3,000 img/s"]["verdict"] == summarize.NOT_MEASURED
    for r in gpu["runs"]:
        r["step"]["steps"] = 99  # below the protocol's 100 timed steps: no throughput verdict
    rows = {row["target"]: row for row in summarize.targets([("gpu.json", gpu)])}
    assert rows["PreAct-110 JAX bf16 b128 >= 30,000 img/s"]["verdict"] == summarize.NOT_MEASURED


def test_gpu_plan_alternates_and_follows_the_protocol():
    args = run_all.parse_args(["--suite", "gpu", "--out", "/tmp/unused"])
    plan = run_all.make_plan(args)
    assert (plan.warmup, plan.steps, plan.kind) == (20, 100, "gpu")
    runs = [ident for ident, _ in run_all.worker_commands(plan, "/tmp/cache")]
    order = [(r["rep"], r["depth"], r["framework"]) for r in runs]
    assert order == sorted(order, key=lambda o: (o[0], (110, 164, 1001).index(o[1]), o[2]))
    assert {r["dtype"] for r in runs} == {"bfloat16"} and {r["batch"] for r in runs} == {128}
    torch_1001 = {r["variant"] for r in runs if r["framework"] == "torch" and r["depth"] == 1001}
    assert torch_1001 == {"eager", "default@unit", "reduce-overhead@unit"}
    jax_cmds = [
        cmd
        for ident, cmd in run_all.worker_commands(plan, "/c")
        if ident["rep"] == 1 and ident["framework"] == "jax"
    ]
    assert all("--epoch" in cmd for cmd in jax_cmds)


def test_workers_get_the_same_threads():
    """The driver gives the JAX and the PyTorch worker one environment and one set of cores, and
    the thread counts both record must agree; nothing is timed."""
    args = run_all.parse_args(["--suite", "gpu", "--nets", "110", "--out", "/tmp/unused"])
    plan = run_all.make_plan(args)
    assert plan.threads == common.affinity_cores()
    frameworks = {ident["framework"] for ident, _ in run_all.worker_commands(plan, "/c")}
    assert frameworks == {"jax", "torch"}
    env = run_all.worker_env({"OMP_NUM_THREADS": "1"}, plan.threads, "/tmp/scratch")
    # A caller's single OpenMP thread must not reach the PyTorch worker alone.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", common.THREADS_ENV):
        assert env[name] == str(plan.threads), name
    assert run_all.worker_cores(plan.threads) == sorted(os.sched_getaffinity(0))[: plan.threads]
    smoke = run_all.make_plan(run_all.parse_args(["--suite", "cpu-smoke", "--out", "/x"]))
    assert smoke.threads == 1
    # XLA:CPU's pool: one thread per core of the affinity mask, one without multi-threading.
    assert common.xla_cpu_threads("") == common.affinity_cores()
    assert common.xla_cpu_threads("--xla_cpu_multi_thread_eigen=false") == 1


def _run(framework, intra, cores, inter=None):
    threads = {"framework": framework, "intra_op": intra, "inter_op": inter,
               "affinity_cores": cores, "requested": cores}  # fmt: skip
    return {"framework": framework, "net": "PreAct-110", "variant": "v", "rep": 1,
            "status": "ok", "threads": threads}  # fmt: skip


def test_thread_mismatch_between_frameworks_is_reported():
    assert common.thread_mismatches([_run("jax", 2, 2), _run("torch", 2, 2, inter=2)]) == []
    # The old harness: XLA on its pool of two, PyTorch on one OpenMP thread.
    unfair = common.thread_mismatches([_run("jax", 2, 2), _run("torch", 1, 2, inter=2)])
    assert len(unfair) == 1 and "differ" in unfair[0]
    missing = dict(_run("torch", 2, 2), threads=None)
    assert common.thread_mismatches([_run("jax", 2, 2), missing])
    # Skipped or failed runs computed nothing.
    assert common.thread_mismatches([_run("jax", 2, 2), dict(missing, status="skipped")]) == []


def test_committed_runs_record_equal_threads():
    """Every committed results file whose runs record threads has none that differ."""
    for name in sorted(os.listdir(RESULTS_DIR)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(RESULTS_DIR, name)) as f:
            results = json.load(f)
        runs = results.get("runs") if isinstance(results, dict) else None
        if not runs or not any(isinstance(r, dict) and "threads" in r for r in runs):
            continue
        assert common.thread_mismatches(runs) == [], name


def test_peer_variants_override_several_model_fields_with_their_types():
    from benchmarks import cpu_peer

    assert cpu_peer.parse_variant("jax") == ("jax", {})
    assert cpu_peer.parse_variant("torch") == ("torch", {})
    framework, overrides = cpu_peer.parse_variant("jax:depth=14;width=32;conv_grad=xla;scan=false")
    assert framework == "jax"
    assert overrides == {"depth": 14, "width": 32, "conv_grad": "xla", "scan": False}
    config = cpu_peer._config("fashion_mnist", overrides)  # ints stay ints: ConfigDict accepts
    assert (config.model.depth, config.model.width, config.model.scan) == (14, 32, False)
    with pytest.raises(ValueError, match="jax:FIELD=VALUE"):
        cpu_peer.parse_variant("torch:depth=14")


def test_peer_variant_without_the_projects_xla_settings_gets_the_opt_out():
    from benchmarks import cpu_peer

    base = {"OMP_NUM_THREADS": "2"}
    plain = cpu_peer.variant_env(base, "jax:xla_defaults=0;scan=false")
    assert plain == {"OMP_NUM_THREADS": "2", "PREACT_XLA_DEFAULTS": "0"}
    assert cpu_peer.variant_env(base, "jax") == base  # the default path: settings applied
    assert cpu_peer.variant_env(base, "torch") == base
    assert base == {"OMP_NUM_THREADS": "2"}  # the driver's dict is not changed
