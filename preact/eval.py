r"""Evaluate a trained workdir: ``python eval.py --config=configs/preact1001.py --workdir=DIR``.

Flags only; the work is ``preact.training.evaluate_workdir``: it restores the latest checkpoint
(or ``--step``), evaluates the whole test split (ImageNet: the 224 crop at s=256 and the 320
crop at s=320; see preact.evaluation), prints the result and writes
``<workdir>/eval_results.json`` with ``test_error`` (percent), ``num_examples``, ``step`` and the
``environment`` that evaluated it (package versions, JAX backend and device kind, git commit and
whether the tree was dirty; see preact.provenance).
Exit status 2 and one line on stderr for bad input, as for ``train.py``; ``--distributed`` as
there.
"""

from absl import flags
from ml_collections import config_flags

from preact import cli, xla_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "The training workdir.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
cli.define_distributed_flags()
flags.adopt_module_key_flags(cli)  # --helpshort lists them
flags.mark_flags_as_required(["config", "workdir"])


def main() -> None:
    config = cli.load_config(_CONFIG)
    cli.quiet_logging()
    xla_flags.apply_defaults()  # before JAX starts a backend: XLA reads them once
    cli.initialize_distributed()
    # Imported only now, so that a bad flag is reported without loading JAX.
    import jax

    from preact import training

    try:
        results = training.evaluate_workdir(config, _WORKDIR.value, _STEP.value)
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
