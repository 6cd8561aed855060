"""Evaluation on whole test splits, and the names its results are logged and written under.

Every example of a split counts once (the last batch is padded and masked, as big_vision does),
so the result is the paper's metric: top-1 error in percent over the 10,000 CIFAR test images,
and for ImageNet (Table 5) the top-1 and top-5 error of each single-crop evaluation
(``pipeline.eval_names``: the 224 crop at s=256, the 320 crop at s=320). The training loop logs
:func:`log_scalars` to ``metrics.jsonl``; ``eval.py`` writes :func:`eval_record` to
``eval_results.json``. Both are made here, from the same per-split results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax

# Heads this wide report top-5 error as well (ImageNet's 1000 classes, CIFAR-100's 100).
TOP5_MIN_CLASSES = 100


def evaluate(
    p_eval_step: Callable[..., Any], state: Any, batches: Iterator[dict[str, Any]]
) -> dict[str, float]:
    """Loss and error (percent) over every example of an eval split, each counted once."""
    totals: dict[str, float] = {}
    for batch in batches:
        sums = jax.device_get(p_eval_step(state, batch))
        for k, v in sums.items():
            totals[k] = totals.get(k, 0.0) + float(v)
    count = totals.get("count", 0.0)
    if count == 0:
        raise ValueError("the eval split produced no examples")
    return {
        "loss": totals["loss"] / count,
        "error": 100.0 * totals["errors"] / count,
        "top5_error": 100.0 * totals["top5_errors"] / count,
        "num_examples": int(round(count)),
    }


def evaluate_splits(
    p_eval_step: Callable[..., Any], state: Any, pipeline: Any
) -> dict[str, dict[str, float]]:
    """:func:`evaluate` on each of the pipeline's evaluations, by name, the main one first."""
    return {
        name: evaluate(p_eval_step, state, pipeline.eval_batches(name))
        for name in pipeline.eval_names
    }


def log_scalars(results: dict[str, dict[str, float]], num_classes: int) -> dict[str, float]:
    """The scalars a training run logs: ``test_loss``, ``test_error`` (and ``test_top5_error``
    for wide heads) of the main evaluation, ``<name>_loss``, ``<name>_error`` ... of the others;
    the main one is also logged under its own name (``test_224_error``)."""
    out: dict[str, float] = {}
    main = next(iter(results))
    for name, result in results.items():
        prefix = "test" if name == main else name
        out[f"{prefix}_loss"] = result["loss"]
        out[f"{prefix}_error"] = result["error"]
        if num_classes >= TOP5_MIN_CLASSES:
            out[f"{prefix}_top5_error"] = result["top5_error"]
        if name != "test" and prefix == "test":
            out[f"{name}_error"] = result["error"]
    return out


def eval_record(
    results: dict[str, dict[str, float]], num_classes: int, *, step: int, experiment: str
) -> dict[str, Any]:
    """What ``eval_results.json`` holds (less the environment): the main evaluation's
    ``test_error``, ``test_loss`` and ``num_examples`` (and ``test_top5_error`` for wide heads),
    and each evaluation under its own name when there are several (ImageNet's two crops)."""
    record: dict[str, Any] = {"step": step, "experiment": experiment}
    main = results[next(iter(results))]
    record.update(test_error=main["error"], test_loss=main["loss"],
                  num_examples=main["num_examples"])  # fmt: skip
    if num_classes >= TOP5_MIN_CLASSES:
        record["test_top5_error"] = main["top5_error"]
    if len(results) > 1:
        for name, r in results.items():
            record[name] = {k: r[k] for k in ("error", "top5_error", "loss", "num_examples")}
    return record
