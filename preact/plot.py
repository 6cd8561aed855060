r"""Plot runs as the paper's Fig. 1, 3 and 6: ``python -m preact.plot WORKDIR... [--out fig.png]``.

Training loss dashed (left axis) and test error solid (right axis) against iterations, one
colour per run, named by each run's ``config.json`` experiment. Without ``--out`` the figure goes
to ``curves.png`` in the (first) workdir given, next to the ``metrics.jsonl`` it was drawn from.
Flags only; the drawing is :func:`preact.plots.plot_runs`.

    python -m preact.plot /tmp/original1001 /tmp/preact1001 --out fig1.png --title "ResNet-1001"
"""

import os

from absl import app, flags

from preact import plots

DEFAULT_NAME = "curves.png"

_OUT = flags.DEFINE_string(
    "out", None, f"PNG file to write; default <first WORKDIR>/{DEFAULT_NAME}."
)
_TITLE = flags.DEFINE_string("title", None, "Figure title.")


def default_out(workdirs: list[str]) -> str:
    """``<first workdir>/curves.png``: the figure stays with the run it was drawn from."""
    return os.path.join(workdirs[0], DEFAULT_NAME)


def main(argv: list[str]) -> None:
    workdirs = argv[1:]
    if not workdirs:
        raise app.UsageError("give one or more workdirs (each with a metrics.jsonl)")
    out = _OUT.value or default_out(workdirs)
    plots.plot_runs(workdirs, title=_TITLE.value, out=out)
    print(f"wrote {out}")


if __name__ == "__main__":
    app.run(main)
