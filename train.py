r"""Train a network of the paper: ``python train.py --config=configs/preact1001.py --workdir=DIR``.

Flags only; the work is ``preact.training.train_and_evaluate``. Overrides: ``--config.x=y``
(typos are rejected). Run again with the same workdir to resume from its latest checkpoint.
Multi-host: start every process with ``--distributed`` (see the README).

Exit status: 0 when training finished; 143 (SIGTERM) or 130 (SIGINT) after a graceful stop that
wrote a checkpoint; 2 and one line on stderr for bad input (flags, config, data, workdir), with
nothing written; 3 when training diverged.
"""

from absl import flags

from preact import train

flags.adopt_module_key_flags(train)  # --helpshort lists the flags the module defines

if __name__ == "__main__":
    train.console_main()
