"""Tools that look at networks and runs; the training core does not import them.

Each is a library module and a command (absl flags, as ``train.py`` and ``eval.py``):

- :mod:`preact.analysis.summary`: a network's layers by stage, its depth as the paper counts it
  and its parameter counts. ``python -m preact.analysis.summary --config=configs/preact1001.py``
- :mod:`preact.analysis.curves`: training loss and test error against iterations, drawn as the
  paper's Fig. 1, 3 and 6. ``python -m preact.analysis.curves WORKDIR... --out=fig.png``
- :mod:`preact.analysis.propagation`: the forward signal and the gradient at every residual unit
  (Eqs. 4-8). ``python -m preact.analysis.propagation --out=docs/propagation.png``
- :mod:`preact.analysis.ablations`: Tables 1-3 re-run at a reduced scale on offline data.
  ``python -m preact.analysis.ablations --table=1,2,3 --out=docs/``; its parts are the
  experiment catalogue (``ablation_catalog``), the runner (``ablation_runs``) and the report
  (``ablation_report``).
- :mod:`preact.analysis.claims`: the fail/learn claims of Tables 1-3 judged from the ablation
  runs' records by a one-sided Fisher exact test. ``python -m preact.analysis.claims --runs=DIR``
- :mod:`preact.analysis.record_runs`: one config trained for several seeds, each run timed and
  recorded as it ends (the results files under ``results/``).
  ``python -m preact.analysis.record_runs --config=FILE --seeds=0,1 --out=results/x.json``

A tool that takes a config takes it as ``train.py`` does (``--config=NAME_OR_PATH[:ARG]`` and
``--config.FIELD=VALUE``), or, for several at once, each as one string of those words
(:func:`preact.cli.config_from_spec`).

The absl commands' flags are defined by its ``define_flags(flag_values)`` when it runs as a
command, not when it is imported, so the modules can be imported side by side (and next to
``train.py``'s flags) without two definitions of ``--out`` clashing; ``claims`` and
``record_runs`` take plain argparse flags (they build no config themselves).
"""
