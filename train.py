r"""Train a network of the paper: ``python train.py --config=configs/preact1001.py --workdir=DIR``.

The command is ``preact.train`` (flags, exit statuses); this script only runs it.
"""

from absl import flags

from preact import train

flags.adopt_module_key_flags(train)  # --helpshort lists the flags the module defines

if __name__ == "__main__":
    train.console_main()
