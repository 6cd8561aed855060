r"""Plot runs as the paper's Fig. 1, 3 and 6: ``python -m preact.plot WORKDIR... --out fig.png``.

Training loss dashed (left axis) and test error solid (right axis) against iterations, one
colour per run, named by each run's ``config.json`` experiment. Flags only; the drawing is
:func:`preact.plots.plot_runs`.

    python -m preact.plot /tmp/original1001 /tmp/preact1001 --out fig1.png --title "ResNet-1001"
"""

from absl import app, flags

from preact import plots

_OUT = flags.DEFINE_string("out", "curves.png", "PNG file to write.")
_TITLE = flags.DEFINE_string("title", None, "Figure title.")


def main(argv: list[str]) -> None:
    workdirs = argv[1:]
    if not workdirs:
        raise app.UsageError("give one or more workdirs (each with a metrics.jsonl)")
    plots.plot_runs(workdirs, title=_TITLE.value, out=_OUT.value)
    print(f"wrote {_OUT.value}")


if __name__ == "__main__":
    app.run(main)
