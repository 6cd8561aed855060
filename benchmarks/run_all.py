r"""The benchmark suite in one command: JAX and the PyTorch peer, alternating, one process a run.

    python -m benchmarks.run_all --suite cpu-smoke --out benchmarks/results   # < 60 s, CPU
    python -m benchmarks.run_all --suite gpu --nets 110,164 --out $OUT        # <= 10 min, H100
    python -m benchmarks.run_all --suite gpu --nets 1001 --out $OUT           # <= 10 min, H100

Each run (one framework, net, batch, dtype and variant) is its own process, so its peak memory
is its own and its compilation starts cold. Runs alternate A/B/A/B: for each repetition, for each
net, the JAX runs then the PyTorch runs. Repetition 1 of a JAX configuration compiles with an
empty persistent compilation cache (cold), repetition 2 in a new process from the cache that
repetition 1 filled (warm); PyTorch's Inductor and Triton caches start empty per command too.
The JAX epoch (on-device input pipeline against step-only) runs in repetition 1.

Every worker, JAX and PyTorch alike, gets the same cores and threads (``--threads``, default all
of the driver's cores): it is pinned to that many cores, which sizes XLA:CPU's thread pool, and
gets the same OMP/MKL_NUM_THREADS, which torch_bench passes to ``torch.set_num_threads``. Each
run record states its threads (``threads``: intra-op, inter-op, cores), and the results file
lists any difference between runs under ``thread_mismatches`` (tests/test_benchmarks.py).

Writes ``<out>/<name>.json`` after every run (so a command stopped at its limit keeps what it
measured), ``<out>/<name>.log`` and, at the end, ``<out>/<name>.md`` (the summary of
summarize.py), and prints the summary. Runs that would start after ``--deadline-s`` are recorded
as skipped; a run past ``--run-timeout-s`` is killed and recorded as a timeout.

Suites:
  cpu-smoke  everything at tiny size (PreAct-8 and -11, batch 4, 2 warm-up and 3 timed steps, a
             32-image epoch): checks the code paths, not a performance figure.
  gpu        the performance targets: bf16, batch 128, JAX scanned, PyTorch eager, torch.compile
             default and reduce-overhead (CUDA graphs), channels_last; 20 warm-up and 100 timed
             steps, 2 repetitions, a 50,000-image epoch.
  gpu-sweep  the rest of the grid, one slice per command, e.g. ``--batches 512``,
             ``--dtypes float32``, ``--layouts unrolled --no-torch``, ``--torch-modes
             max-autotune-no-cudagraphs``.
Any flag given overrides the suite's value.

On the GPU machine (its image has JAX, Flax, optax, orbax and PyTorch but not ml_collections,
which preact.training and configs/default.py import): in the repository root here, once,
    python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux2014_x86_64 -d .whl ml_collections==1.1.0
(``/.whl/`` is in .gitignore; ml_collections' own needs, absl-py and PyYAML, are in the image);
then each device command carries ``.whl`` and begins with
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit;
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from benchmarks import common

KINDS = {"cpu-smoke": "cpu_smoke", "gpu": "gpu", "gpu-sweep": "gpu"}
CPU_SMOKE_LABEL = (
    "CPU smoke run: tiny nets on a shared CPU, to check that every piece runs and records what "
    "it must. Not a performance figure."
)


@dataclasses.dataclass(frozen=True)
class TorchVariant:
    mode: str  # torch_bench.MODES
    scope: str  # 'model', 'unit' or 'auto' (unit-by-unit compilation for PreAct-1001 only)
    channels_last: bool = True

    def scope_for(self, depth: int) -> str:
        if self.scope != "auto":
            return self.scope
        # Whole-model compilation of 333 units does not fit a 10-minute command.
        return "unit" if depth >= 1001 else "model"


@dataclasses.dataclass(frozen=True)
class Group:
    """The runs of one net, batch and dtype: JAX layouts, then PyTorch variants."""

    depth: int
    batch: int
    dtype: str
    layouts: tuple[str, ...]
    torch: tuple[TorchVariant, ...]
    reps: int
    epoch: bool


@dataclasses.dataclass(frozen=True)
class Plan:
    kind: str
    groups: tuple[Group, ...]
    warmup: int
    steps: int
    num_examples: int
    deadline_s: float
    run_timeout_s: float
    fp32_precision: str
    threads: int  # cores and threads of every worker, JAX and PyTorch alike


def _csv(text: str | None, cast: Any = str) -> tuple[Any, ...] | None:
    return None if text is None else tuple(cast(v) for v in text.split(",") if v)


def _cpu_smoke_groups(
    depth: int, batches: Sequence[int], modes: Sequence[str], reps: int, epoch: bool, no_jax: bool
) -> list[Group]:
    """The smoke run's pieces, spread over the two tiny nets so that it stays under a minute on
    two shared cores: JAX's cold and warm compilations, steps and epoch on the basic net, in bf16
    as on the GPU (each JAX configuration costs 10-20 s of compilation here); the PyTorch peer on
    both nets, bf16 autocast on one and float32 on the other."""
    torch_variants = tuple(TorchVariant(m, "model") for m in modes)
    if depth == 8:
        layouts = () if no_jax else ("scanned",)
        return [Group(depth, b, "bfloat16", layouts, torch_variants, reps, epoch) for b in batches]
    return [Group(depth, b, "float32", (), torch_variants, 1, False) for b in batches]


def make_plan(args: argparse.Namespace) -> Plan:
    """The suite's runs, with any flag given overriding the suite's value."""
    if args.suite == "cpu-smoke":
        defaults = dict(
            nets=(8, 11),
            batches=(4,),
            dtypes=None,
            layouts=None,
            torch_modes=("eager",),
            reps=2,
            warmup=2,
            steps=3,
            num_examples=32,
            deadline_s=300.0,
            run_timeout_s=120.0,
            epoch=True,
        )
    else:
        defaults = dict(
            nets=(110, 164, 1001),
            batches=(128,),
            dtypes=("bfloat16",),
            layouts=("scanned",),
            reps=2,
            warmup=20,
            steps=100,
            num_examples=50_000,
            deadline_s=560.0,
            run_timeout_s=300.0,
            epoch=args.suite == "gpu",
            torch_modes=("eager", "default", "reduce-overhead"),
        )
    nets = _csv(args.nets, int) or defaults["nets"]
    batches = _csv(args.batches, int) or defaults["batches"]
    reps = args.reps or defaults["reps"]
    epoch = defaults["epoch"] if args.epoch is None else args.epoch
    modes = () if args.no_torch else (_csv(args.torch_modes) or defaults["torch_modes"])
    groups = []
    for depth in nets:
        common.block_of(depth)  # fails early on an unknown net
        if args.suite == "cpu-smoke" and args.dtypes is None and args.layouts is None:
            groups += _cpu_smoke_groups(depth, batches, modes, reps, epoch, args.no_jax)
            continue
        dtypes = _csv(args.dtypes) or defaults["dtypes"] or ("float32",)
        layouts = () if args.no_jax else (_csv(args.layouts) or defaults["layouts"] or ("scanned",))
        torch_variants = tuple(TorchVariant(m, args.torch_scope, not args.nchw) for m in modes)
        for batch in batches:
            for dtype in dtypes:
                groups.append(Group(depth, batch, dtype, layouts, torch_variants, reps, epoch))
    return Plan(
        kind=KINDS[args.suite],
        groups=tuple(groups),
        warmup=defaults["warmup"] if args.warmup is None else args.warmup,
        steps=args.steps or defaults["steps"],
        num_examples=args.num_examples or defaults["num_examples"],
        deadline_s=args.deadline_s or defaults["deadline_s"],
        run_timeout_s=args.run_timeout_s or defaults["run_timeout_s"],
        fp32_precision=args.fp32_precision,
        # The smoke runs: one core each, as two threads on two cores that other work shares
        # once made PyTorch's OpenMP spin 100x slower (bf16, 1.6 s instead of 10 ms a step).
        threads=args.threads or (1 if args.suite == "cpu-smoke" else common.affinity_cores()),
    )


def _flags(**values: Any) -> list[str]:
    return [arg for k, v in values.items() for arg in (f"--{k.replace('_', '-')}", str(v))]


def worker_commands(plan: Plan, cache_dir: str) -> list[tuple[dict[str, Any], list[str]]]:
    """(identity of the run, command line) in the order they run: repetition, net, framework."""
    runs = []
    for rep in range(1, max((g.reps for g in plan.groups), default=0) + 1):
        for g in plan.groups:
            if rep > g.reps:
                continue
            ident = dict(depth=g.depth, batch=g.batch, dtype=g.dtype, rep=rep)
            base = _flags(**ident, warmup=plan.warmup, steps=plan.steps,
                          fp32_precision=plan.fp32_precision)  # fmt: skip
            for layout in g.layouts:
                cmd = ["-m", "benchmarks.jax_bench", *base]
                cmd += _flags(layout=layout, cache_dir=cache_dir, num_examples=plan.num_examples)
                if g.epoch and rep == 1:
                    cmd.append("--epoch")
                runs.append((dict(framework="jax", variant=layout, **ident), cmd))
            for v in g.torch:
                scope = v.scope_for(g.depth)
                cmd = ["-m", "benchmarks.torch_bench", *base]
                cmd += _flags(mode=v.mode, scope=scope) + ([] if v.channels_last else ["--nchw"])
                variant = common.torch_variant_name(v.mode, scope, v.channels_last)
                runs.append((dict(framework="torch", variant=variant, **ident), cmd))
    return runs


def worker_cores(threads: int) -> list[int]:
    """The cores every worker is pinned to: the first ``threads`` of the driver's own."""
    available = sorted(os.sched_getaffinity(0))
    if not 1 <= threads <= len(available):
        raise ValueError(f"--threads {threads}: this process may use {len(available)} cores")
    return available[:threads]


