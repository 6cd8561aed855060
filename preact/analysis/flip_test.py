r"""Test error with flip-averaged predictions, beside the single view the results report.

    python -m preact.analysis.flip_test --config=configs/fashion_mnist_laptop.py WORKDIR ... \
        [--override=--config.FIELD=VALUE ...] [--out=FILE.json]

For each workdir: its latest checkpoint, the whole test split, and two errors (percent) of the
same network: the single view (what ``eval.py`` reports and every results table quotes, the
paper's metric) and the prediction averaged over the image and its horizontal mirror (the mean
of the two softmax outputs). Averaging views is a test-time procedure, not a better network: it
costs a second forward pass per image, and a figure made with it is named as such. It is
measured here only for datasets whose classes are mirror-invariant (Fashion-MNIST, CIFAR), the
same condition under which training flips.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from preact import cli, data, provenance, reductions, training


def flip_eval_step(state: Any, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Sums over this device's (padded) share: single-view errors and flip-averaged errors."""

    def probabilities(images: jax.Array) -> jax.Array:
        logits = state.apply_fn(
            {"params": state.params, "batch_stats": state.batch_stats}, images, train=False
        )
        return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

    images, labels, mask = batch["image"], batch["label"], batch["mask"]
    single = probabilities(images)
    mirrored = probabilities(images[:, :, ::-1, :])  # NHWC: axis 2 is the width
    sums = {
        "single_view_errors": jnp.sum((jnp.argmax(single, -1) != labels) * mask),
        "flip_averaged_errors": jnp.sum((jnp.argmax(single + mirrored, -1) != labels) * mask),
        "count": jnp.sum(mask),
    }
    return reductions.psum(sums, training.AXIS)


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Both errors of a workdir's latest checkpoint on the whole test split."""
    state, step, _ = training.restore_for_eval(config, workdir)
    pipeline = data.make_pipeline(config)
    p_step = training.parallel(flip_eval_step)
    state = training.replicate(state)
    totals: dict[str, float] = {}
    for batch in pipeline.eval_batches():
        for k, v in jax.device_get(p_step(state, batch)).items():
            totals[k] = totals.get(k, 0.0) + float(v)
    count = totals["count"]
    return {
        "workdir": workdir,
        "step": step,
        "num_examples": int(round(count)),
        "single_view_error": 100.0 * totals["single_view_errors"] / count,
        "flip_averaged_error": 100.0 * totals["flip_averaged_errors"] / count,
    }


def load_config(name_or_path: str, overrides: list[str]) -> ml_collections.ConfigDict:
    """A config (a name or a file) with ``--config.FIELD=VALUE`` overrides, read as ``train.py``
    reads them (:func:`preact.cli.config_from_spec`; ValueError with its message)."""
    return cli.config_from_spec(shlex.join([name_or_path, *overrides]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("workdirs", nargs="+")
    parser.add_argument("--config", required=True)
    parser.add_argument("--override", action="append", default=[])
    parser.add_argument("--out", help="a JSON file for the results (written whole)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.override)
    except ValueError as e:
        print(f"flip_test: {e}", file=sys.stderr)
        return 2
    if not config.get("random_flip", False):
        print(f"flip_test: {args.config} does not train with flips (random_flip is off): its "
              "classes need not be mirror-invariant", file=sys.stderr)  # fmt: skip
        return 2
    try:
        rows = [evaluate(config, w) for w in args.workdirs]
    except training.BadInput as e:
        print(f"flip_test: {e}", file=sys.stderr)
        return 2
    for r in rows:
        single, averaged = r["single_view_error"], r["flip_averaged_error"]
        print(f"{r['workdir']}: step {r['step']}, single view {single:.2f}%, "
              f"flip-averaged {averaged:.2f}% on {r['num_examples']} images")  # fmt: skip
    if args.out:
        record = {
            "what": "test error of each workdir's latest checkpoint: single view and "
            "flip-averaged (mean of the softmax of the image and its mirror)",
            "command": " ".join(["python -m preact.analysis.flip_test", *argv]),
            "config": args.config,
            "overrides": args.override,
            "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "environment": provenance.environment(),
            "runs": rows,
        }
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
