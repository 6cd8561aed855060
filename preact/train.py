r"""Train a network of the paper: ``python train.py --config=configs/preact1001.py --workdir=DIR``.

Flags only; the work is ``preact.training.train_and_evaluate``. Overrides: ``--config.x=y``
(typos are rejected). Run again with the same workdir to resume from its latest checkpoint.
Multi-host: start every process with ``--distributed`` (see the README).

Exit status: 0 when training finished; 143 (SIGTERM) or 130 (SIGINT) after a graceful stop that
wrote a checkpoint; 2 and one line on stderr for bad input (flags, config, data, workdir), with
nothing written; 3 when training diverged.
"""

import sys

from absl import flags
from ml_collections import config_flags

from preact import cli, xla_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and logs.")
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

    from preact import stopping, training

    try:
        result = training.train_and_evaluate(config, _WORKDIR.value)
    except training.BadInput as e:
        cli.fail(e)
    except stopping.Stopped as e:
        print(e, file=sys.stderr)
        sys.exit(e.exit_code)
    except training.DivergenceError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(cli.EXIT_DIVERGED)
    if jax.process_index() == 0:
        print(" ".join(_summary_field(k, v) for k, v in result.items()))


def _summary_field(name: str, value: object) -> str:
    """``name=value`` with the value's unit: errors in percent, throughput in images/s."""
    if isinstance(value, bool) or not isinstance(value, float):
        return f"{name}={value}"
    if name.endswith("_error"):
        return f"{name}={value:.2f}%"
    if name == "images_per_sec":
        return f"{name}={value:.1f}"
    return f"{name}={value:.4g}"


def console_main() -> None:
    """``python train.py``, ``python -m preact.train`` and the installed ``preact-train``."""
    cli.run(main)


if __name__ == "__main__":
    console_main()
