r"""Train one config for several seeds and record each run as it ends: a results file that holds up.

    python -m preact.analysis.record_runs --config=configs/fashion_mnist_laptop.py \
        --seeds=0,1 --out=results/fashion_mnist_laptop.json

For each seed, in order: ``python train.py`` then ``python eval.py`` (this interpreter, the
repository's own entry points, ``--config.seed=<k>``) in a fresh ``<workdir_root>/seed<k>``; the
training command's wall-clock time is measured around the whole process (start-up, compiling and
the evaluations during training included: what a user waits for). When both have exited 0, the
run is appended to ``--out`` at once, so a study stopped half-way keeps what finished and a
second call trains only the seeds not yet recorded. A record::

    {"what": ..., "config": ..., "runs": [{"seed", "test_error", "test_loss",
      "train_wall_clock_s", "eval_wall_clock_s", "load_average_at_end", "command", "date_utc",
      "environment",
      "curves": {"step", "train_loss", "train_error", "learning_rate", "images_per_sec",
                 "test_step", "test_error"}}]}

``environment`` is :func:`preact.provenance.environment` of this process (package versions,
backend, CPU count and model, git commit) plus the XLA and thread variables of the environment:
CPU figures differ several-fold between machines and library versions. A workdir that already
exists is refused (exit 2): a resumed run would time only its second half.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from typing import Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV_VARIABLES = ("XLA_FLAGS", "OMP_NUM_THREADS", "JAX_PLATFORMS", "TF_CPP_MIN_LOG_LEVEL")
CURVE_FIELDS = ("train_loss", "train_error", "learning_rate")


def parse_seeds(text: str) -> list[int]:
    """``"0,1"`` -> [0, 1]: the seeds themselves, each once, never a count."""
    try:
        values = [int(s) for s in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 0 or len(set(values)) != len(values):
        raise ValueError(f"--seeds={text!r}: distinct seeds, comma-separated (0,1)")
    return values


def load(path: str) -> dict[str, Any]:
    if not os.path.exists(path):
        return {"runs": []}
    with open(path) as f:
        return json.load(f)


def write(path: str, record: dict[str, Any]) -> None:
    """Atomically (:func:`preact.workdir.write_atomic`): a kill never leaves half a file."""
    from preact.workdir import write_atomic

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomic(path, json.dumps(record, indent=1) + "\n")


def curves(workdir: str) -> dict[str, list[float]]:
    """The logged training curves and the test error during training, from metrics.jsonl."""
    out: dict[str, list[float]] = {"step": [], **{k: [] for k in CURVE_FIELDS}}
    out.update(images_per_sec=[], test_step=[], test_error=[])
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if all(k in row for k in CURVE_FIELDS):
                out["step"].append(row["step"])
                for k in CURVE_FIELDS:
                    out[k].append(round(float(row[k]), 5))
                # The training rate as logged: a CPU run's minutes depend on it, and a machine
                # that slows through a day shows here. None where a row has no rate.
                rate = row.get("images_per_sec")
                out["images_per_sec"].append(None if rate is None else round(float(rate), 1))
            if "test_error" in row:
                out["test_step"].append(row["step"])
                out["test_error"].append(round(float(row["test_error"]), 3))
    return out


def _timed(cmd: list[str], log_path: str) -> float:
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}; see {log_path}")
    return seconds


def run_seed(config: str, seed: int, workdir: str, overrides: list[str]) -> dict[str, Any]:
    from preact import provenance

    flags = [f"--config={config}", f"--workdir={workdir}", f"--config.seed={seed}", *overrides]
    train = [sys.executable, "train.py", *flags, "--config.progress_bar=False"]
    evaluate = [sys.executable, "eval.py", *flags]
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    environment = provenance.environment()  # now, while the checkout is the code that runs
    environment["env"] = {name: os.environ.get(name) for name in ENV_VARIABLES}
    os.makedirs(workdir)
    train_s = _timed(train, os.path.join(workdir, "train.log"))
    load = os.getloadavg()
    eval_s = _timed(evaluate, os.path.join(workdir, "eval.log"))
    with open(os.path.join(workdir, "eval_results.json")) as f:
        result = json.load(f)
    # The flags train.py's backend read, as it wrote them: this process's provenance is cached
    # from its first call and may predate a change to XLA_FLAGS.
    with open(os.path.join(workdir, "config.json")) as f:
        trained_env = json.load(f).get("environment", {})
    environment["xla_flags"] = trained_env.get("xla_flags", environment.get("xla_flags"))
    shown = ["python", *train[1:]]
    return {
        "seed": seed,
        "test_error": round(float(result["test_error"]), 3),
        "test_loss": round(float(result["test_loss"]), 5),
        "step": result.get("step"),
        "train_wall_clock_s": round(train_s, 1),
        "eval_wall_clock_s": round(eval_s, 1),
        # Another job on the same cores slows a CPU run: the 1/5/15-minute load averages as
        # training ended say whether the cores were shared (2 cores: about 2 = this run alone).
        "load_average_at_end": [round(x, 2) for x in load],
        "command": " ".join(shown),
        "date_utc": date,
        "environment": environment,
        "curves": curves(workdir),
    }


def main(argv: list[str] | None = None) -> int:
    from preact import xla_flags

    # The children inherit this process's XLA_FLAGS, so the record's environment names the
    # settings train.py runs with (train.py keeps a value already set).
    xla_flags.apply_defaults()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a config file, e.g. configs/x.py")
    parser.add_argument("--seeds", default="0,1", help="the seeds, comma-separated")
    parser.add_argument("--out", required=True, help="the results JSON (appended to)")
    parser.add_argument("--workdir_root", default="/tmp/preact_record_runs")
    parser.add_argument(
        "--override", action="append", default=[], help="a --config.FIELD=VALUE flag, repeatable"
    )
    args = parser.parse_args(argv)
    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as e:
        print(f"record_runs: {e}", file=sys.stderr)
        return 2
    config_path = args.config.split(":", 1)[0]
    if not os.path.isfile(os.path.join(REPO_ROOT, config_path)):
        print(f"record_runs: no config file {config_path!r}", file=sys.stderr)
        return 2
    bad = [o for o in args.override if not o.startswith("--config.") or "=" not in o]
    if bad:
        print(f"record_runs: --override {bad[0]!r} is not --config.FIELD=VALUE", file=sys.stderr)
        return 2
    record = load(args.out)
    done = {r["seed"] for r in record["runs"] if r.get("config") == args.config}
    name = os.path.splitext(os.path.basename(config_path))[0]
    todo = [s for s in seeds if s not in done]
    for seed in todo:
        workdir = os.path.join(args.workdir_root, name, f"seed{seed}")
        if os.path.exists(workdir):
            msg = f"record_runs: {workdir} exists: remove it or pick another --workdir_root"
            print(msg, file=sys.stderr)
            return 2
    for seed in seeds:
        if seed in done:
            print(f"seed {seed}: recorded already, skipped")
            continue
        workdir = os.path.join(args.workdir_root, name, f"seed{seed}")
        print(f"seed {seed}: training in {workdir} ...", flush=True)
        run = {"config": args.config, "overrides": args.override}
        run.update(run_seed(args.config, seed, workdir, args.override))
        record = load(args.out)  # another sitting may have written meanwhile
        record.setdefault("what", f"{args.config}: one run per seed, trained and evaluated")
        record["runs"].append(run)
        write(args.out, record)
        print(
            f"seed {seed}: test error {run['test_error']:.2f}% after "
            f"{run['train_wall_clock_s']:.0f} s of training; recorded in {args.out}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
