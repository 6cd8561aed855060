r"""GPU first contact: everything the first GPU session must learn, in one command of <= 9 minutes.

    bash benchmarks/gpu_box/first_contact.sh             # on the GPU machine; writes to $OUT
    PREACT_REHEARSAL=1 bash benchmarks/gpu_box/first_contact.sh OUT_DIR   # the same on a CPU

``first_contact.sh`` installs the carried wheels and runs this module, which runs its phases in
order, each in its own process group with its own deadline (SIGINT at the deadline, so pytest
reports what it ran and train.py checkpoints; SIGKILL 20 s later), and gives up a phase whose
deadline no longer fits the whole budget (``PREACT_FIRST_CONTACT_BUDGET_S``, default 510 s from
the shell script's start) rather than let it eat the phases after it:

1. ``environment``: versions, ``nvidia-smi``, JAX's devices and PyTorch's CUDA; stops everything
   at once if JAX sees no GPU (unless ``PREACT_REHEARSAL=1``).
2. ``tests``: the numerical tests on the GPU (``PREACT_TEST_PLATFORM=native``, see
   tests/conftest.py): the fused BatchNorm-ReLU and the conv gradients (tests/test_layers.py),
   every unit, block and shortcut against the independent reference (tests/test_reference.py),
   the units' own properties (tests/test_units.py).
3. ``torch_peer``: the PyTorch peer computes the project's network (benchmarks/test_torch_peer.py),
   so that its timings below compare like with like.
4. ``fashion_mnist``: ``train.py`` then ``eval.py`` with configs/fashion_mnist.py on the carried
   Fashion-MNIST IDX files.
5. bf16 batch-128 train steps, most important first: PreAct-1001 (JAX scanned, then PyTorch
   eager), PreAct-164, PreAct-110 (with one epoch of the on-device input pipeline), then PreAct-164
   with the alternatives of the two hand-written layers (``conv_grad=canonical``,
   ``fused_bn_relu=False``) against its default.

What comes back (at most 8 files, flat, under the device's limits): ``summary.json`` (every phase's
status and record, the figures, the environment), ``first_contact.log`` (every command and its
whole output), ``environment.txt``, ``tests.xml`` and ``torch_peer.xml`` (JUnit).

``PREACT_REHEARSAL=1`` runs the same phases on the CPU at tiny sizes (PreAct-11 for 1001 and 164,
PreAct-8 for 110, batch 4; a tiny net on Fashion-MNIST; a subset of the tests), with the deadlines
and the budget scaled by ``PREACT_DEADLINE_SCALE`` (default 2 there, where XLA:CPU compiles the
tiny nets about as slowly as the GPU the real ones; 1 on a GPU): benchmarks/gpu_box/rehearse.sh.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from benchmarks import common

REPO = common.REPO_ROOT
DATA_DIR = os.path.join(".gpu_box", "fashion_mnist")  # where prepare.sh puts the IDX files
SOURCE = os.path.join(".gpu_box", "source.json")  # the commit prepare.sh saw
# All phases: the GPU machine runs one command for at most 10 minutes; 9 leaves a margin.
DEFAULT_BUDGET_S = 510.0
SUMMARY_RESERVE_S = 10.0  # kept back for the last summary and the $OUT check
MIN_PHASE_S = 10.0  # a phase given less than this is skipped, not started
KILL_GRACE_S = 20.0  # between the deadline's SIGINT and SIGKILL
# The device's limits on what comes back from $OUT (/work/.library/device/README.md).
OUT_MAX_FILES = 8
OUT_MAX_DEPTH = 2  # folders below $OUT
OUT_MAX_FILE_BYTES = 16 * 2**20
OUT_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")

GPU_TESTS = ("tests/test_layers.py", "tests/test_reference.py", "tests/test_units.py")
# The rehearsal's subset of the same files: every kind of check, in a minute on 2 CPU cores.
REHEARSAL_TEST_FILTER = ("-m", "not slow", "-k", "full_preact or batch_norm_relu or canonical")
REHEARSAL_DEPTHS = {1001: 11, 164: 11, 110: 8}  # the smallest bottleneck and basic nets
REHEARSAL_FASHION_FLAGS = (
    "--config.model.depth=8",
    "--config.model.width=4",
    "--config.batch_size=32",
    "--config.eval_batch_size=500",
    "--config.num_train_steps=6",
    "--config.lr_boundaries_steps=(3,5)",
    "--config.log_every_steps=3",
    "--config.eval_every_steps=6",
    "--config.checkpoint_every_steps=6",
    "--config.rng_impl=rbg",
)
NO_TORCH_IN_REHEARSAL = (
    "rehearsal: no PyTorch in the rehearsal environment. PyPI's only torch for Linux x86-64 is "
    "the CUDA build, which pulls several GB of NVIDIA libraries, and the CPU build lives on "
    "PyTorch's own index, which this project's machines cannot reach; the GPU machine has torch."
)
REHEARSAL_LABEL = (
    "CPU REHEARSAL of the GPU first-contact command, not GPU figures: the same script on a "
    "shared 2-core CPU at tiny sizes (PreAct-11/PreAct-8, batch 4, a few steps, a tiny net on "
    "Fashion-MNIST), with only the GPU machine's Python packages and no network, to check that "
    "every phase runs and that what comes back fits the device's limits. No figure in it is a "
    "performance or accuracy figure."
)
GPU_LABEL = "GPU first contact: tests, Fashion-MNIST and bf16 batch-128 train steps on one GPU"


@dataclasses.dataclass
class Settings:
    out: str
    rehearsal: bool
    budget_s: float
    started: float  # time.time() when the shell script started
    scale: float
    python: str
    scratch: str

    def remaining(self) -> float:
        return self.budget_s - (time.time() - self.started)


@dataclasses.dataclass
class Result:
    rc: int | None
    output: str
    seconds: float
    timed_out: bool


class Log:
    """Prints the driver's lines and keeps them, with every command's whole output, in a file."""

    def __init__(self, path: str):
        self.file = open(path, "a")  # noqa: SIM115 (closed by close())

    def __call__(self, text: str, *, echo: bool = True) -> None:
        if echo:
            print(text, flush=True)
        self.file.write(text + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def run_command(
    cmd: Sequence[str], *, env: dict[str, str], timeout: float, log: Log, cwd: str = REPO
) -> Result:
    """Run ``cmd`` in its own process group; at ``timeout`` send SIGINT to the group, then
    SIGKILL after a grace period. Its whole output goes to the log."""
    log(f"$ {' '.join(cmd)}  (deadline {timeout:.0f} s)")
    start = time.perf_counter()
    with _sigint_not_ignored():
        proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env, cwd=cwd, start_new_session=True)  # fmt: skip
    timed_out = False
    try:
        output, _ = proc.communicate(timeout=max(timeout, 0.1))
    except subprocess.TimeoutExpired:
        timed_out = True
        _signal_group(proc, signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            output, _ = proc.communicate()
    seconds = time.perf_counter() - start
    log(output or "", echo=False)
    log(f"  exit {proc.returncode} after {seconds:.1f} s" + (" (deadline)" if timed_out else ""))
    return Result(proc.returncode, output or "", seconds, timed_out)


@contextlib.contextmanager
def _sigint_not_ignored() -> Iterator[None]:
    """A script started with ``nohup ... &`` from a shell inherits SIGINT *ignored*, its children
    too, and Python then never raises KeyboardInterrupt: the deadline's SIGINT would not reach
    train.py's checkpoint-and-exit path. A handled signal is reset to its default by exec, so
    while the child starts, SIGINT is handled here (fork-free, unlike a ``preexec_fn``)."""
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(proc.pid, sig)


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _failure(result: Result, what: str) -> dict[str, Any]:
    reason = f"deadline ({result.seconds:.0f} s)" if result.timed_out else f"exit {result.rc}"
    return {"status": "failed", "reason": f"{what}: {reason}", "output_tail": _tail(result.output)}


def _last_json_line(text: str) -> Any:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in the output")


# --- phases -----------------------------------------------------------------------------------

_JAX_PROBE = r"""
import json, jax, jaxlib
devices = jax.devices()
try:
    info = jax.print_environment_info(return_string=True)