def worker_env(base: dict[str, str], threads: int, scratch: str) -> dict[str, str]:
    """The environment of every worker, JAX and PyTorch alike (the same dict for both).

    The thread count reaches both frameworks: XLA:CPU sizes its pool from the affinity mask,
    which the driver sets to ``threads`` cores (worker_cores); PyTorch reads OMP/MKL_NUM_THREADS
    and torch_bench calls ``torch.set_num_threads(PREACT_BENCH_THREADS)``. A caller's
    OMP_NUM_THREADS is overridden: the workers must not differ in threads
    (tests/test_benchmarks.py)."""
    env = dict(base)
    env.update(
        XLA_PYTHON_CLIENT_PREALLOCATE="false",
        PYTHONUNBUFFERED="1",
        # Fresh compilation caches for PyTorch too, so its repetition 1 is as cold as JAX's.
        TORCHINDUCTOR_CACHE_DIR=os.path.join(scratch, "inductor"),
        TRITON_CACHE_DIR=os.path.join(scratch, "triton"),
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        **{common.THREADS_ENV: str(threads)},
    )
    return env


def _run_worker(
    cmd: list[str], env: dict[str, str], timeout: float, cores: Sequence[int] | None = None
) -> tuple[str, str, float]:
    """Run one worker in its own process group (Inductor starts compile workers of its own), so
    a timeout ends all of it, pinned to ``cores``. Returns (status, output, seconds)."""
    start = time.perf_counter()
    pin = None if cores is None else (lambda: os.sched_setaffinity(0, cores))
    proc = subprocess.Popen(
        [sys.executable, *cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=common.REPO_ROOT,  # the workers run as modules of the benchmarks package
        start_new_session=True,
        preexec_fn=pin,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
        status = "ok" if proc.returncode == 0 else "error"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        status = "timeout"
    return status, output or "", time.perf_counter() - start


class Log:
    """Prints and keeps a copy in the log file."""

    def __init__(self, path: str):
        self.file = open(path, "w")  # noqa: SIM115 (closed by close())

    def __call__(self, text: str) -> None:
        print(text, flush=True)
        self.file.write(text + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def default_name(args: argparse.Namespace, plan: Plan) -> str:
    if args.suite == "cpu-smoke":
        return "train_step_cpu_smoke"
    nets = "-".join(str(d) for d in dict.fromkeys(g.depth for g in plan.groups))
    return f"train_step_{args.suite.replace('-', '_')}_{nets}"


def run_suite(args: argparse.Namespace) -> str:
    """Run the plan; returns the path of the results file."""
    start = time.perf_counter()
    plan = make_plan(args)
    name = args.name or default_name(args, plan)
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, f"{name}.json")
    log = Log(os.path.join(args.out, f"{name}.log"))
    scratch = tempfile.mkdtemp(prefix="preact_bench_")
    cache_dir = os.path.join(scratch, "jax_cache")
    threads = plan.threads
    cores = worker_cores(threads)
    env = worker_env(dict(os.environ), threads, scratch)
    # A missing package makes a worker fail at its imports, in seconds, with the error in the
    # results; only a missing PyTorch is expected (CI), and skips its runs.
    has_torch = importlib.util.find_spec("torch") is not None
    results: dict[str, Any] = {
        "schema_version": common.SCHEMA_VERSION,
        "kind": plan.kind,
        "suite": args.suite,
        "label": CPU_SMOKE_LABEL if plan.kind == "cpu_smoke" else "GPU benchmark suite",
        "environment": common.environment(),
        "worker_env": {k: env.get(k) for k in common.RECORDED_ENV},
        "threads": {"per_worker": threads, "cores": cores},
        "protocol": {
            "warmup_steps": plan.warmup,
            "timed_steps": plan.steps,
            "epoch_examples": plan.num_examples,
            "fp32_precision": plan.fp32_precision,
            "order": "for each repetition, for each net: JAX runs, then PyTorch runs",
            "compile_cache": "repetition 1 cold (empty caches), later repetitions warm",
        },
        "runs": [],
        "complete": False,
    }
    commands = worker_commands(plan, cache_dir)
    log(f"{len(commands)} runs, deadline {plan.deadline_s:.0f} s; results in {json_path}")
    try:
        for ident, cmd in commands:
            record = dict(
                net=common.net_name(ident["depth"]), block=common.block_of(ident["depth"]), **ident
            )
            remaining = plan.deadline_s - (time.perf_counter() - start)
            if ident["framework"] == "torch" and not has_torch:
                record.update(status="skipped", reason="torch is not installed")
            elif remaining < min(60.0, plan.run_timeout_s):
                record.update(status="skipped", reason=f"deadline ({plan.deadline_s:.0f} s)")
            else:
                out_json = os.path.join(scratch, f"run{len(results['runs']):03d}.json")
                status, output, seconds = _run_worker(
                    [*cmd, "--json-out", out_json], env, min(plan.run_timeout_s, remaining), cores
                )
                if "No module named 'ml_collections'" in output:
                    log("ml_collections is missing: carry its wheel (see run_all.py's docstring)")
                if status == "ok" and os.path.exists(out_json):
                    record = common.read_json(out_json)
                else:
                    if status == "ok":
                        status = "error"
                    record.update(status=status, wall_s=round(seconds, 1), error=output[-3000:])
                lines = output.splitlines()
                # The worker's one-line result, or the end of its traceback.
                for line in lines if status == "ok" else lines[-40:]:
                    if line.startswith(("jax ", "torch ")) or status != "ok":
                        log(line)
            if record["status"] != "ok":
                log(
                    f"{ident['framework']} {record['net']} b{ident['batch']} {ident['dtype']} "
                    f"{ident['variant']} rep{ident['rep']}: {record['status']} "
                    f"{record.get('reason', '')}"
                )
            results["runs"].append(record)
            common.write_json(json_path, results)
        results["thread_mismatches"] = common.thread_mismatches(results["runs"])
        for problem in results["thread_mismatches"]:
            log(f"UNFAIR: {problem}")
        results["complete"] = True
        results["wall_s"] = round(time.perf_counter() - start, 1)
        common.write_json(json_path, results)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    from benchmarks import summarize

    summary = summarize.render([json_path])
    with open(os.path.join(args.out, f"{name}.md"), "w") as f:
        f.write(summary)
    log(summary)
    log(f"total {time.perf_counter() - start:.1f} s")
    log.close()
    return json_path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", required=True, choices=tuple(KINDS))
    parser.add_argument(
        "--out", default=os.environ.get("OUT", ""), help="directory for the results (default: $OUT)"
    )
    parser.add_argument("--name", default="", help="file name stem of the results")
    parser.add_argument("--nets", help="depths, e.g. 110,164,1001")
    parser.add_argument("--batches", help="e.g. 128,512")
    parser.add_argument("--dtypes", help="float32,bfloat16")
    parser.add_argument("--layouts", help="JAX: scanned,unrolled")
    parser.add_argument("--torch-modes", help="eager,default,max-autotune-no-cudagraphs,...")
    parser.add_argument(
        "--torch-scope",
        default="auto",
        choices=("auto", "model", "unit"),
        help="torch.compile of the whole model or of each unit; auto: unit "
        "for PreAct-1001, model otherwise",
    )
    parser.add_argument("--nchw", action="store_true", help="PyTorch without channels_last")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-jax", action="store_true")
    parser.add_argument("--reps", type=int)
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--num-examples", type=int, help="images in the epoch's dataset")
    parser.add_argument("--epoch", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--deadline-s", type=float, help="start no run after this many seconds")
    parser.add_argument("--run-timeout-s", type=float, help="kill a run after this many seconds")
    parser.add_argument("--fp32-precision", default="tf32", choices=("tf32", "highest"))
    parser.add_argument(
        "--threads",
        type=int,
        help="cores (and intra-op threads) of every worker, JAX and PyTorch alike; default: all "
        "of this process's cores (1 for cpu-smoke)",
    )
    args = parser.parse_args(argv)
    if not args.out:
        parser.error("--out is required when $OUT is not set")
    return args


def main() -> None:
    run_suite(parse_args())


if __name__ == "__main__":
    main()
