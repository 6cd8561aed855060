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


def run_variants(
    keys: Sequence[str],
    scale: Scale,
    root: str,
    *,
    base_config: str = BASE_CONFIG,
    log=print,
) -> dict[str, list[Result]]:
    """Train every variant for every seed (skipping runs already finished in ``root``).

    Runs of another ``base_config`` than the default go to their own directories: a finished run
    is reused only for the same base config and scale."""

    from preact import training

    results: dict[str, list[Result]] = {key: [] for key in keys}
    # Seed-major: an interrupted invocation leaves every variant with the same number of seeds
    # (and the next invocation reuses what is finished).
    for seed in range(scale.seeds):
        for key in keys:
            variant = VARIANTS[key]
            workdir = os.path.join(root, _run_dir(scale, base_config), key, f"seed{seed}")
            trained = False
            if not _finished(workdir, scale.steps):
                start = time.perf_counter()
                training.train_and_evaluate(variant.config(scale, seed, base_config), workdir)
                with open(os.path.join(workdir, RUN_RECORD), "w") as f:
                    json.dump({"seconds": time.perf_counter() - start}, f)
                trained = True
            result = dataclasses.replace(_result(key, seed, workdir), trained=trained)
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