except Exception as e:
    info = f"unavailable: {e!r}"
print(info)
print(json.dumps({"backend": jax.default_backend(), "jax": jax.__version__,
    "jaxlib": jaxlib.__version__, "devices": [str(d) for d in devices],
    "device_kinds": sorted({d.device_kind for d in devices}),
    "platform_version": getattr(devices[0].client, "platform_version", None)}))
"""
_TORCH_PROBE = r"""
import json, torch
cuda = torch.cuda.is_available()
print(json.dumps({"torch": torch.__version__, "cuda_available": cuda, "cuda": torch.version.cuda,
    "cudnn": torch.backends.cudnn.version() if cuda else None,
    "device": torch.cuda.get_device_name(0) if cuda else None}))
"""


def phase_environment(s: Settings, env: dict[str, str], timeout: float, log: Log) -> dict:
    text = []
    for cmd in (["nvidia-smi"], [s.python, "-m", "pip", "list", "--disable-pip-version-check"]):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            text.append(f"$ {' '.join(cmd)}\n{out.stdout}{out.stderr}")
        except (OSError, subprocess.SubprocessError) as e:
            text.append(f"$ {' '.join(cmd)}\n{e!r}\n")
    jax_run = run_command([s.python, "-c", _JAX_PROBE], env=env, timeout=timeout, log=log)
    text.append(f"$ python -c <JAX probe>\n{jax_run.output}")
    record: dict[str, Any] = {}
    if jax_run.rc != 0:
        record = _failure(jax_run, "JAX probe")
    else:
        record["jax"] = _last_json_line(jax_run.output)
    if importlib.util.find_spec("torch") is not None:
        remaining = max(timeout - jax_run.seconds, MIN_PHASE_S)
        torch_run = run_command([s.python, "-c", _TORCH_PROBE], env=env, timeout=remaining, log=log)
        text.append(f"$ python -c <PyTorch probe>\n{torch_run.output}")
        record["torch"] = _last_json_line(torch_run.output) if torch_run.rc == 0 else None
    else:
        record["torch"] = None
    with open(os.path.join(s.out, "environment.txt"), "w") as f:
        f.write("\n".join(text))
    if record.get("status") == "failed":
        return record
    backend = record["jax"]["backend"]
    if backend != "gpu" and not s.rehearsal:
        return {**record, "status": "failed", "reason": f"JAX sees no GPU (backend {backend})"}
    note = " (rehearsal: the CPU stands in for the GPU)" if s.rehearsal else ""
    log(f"  JAX {record['jax']['jax']} on {backend}: {record['jax']['devices']}{note}")
    return {**record, "status": "ok"}


def _junit_counts(path: str) -> dict[str, Any]:
    if not os.path.exists(path):
        return {"junit": None}
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = []
    for case in suite.iter("testcase"):
        for child in case:
            if child.tag in ("failure", "error"):
                message = (child.get("message") or "").strip().splitlines()
                failed.append(
                    {
                        "test": f"{case.get('classname')}::{case.get('name')}",
                        "kind": child.tag,
                        "message": message[0][:400] if message else "",
                    }
                )
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {**counts, "failed_tests": failed, "junit": os.path.basename(path)}


def _pytest_phase(
    s: Settings, env: dict[str, str], timeout: float, log: Log, args: Sequence[str], name: str
) -> dict:
    junit = os.path.join(s.out, f"{name}.xml")
    cmd = [s.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", f"--junitxml={junit}"]
    result = run_command([*cmd, *args], env=env, timeout=timeout, log=log)
    record = {"command": shlex.join(["python", *cmd[1:-1], *args]), **_junit_counts(junit)}
    record["seconds"] = round(result.seconds, 1)
    if result.rc == 0:
        return {**record, "status": "ok"}
    return {**record, **_failure(result, "pytest")}


def phase_tests(s: Settings, env: dict[str, str], timeout: float, log: Log) -> dict:
    args = [*GPU_TESTS, *(REHEARSAL_TEST_FILTER if s.rehearsal else ())]
    env = {**env, "PREACT_TEST_PLATFORM": "native"}
    record = _pytest_phase(s, env, timeout, log, args, "tests")
    if s.rehearsal:
        record["note"] = f"rehearsal: a subset of the GPU run's tests ({shlex.join(args[3:])})"
    return record


def phase_torch_peer(s: Settings, env: dict[str, str], timeout: float, log: Log) -> dict:
    if importlib.util.find_spec("torch") is None:
        if s.rehearsal:
            return {"status": "skipped", "reason": NO_TORCH_IN_REHEARSAL}
        return {"status": "failed", "reason": "torch is not importable on this machine"}
    return _pytest_phase(s, env, timeout, log, ["benchmarks/test_torch_peer.py"], "torch_peer")


def phase_fashion_mnist(s: Settings, env: dict[str, str], timeout: float, log: Log) -> dict:
    data_dir = os.path.join(REPO, DATA_DIR)
    if not os.path.isdir(data_dir):
        return {"status": "failed", "reason": f"no {DATA_DIR}: run benchmarks/gpu_box/prepare.sh"}
    workdir = os.path.join(s.scratch, "fashion_mnist")
    flags = [
        "--config=configs/fashion_mnist.py",
        f"--config.data_dir={data_dir}",
        "--config.progress_bar=False",
        *(REHEARSAL_FASHION_FLAGS if s.rehearsal else ()),
    ]
    eval_reserve = min(30.0 * s.scale, timeout / 3)
    train = run_command([s.python, "train.py", *flags, f"--workdir={workdir}"], env=env,
                        timeout=timeout - eval_reserve, log=log)  # fmt: skip
    record: dict[str, Any] = {
        "command": "python train.py " + " ".join(flags) + " --workdir=WORKDIR, then eval.py",
        "train_exit": train.rc,
        "train_s": round(train.seconds, 1),
        "train_summary": _tail(train.output, 1),
    }
    # 130: stopped by the deadline's SIGINT, with a checkpoint to evaluate.
    if train.rc not in (0, 130):
        return {**record, **_failure(train, "train.py")}
    if train.rc == 130:
        record["note"] = "training stopped at its deadline with a checkpoint; evaluated there"
    eval_cmd = [s.python, "eval.py", *flags, f"--workdir={workdir}"]
    eval_timeout = max(timeout - train.seconds, MIN_PHASE_S)
    evaluation = run_command(eval_cmd, env=env, timeout=eval_timeout, log=log)
    record["eval_s"] = round(evaluation.seconds, 1)
    if evaluation.rc != 0:
        return {**record, **_failure(evaluation, "eval.py")}
    with open(os.path.join(workdir, "eval_results.json")) as f:
        record["eval_results"] = json.load(f)
    metrics = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(metrics):
        with open(metrics) as f:
            record["last_metrics"] = [json.loads(line) for line in f.read().splitlines()[-3:]]
    return {**record, "status": "ok"}


@dataclasses.dataclass(frozen=True)
class Bench:
    framework: str  # jax | torch
    depth: int  # the GPU run's net; the rehearsal's stand-in is REHEARSAL_DEPTHS[depth]
    flags: tuple[str, ...] = ()  # jax_bench flags of an alternative
    epoch: bool = False

    def __call__(self, s: Settings, env: dict[str, str], timeout: float, log: Log) -> dict:
        depth = REHEARSAL_DEPTHS[self.depth] if s.rehearsal else self.depth
        batch, warmup, steps = (4, 1, 2) if s.rehearsal else (128, 20, 100)
        if self.framework == "torch" and importlib.util.find_spec("torch") is None:
            if s.rehearsal:
                return {"status": "skipped", "reason": NO_TORCH_IN_REHEARSAL}
            return {"status": "failed", "reason": "torch is not importable on this machine"}
        json_out = os.path.join(s.scratch, f"{self.framework}_{depth}_{len(os.listdir(s.scratch))}")
        args = ["--depth", str(depth), "--batch", str(batch), "--dtype", "bfloat16",
                "--warmup", str(warmup), "--steps", str(steps), "--json-out", json_out]  # fmt: skip
        if self.framework == "jax":
            args += ["--layout", "scanned", *self.flags]
            if self.epoch:
                args += ["--epoch", "--num-examples", "32" if s.rehearsal else "50000"]
        else:
            args += ["--mode", "eager"]
        module = f"benchmarks.{self.framework}_bench"
        result = run_command([s.python, "-m", module, *args], env=env, timeout=timeout, log=log)
        head = {"net": common.net_name(depth), "stands_for": common.net_name(self.depth)}
        if result.rc != 0 or not os.path.exists(json_out):
            return {**head, **_failure(result, module)}
        record = common.read_json(json_out)
        record.pop("worker_env", None)  # the same for every run: the environment phase has it
        log("  " + _tail(result.output, 1))
        return {**head, "status": "ok", "command": f"python -m {module} " + " ".join(args[:-2]),
                "record": record}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Phase:
    name: str
    deadline_s: float  # on the GPU; times PREACT_DEADLINE_SCALE
    run: Callable[[Settings, dict[str, str], float, Log], dict]


PHASES = (
    Phase("environment", 45, phase_environment),
    Phase("tests", 120, phase_tests),
    Phase("torch_peer", 45, phase_torch_peer),
    Phase("fashion_mnist", 100, phase_fashion_mnist),
    Phase("jax_preact1001", 110, Bench("jax", 1001)),
    Phase("torch_preact1001", 60, Bench("torch", 1001)),
    Phase("jax_preact164", 45, Bench("jax", 164)),
    Phase("torch_preact164", 30, Bench("torch", 164)),
    Phase("jax_preact110", 50, Bench("jax", 110, epoch=True)),
    Phase("torch_preact110", 30, Bench("torch", 110)),
    Phase("jax_preact164_conv_grad_canonical", 40, Bench("jax", 164, ("--conv-grad", "canonical"))),
    Phase("jax_preact164_unfused_bn_relu", 40, Bench("jax", 164, ("--no-fused-bn-relu",))),
)


# --- figures and the $OUT check ---------------------------------------------------------------


def _step(phase: dict) -> dict | None:
    if phase.get("status") != "ok" or "record" not in phase:
        return None
    r = phase["record"]
    peak = ((r.get("memory") or {}).get("after_steps") or {}).get("peak_bytes_in_use")
    figure = {
        "net": r["net"],
        "img_per_s": r["step"]["img_per_s"],
        "median_ms": r["step"]["median_ms"],
        "p10_ms": r["step"]["p10_ms"],
        "p90_ms": r["step"]["p90_ms"],
        "back_to_back_img_per_s": r["pipelined"]["img_per_s"],
        "peak_gib": None if peak is None else round(peak / 2**30, 3),
    }
    if r["framework"] == "jax":
        figure["compile_s"] = r["compile"]["total_s"]
        if r.get("epoch"):
            figure["epoch_end_to_end_over_step_only"] = r["epoch"]["ratio"]
    else:
        figure["first_step_s"] = r["compile"]["first_step_s"]
    return figure


def figures(phases: dict[str, dict]) -> dict[str, Any]:
    """The measured numbers, read from the phases' records (nothing else is a source)."""
    result: dict[str, Any] = {}
    for depth in (1001, 164, 110):
        jax_fig = _step(phases.get(f"jax_preact{depth}", {}))
        torch_fig = _step(phases.get(f"torch_preact{depth}", {}))
        entry: dict[str, Any] = {"jax_scanned": jax_fig, "torch_eager": torch_fig}
        if jax_fig and torch_fig:
            entry["jax_over_torch_eager"] = round(jax_fig["img_per_s"] / torch_fig["img_per_s"], 3)
        result[common.net_name(depth)] = entry
    base = _step(phases.get("jax_preact164", {}))
    for name in ("conv_grad_canonical", "unfused_bn_relu"):
        alt = _step(phases.get(f"jax_preact164_{name}", {}))
        entry = {"jax_scanned": alt}
        if alt and base:
            entry["img_per_s_over_default"] = round(alt["img_per_s"] / base["img_per_s"], 3)
        result[f"PreAct-164 {name}"] = entry
    fashion = phases.get("fashion_mnist", {})
    if fashion.get("status") == "ok":
        result["fashion_mnist"] = {
            **{k: fashion["eval_results"].get(k) for k in ("test_error", "step", "num_examples")},
            "train_s": fashion["train_s"],
        }
    return result


