r"""Evaluate a trained workdir: ``python eval.py --config=configs/preact1001.py --workdir=DIR``.

Restores the latest checkpoint (or ``--step``), evaluates the whole test split (ImageNet: the
224 crop at s=256 and the 320 crop at s=320), prints the result and writes
``<workdir>/eval_results.json`` with ``test_error`` (percent), ``num_examples``, ``step`` and the
``environment`` that evaluated it (package versions, JAX backend and device kind, git commit and
whether the tree was dirty; see preact.provenance).
Exit status 2 and one line on stderr for bad input, as for ``train.py``; ``--distributed`` as
there.
"""

import os

from absl import flags
from ml_collections import config_flags

from preact import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "The training workdir.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
cli.define_distributed_flags()
flags.adopt_module_key_flags(cli)  # --helpshort lists them
flags.mark_flags_as_required(["config", "workdir"])


def run(config, workdir: str, step: int | None = None) -> dict:
    import jax  # imported here: a bad flag is reported without loading JAX

    from preact import data, provenance, training
    from preact import workdir as workdir_lib

    training.check_config(config)
    with training.bad_input():
        workdir_lib.check_readable(workdir)
        workdir_lib.check_writable(workdir, "eval.py writes eval_results.json there")
    # The checkpoint next: a missing or foreign one is reported before any data is read.
    state, restored_step, model = training.restore_for_eval(config, workdir, step)
    with training.bad_input():
        pipeline = data.make_pipeline(config)
    state = training.replicate(state)
    p_eval_step = training.make_eval_step(config)
    results: dict = {"step": restored_step, "experiment": config.experiment}
    for i, name in enumerate(pipeline.eval_names):
        r = training.evaluate(p_eval_step, state, pipeline.eval_batches(name))
        if i == 0:
            results.update(test_error=r["error"], test_loss=r["loss"],
                           num_examples=r["num_examples"])  # fmt: skip
            if model.num_classes >= 100:
                results["test_top5_error"] = r["top5_error"]
        if len(pipeline.eval_names) > 1:
            results[name] = {k: r[k] for k in ("error", "top5_error", "loss", "num_examples")}
    results["environment"] = provenance.environment()
    if jax.process_index() == 0:
        workdir_lib.write_json(os.path.join(workdir, "eval_results.json"), results)
    return results


def main() -> None:
    config = cli.load_config(_CONFIG)
    cli.quiet_logging()
    cli.initialize_distributed()
    import jax

    from preact import training

    try:
        results = run(config, _WORKDIR.value, _STEP.value)
    except training.BadInput as e:
        cli.fail(e)
    if jax.process_index() == 0:
        print(f"step {results['step']}: test_error {results['test_error']:.2f}% "
              f"on {results['num_examples']} examples")  # fmt: skip
        for name, r in results.items():
            if not (isinstance(r, dict) and "error" in r):
                continue  # the environment
            print(f"  {name}: error {r['error']:.2f}%, top-5 {r['top5_error']:.2f}% "
                  f"on {r['num_examples']} examples")  # fmt: skip


def console_main() -> None:
    """``python eval.py``, ``python -m preact.eval`` and the installed ``preact-eval``."""
    cli.run(main)


if __name__ == "__main__":
    console_main()
