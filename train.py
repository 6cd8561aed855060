r"""Train a network of the paper: ``python train.py --config=configs/preact1001.py --workdir=DIR``.

Flags only; the work is ``preact.training.train_and_evaluate``. Overrides: ``--config.x=y``
(typos are rejected). Run again with the same workdir to resume from its latest checkpoint.

Exit status: 0 when training finished; 143 (SIGTERM) or 130 (SIGINT) after a graceful stop that
wrote a checkpoint; 2 for a bad config or input; 3 when training diverged.
"""

import logging
import sys

import jax
from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from preact import training

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and logs.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() first (multi-host runs)."
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax and JAX log every save at INFO
    logging.getLogger("jax").setLevel(logging.WARNING)
    if _DISTRIBUTED.value:
        jax.distributed.initialize()
    try:
        result = training.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except training.Stopped as e:
        print(e, file=sys.stderr)
        sys.exit(e.exit_code)
    except training.DivergenceError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in result.items()))  # fmt: skip


if __name__ == "__main__":
    app.run(main)