def check_out(out: str) -> list[str]:
    """What in ``out`` would not come back from the device: too many files, too deep, too big,
    odd names, links or other non-files. Empty when everything comes back."""
    problems, files = [], 0
    for root, dirs, names in os.walk(out):
        rel = os.path.relpath(root, out)
        depth = 0 if rel == "." else rel.count(os.sep) + 1
        for name in dirs + names:
            path = os.path.join(root, name)
            shown = os.path.normpath(os.path.join(rel, name))
            if not set(name) <= OUT_NAME_CHARS:
                problems.append(f"{shown}: name")
            if os.path.islink(path):
                problems.append(f"{shown}: a link")
            elif name in names and not os.path.isfile(path):
                problems.append(f"{shown}: not a plain file")
            elif name in names:
                files += 1
                if depth > OUT_MAX_DEPTH:
                    problems.append(f"{shown}: over {OUT_MAX_DEPTH} folders down")
                if os.path.getsize(path) > OUT_MAX_FILE_BYTES:
                    problems.append(f"{shown}: over 16 MiB")
    if files > OUT_MAX_FILES:
        problems.append(f"{files} files, more than {OUT_MAX_FILES}")
    return problems


# --- the driver -------------------------------------------------------------------------------


def _settings() -> Settings:
    out = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("OUT", "")
    if not out:
        sys.exit("usage: python -m benchmarks.gpu_box.first_contact OUT_DIR (or set $OUT)")
    rehearsal = os.environ.get("PREACT_REHEARSAL") == "1"
    scale = float(os.environ.get("PREACT_DEADLINE_SCALE", 2.0 if rehearsal else 1.0))
    return Settings(
        out=os.path.abspath(out),
        rehearsal=rehearsal,
        budget_s=float(os.environ.get("PREACT_FIRST_CONTACT_BUDGET_S", DEFAULT_BUDGET_S * scale)),
        started=float(os.environ.get("PREACT_FIRST_CONTACT_START", time.time())),
        scale=scale,
        python=sys.executable,
        scratch=tempfile.mkdtemp(prefix="preact_first_contact_"),
    )


