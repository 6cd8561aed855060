r"""Evaluate a trained workdir: ``python eval.py --config=configs/preact1001.py --workdir=DIR``.

Restores the latest checkpoint (or ``--step``), evaluates the whole test split (ImageNet: the
224 crop at s=256 and the 320 crop at s=320), prints the result and writes
``<workdir>/eval_results.json`` with ``test_error`` (percent), ``num_examples``, ``step`` and the
``environment`` that evaluated it (package versions, JAX backend and device kind, git commit and
whether the tree was dirty; see preact.provenance).
Exit status 2 and one line on stderr for bad input, as for ``train.py``; ``--distributed`` as
there.
"""

from absl import flags

from preact import eval

flags.adopt_module_key_flags(eval)  # --helpshort lists the flags the module defines

if __name__ == "__main__":
    eval.console_main()
