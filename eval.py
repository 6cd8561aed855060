r"""Evaluate a trained workdir: ``python eval.py --config=configs/preact1001.py --workdir=DIR``.

The command is ``preact.eval`` (flags, exit statuses); this script only runs it.
"""

from absl import flags

from preact import eval

flags.adopt_module_key_flags(eval)  # --helpshort lists the flags the module defines

if __name__ == "__main__":
    eval.console_main()
