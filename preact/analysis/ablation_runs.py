"""Running the ablations: one training run per variant and seed, each in its own workdir, a
finished run reused (see :mod:`preact.analysis.ablations`)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import time
from collections.abc import Sequence

from preact.analysis.ablation_catalog import BASE_CONFIG, VARIANTS, Scale

RUN_RECORD = "ablation_run.json"  # in each run's workdir: how long it trained


@dataclasses.dataclass
class Result:
    """One run's end point."""

    variant: str
    seed: int
    workdir: str
    test_error: float  # final, percent; inf if diverged or never evaluated
    train_loss: float  # last logged; inf if diverged
    diverged_step: int | None
    seconds: float | None  # wall time of training (None: not recorded)
    finished: str = ""  # when its metrics file was last written
    trained: bool = False  # by this invocation (False: found finished and reused)
    record: str = ""  # its record file, which keeps its curves when the workdir is gone

    def failed(self, fail_error: float) -> bool:
        return self.diverged_step is not None or not self.test_error <= fail_error


def _finished(workdir: str, steps: int) -> bool:
    from preact import metrics as metrics_lib

    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return False
    records = metrics_lib.read_metrics(path)
    return any(r.get("diverged") for r in records) or any(
        r["step"] == steps and "test_error" in r for r in records
    )


def _result(variant: str, seed: int, workdir: str) -> Result:
    from preact.analysis import curves

    run = curves.load_run(workdir)
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    finished = datetime.datetime.fromtimestamp(os.path.getmtime(metrics_path)).astimezone()
    try:
        with open(os.path.join(workdir, RUN_RECORD)) as f:
            seconds = json.load(f)["seconds"]
    except (OSError, ValueError, KeyError):
        seconds = None  # a run trained before the record existed
    diverged = run.diverged_step is not None
    error = run.final_test_error
    loss = run.final_train_loss
    return Result(
        variant=variant,
        seed=seed,
        workdir=workdir,
        test_error=math.inf if diverged or math.isnan(error) else error,
        train_loss=math.inf if diverged or math.isnan(loss) else loss,
        diverged_step=run.diverged_step,
        seconds=seconds,
        finished=finished.strftime("%Y-%m-%d %H:%M %Z"),
    )


def record_path(records: str, scale: Scale, base_config: str, variant: str, seed: int) -> str:
    """Where one run's record lives: ``records/<scale tag>/<variant>/seed<k>.json``."""
    return os.path.join(records, _run_dir(scale, base_config), variant, f"seed{seed}.json")


def read_record(path: str) -> Result:
    with open(path) as f:
        fields = json.load(f)["result"]
    names = {f.name for f in dataclasses.fields(Result)} - {"trained", "record"}
    return Result(**{k: v for k, v in fields.items() if k in names})  # not trained by this call


def write_record(path: str, result: Result, scale: Scale, base_config: str) -> None:
    """One finished run, written as it finishes (whole, then renamed): a study interrupted at any
    point keeps every run it finished, and a later sitting, on another machine too, skips them."""
    from preact import metrics as metrics_lib
    from preact import provenance

    record = {
        "result": dataclasses.asdict(result),
        # The curves (metrics.jsonl, a few dozen lines): the figures can be drawn without the run.
        "metrics": metrics_lib.read_metrics(os.path.join(result.workdir, "metrics.jsonl")),
        "base_config": base_config,
        "scale": dataclasses.asdict(scale),
        "config": VARIANTS[result.variant].config(scale, result.seed, base_config).to_dict(),
        "environment": provenance.environment(),
    }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1, default=str)
        f.write("\n")
    os.replace(tmp, path)


def run_variants(
    keys: Sequence[str],
    scale: Scale,
    root: str,
    *,
    base_config: str = BASE_CONFIG,
    records: str | None = None,
    log=print,
) -> dict[str, list[Result]]:
    """Train every variant for every seed, skipping runs already done: a run with a record in
    ``records`` (one small JSON file per run, meant to be committed) is not trained again, nor
    is one whose workdir in ``root`` has finished.

    Runs of another ``base_config`` than the default go to their own directories: a finished run
    is reused only for the same base config and scale."""

    from preact import training

    results: dict[str, list[Result]] = {key: [] for key in keys}
    # Seed-major: an interrupted invocation leaves every variant with the same number of seeds
    # (and the next invocation reuses what is finished).
    for seed in range(scale.seeds):
        for key in keys:
            variant = VARIANTS[key]
            path = records and record_path(records, scale, base_config, key, seed)
            if path and os.path.exists(path):
                result = dataclasses.replace(read_record(path), record=path)
                results[key].append(result)
                log(f"{key} seed {seed}: test error {result.test_error:.2f}% (recorded)")
                continue
            workdir = os.path.join(root, _run_dir(scale, base_config), key, f"seed{seed}")
            trained = False
            if not _finished(workdir, scale.steps):
                start = time.perf_counter()
                training.train_and_evaluate(variant.config(scale, seed, base_config), workdir)
                with open(os.path.join(workdir, RUN_RECORD), "w") as f:
                    json.dump({"seconds": time.perf_counter() - start}, f)
                trained = True
            result = dataclasses.replace(_result(key, seed, workdir), trained=trained)
            if path:
                result = dataclasses.replace(result, record=path)
                write_record(path, result, scale, base_config)
            results[key].append(result)
            took = f"{result.seconds:.0f}s" if trained else "reused"
            log(
                f"{key} seed {seed}: test error {result.test_error:.2f}%, train loss "
                f"{result.train_loss:.4f}{' DIVERGED' if result.diverged_step else ''} ({took})"
            )
    return results


def _run_dir(scale: Scale, base_config: str) -> str:
    if base_config == BASE_CONFIG:
        return scale.tag()
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in base_config)
    return f"{scale.tag()}_{safe}"


def load_curves(result: Result, name: str):
    """A run's curves: from its workdir, else from its record."""
    from preact.analysis import curves

    if os.path.exists(os.path.join(result.workdir, "metrics.jsonl")) or not result.record:
        return curves.load_run(result.workdir, name=name)
    with open(result.record) as f:
        metrics = json.load(f).get("metrics")
    return curves.run_from_metrics(metrics, name) if metrics else None  # None: not drawn


def records_from_table(table_json: str, records: str) -> list[str]:
    """Records for the runs of an ablation table JSON written before runs had records (their
    results, scale and environment, no curves); existing records are left alone."""
    with open(table_json) as f:
        table = json.load(f)
    scale = Scale(**{k: v for k, v in table["scale"].items() if k != "seeds"})
    names = {f.name for f in dataclasses.fields(Result)}
    written = []
    for key, summary in table["variants"].items():
        for run in summary["runs"]:
            result = Result(**{k: v for k, v in run.items() if k in names})
            path = record_path(records, scale, BASE_CONFIG, key, result.seed)
            if os.path.exists(path):
                continue
            record = {
                "result": dataclasses.asdict(dataclasses.replace(result, trained=False)),
                "metrics": None,  # the workdir is gone: only the end point survives
                "base_config": BASE_CONFIG,
                "scale": dataclasses.asdict(scale),
                "config": VARIANTS[key].config(scale, result.seed).to_dict(),
                "environment": table["environment"],
                "from_table": table_json,
            }
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                json.dump(record, f, indent=1, default=str)
                f.write("\n")
            written.append(path)
    return written