def main() -> int:
    s = _settings()
    os.makedirs(s.out, exist_ok=True)
    log = Log(os.path.join(s.out, "first_contact.log"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    if s.rehearsal:
        env.setdefault("OMP_NUM_THREADS", "1")
    summary: dict[str, Any] = {
        "schema_version": 1,
        "label": REHEARSAL_LABEL if s.rehearsal else GPU_LABEL,
        "rehearsal": s.rehearsal,
        "command": "bash benchmarks/gpu_box/first_contact.sh"
        + (" (PREACT_REHEARSAL=1)" if s.rehearsal else ""),
        "environment": common.environment(),
        "source": common.read_json(os.path.join(REPO, SOURCE))
        if os.path.exists(os.path.join(REPO, SOURCE))
        else None,
        "budget_s": s.budget_s,
        "deadline_scale": s.scale,
        "phases": {},
        "figures": {},
        "complete": False,
    }
    path = os.path.join(s.out, "summary.json")
    log(f"first contact: {len(PHASES)} phases, budget {s.budget_s:.0f} s, out {s.out}"
        + (" [REHEARSAL on CPU]" if s.rehearsal else ""))  # fmt: skip
    stop_reason = None
    try:
        for phase in PHASES:
            timeout = min(phase.deadline_s * s.scale, s.remaining() - SUMMARY_RESERVE_S)
            if stop_reason:
                record = {"status": "skipped", "reason": stop_reason}
            elif timeout < MIN_PHASE_S:
                record = {"status": "skipped", "reason": f"the {s.budget_s:.0f} s budget is spent"}
            else:
                log(f"== {phase.name} (deadline {timeout:.0f} s)")
                start = time.perf_counter()
                try:
                    record = phase.run(s, env, timeout, log)
                except Exception as e:  # a phase's bug must not lose the others' results
                    record = {"status": "failed", "reason": f"driver: {e!r}"}
                record["deadline_s"] = round(timeout, 1)
                record["wall_s"] = round(time.perf_counter() - start, 1)
                if phase.name == "environment" and record["status"] != "ok":
                    stop_reason = f"environment: {record.get('reason')}"
            summary["phases"][phase.name] = record
            log(f"   {phase.name}: {record['status']} {record.get('reason', '')}".rstrip())
            summary["figures"] = figures(summary["phases"])
            common.write_json(path, summary)
        summary["complete"] = True
    finally:
        summary["wall_s"] = round(time.time() - s.started, 1)
        summary["out_problems"] = check_out(s.out)
        common.write_json(path, summary)
        shutil.rmtree(s.scratch, ignore_errors=True)
        statuses = {name: p["status"] for name, p in summary["phases"].items()}
        log(f"done in {summary['wall_s']:.0f} s: {json.dumps(statuses)}")
        if summary["out_problems"]:
            log(f"warning: $OUT exceeds the device's limits: {summary['out_problems']}")
        log.close()
    return 1 if stop_reason or "failed" in statuses.values() else 0


if __name__ == "__main__":
    sys.exit(main())
