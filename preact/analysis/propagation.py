r"""Signal propagation through the residual units, measured (§2-3, Eqs. 4-8; no data needed).

With identity shortcuts and identity after-addition activations, any deeper unit's input is the
shallower one's plus a sum of residuals, ``x_L = x_l + sum_{i=l}^{L-1} F(x_i)`` (Eq. 4), and the
gradient reaches every shallower unit directly, ``dE/dx_l = dE/dx_L (1 + d/dx_l sum F)``
(Eq. 5). A shortcut that scales by lambda multiplies that direct term by ``prod lambda_i``
(Eqs. 6-8), which vanishes or explodes with depth. This module measures both quantities unit by
unit, on a random batch, for any network of the zoo, at initialization or from a checkpoint:

* forward: the root-mean-square of ``x_l`` (over batch, positions and channels), l = 1 .. L+1,
  where ``x_1`` is the first unit's input (the stem's output) and ``x_{l+1}`` unit l's output;
* backward: the root-mean-square of ``dE/dx_l`` at the same tensors.

Root-mean-square rather than the total norm, so the three stages (whose tensors differ in size)
are on one scale; the dimension-changing units (two per CIFAR net, footnote 1) still show as
steps: zero-padding adds empty channels and subsampling drops 3/4 of the positions.

E is the mean softmax cross-entropy against random labels: the loss training sees, with a
bounded gradient at the logits (softmax - one-hot over the batch), so the backward curves show
what the network does to a gradient of fixed size.

BatchNorm uses **batch statistics** (``--bn=batch``, the default) as on the first training
step: at initialization the running statistics are 0/1, so with ``--bn=running`` every BN is the
identity and the un-normalized branches make the original units' signal grow by about 2x per unit
(He init), which is an artefact of the missing normalization, not the shortcut's. For a trained
checkpoint ``--bn=running`` measures the network as it is evaluated.

How per-unit tensors are reached without touching the model code: the network is built unrolled
(``scan=False``; a scanned stage hides its units inside one ``lax.scan``) and every
:class:`preact.units.ResidualUnit` call is wrapped with ``flax.linen.intercept_methods``. The
wrapper records the unit's output and adds a zero "perturbation" to it; the gradient of E with
respect to those zeros is exactly ``dE/dx_l``.

    python -m preact.analysis.propagation --out=docs/propagation.png   # the paper's 8 networks
    python -m preact.analysis.propagation --configs=configs/preact110.py,configs/original110.py \
        --workdirs=/tmp/preact110,/tmp/original110 --bn=running --out=trained.png

A config entry is a config and its overrides as ``train.py`` takes them, in one string
(:func:`preact.cli.config_from_spec`), e.g. ``original110 --config.model.depth=56`` or
``configs/original110.py --config.model.unit_options="{'shortcut_variant': 'constant_scaling',
'shortcut_scale': 0.5}"``; entries are separated by commas outside brackets and quotes.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shlex
import time
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import app, flags

from preact import cli, experiment, networks, provenance, units, xla_flags
from preact.data import datasets

BN_MODES = ("batch", "running")
JIT_MAX_UNITS = 60  # see unit_signals

# The networks of the paper's argument: original vs full pre-activation at three depths (Table 3,
# Fig. 1), and on ResNet-110 the two Table 1 shortcuts that scale the signal: constant scaling
# lambda = 0.5 (F not scaled; "fail") and exclusive gating with b_g = -6 (8.70%).
PAPER_NETWORKS = (
    ("configs/original110.py", "original-110"),
    ("configs/preact110.py", "pre-act-110"),
    (
        "configs/original110.py --config.model.unit_options=\"{'shortcut_variant': "
        "'constant_scaling', 'shortcut_scale': 0.5}\"",
        "original-110, lambda=0.5",
    ),
    (
        "configs/original110.py --config.model.unit_options=\"{'shortcut_variant': "
        "'exclusive_gating', 'gate_bias': -6.0}\"",
        "original-110, exclusive gating b_g=-6",
    ),
    ("configs/original164.py", "original-164"),
    ("configs/preact164.py", "pre-act-164"),
    ("configs/original1001.py", "original-1001"),
    ("configs/preact1001.py", "pre-act-1001"),
)


@dataclasses.dataclass(frozen=True)
class Signals:
    """The tensors ``x_l`` and ``dE/dx_l``, l = 1 .. L+1, of one batch."""

    xs: list[jax.Array]
    grads: list[jax.Array]
    units: list[str]  # the unit whose output is x_{l+1}; "stem" for x_1
    non_identity: list[bool]  # whether that unit's shortcut h is not the identity
    loss: float


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Root-mean-square of ``x_l`` and ``dE/dx_l`` per unit index, for plotting and JSON."""

    name: str
    depth: int
    forward: np.ndarray
    backward: np.ndarray
    units: list[str]
    non_identity: list[bool]
    loss: float
    bn: str
    source: str  # "init" or the checkpoint's workdir and step

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["forward"] = [float(v) for v in self.forward]
        out["backward"] = [float(v) for v in self.backward]
        return out


def _interceptor(perturbations: Sequence[jax.Array] | None, record: dict[str, list]):
    """Record each residual unit's output (and the first unit's input), adding a perturbation."""

    def intercept(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name != "__call__" or not isinstance(module, units.ResidualUnit):
            return next_fun(*args, **kwargs)
        x, *rest = args
        if not record["xs"]:  # x_1: the stem's output, the first unit's input
            if perturbations is not None:
                x = x + perturbations[0]
            record["xs"].append(x)
            record["units"].append("stem")
            record["non_identity"].append(False)
        y = next_fun(x, *rest, **kwargs)
        if perturbations is not None:
            y = y + perturbations[len(record["xs"])]
        record["xs"].append(y)
        record["units"].append("/".join(module.path))
        # h is not the identity on x_l: a dimension-changing unit (footnote 1), or a pre-act unit
        # whose shortcut reads the shared pre-activation (the first unit after conv1, Appendix).
        shared = getattr(module, "shared_preact", False) and getattr(module, "preactivate", True)
        record["non_identity"].append(module.shortcut != "identity" or shared)
        return y

    return intercept


def _forward(model, train, perturbations, variables, images, labels):
    record: dict[str, list] = {"xs": [], "units": [], "non_identity": []}
    with nn.intercept_methods(_interceptor(perturbations, record)):
        # Batch statistics are computed but not kept: the measurement must not change the
        # variables it measures.
        logits, _ = model.apply(
            variables,
            images,
            train=train,
            mutable=["batch_stats"],
            rngs={"dropout": jax.random.key(0)},
        )
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, record


def _signals(model, train, zeros, variables, images, labels):
    def loss_fn(perturbations):
        loss, record = _forward(model, train, perturbations, variables, images, labels)
        return loss, record["xs"]

    (loss, xs), grads = jax.value_and_grad(loss_fn, has_aux=True)(zeros)
    return loss, xs, grads


# Flax modules hash by their fields: one compilation per network, reused across calls.
_signals_jit = jax.jit(_signals, static_argnums=(0, 1))


def unit_signals(
    model: networks.ResNet,
    variables: Mapping[str, Any],
    images: jax.Array,
    labels: jax.Array,
    *,
    bn: str = "batch",
    jit: bool | None = None,
) -> Signals:
    """``x_l`` and ``dE/dx_l`` at every residual unit of an unrolled (``scan=False``) model.

    ``jit=None`` compiles the whole forward-backward pass for nets of up to
    :data:`JIT_MAX_UNITS` units and runs deeper ones op by op. Compiling grows with the unrolled
    graph (about 10 s for ResNet-110's 54 units on 2 shared CPU cores), while op-by-op execution
    compiles each distinct op once and reuses it for every identical unit: ResNet-1001's 333
    units are measured in 25-45 s that way.
    """
    if model.scan:
        raise ValueError("build the model with scan=False: a scanned stage hides its units")
    if bn not in BN_MODES:
        raise ValueError(f"unknown bn {bn!r}; valid: {BN_MODES}")
    train = bn == "batch"
    meta: dict[str, list] = {}

    def trace_shapes():
        _, record = _forward(model, train, None, variables, images, labels)
        meta.update(units=record["units"], non_identity=record["non_identity"])
        return record["xs"]

    shapes = jax.eval_shape(trace_shapes)  # also names the units, at trace time
    if jit is None:
        jit = len(shapes) - 1 <= JIT_MAX_UNITS
    zeros = [jnp.zeros(s.shape, s.dtype) for s in shapes]
    loss, xs, grads = (_signals_jit if jit else _signals)(
        model, train, zeros, variables, images, labels
    )
    return Signals(
        xs=list(xs),
        grads=list(grads),
        units=meta["units"],
        non_identity=meta["non_identity"],
        loss=float(loss),
    )


def rms(x: jax.Array) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean(np.square(x))))


def measure(
    model: networks.ResNet,
    variables: Mapping[str, Any],
    images: jax.Array,
    labels: jax.Array,
    *,
    name: str,
    bn: str = "batch",
    source: str = "init",
) -> Measurement:
    signals = unit_signals(model, variables, images, labels, bn=bn)
    return Measurement(
        name=name,
        depth=model.paper_depth(),
        forward=np.array([rms(x) for x in signals.xs]),
        backward=np.array([rms(g) for g in signals.grads]),
        units=signals.units,
        non_identity=signals.non_identity,
        loss=signals.loss,
        bn=bn,
        source=source,
    )


def load_config(spec: str) -> tuple[ml_collections.ConfigDict, str]:
    """``NAME_OR_PATH[:ARG] [--config.FIELD=VALUE ...]`` (:func:`preact.cli.config_from_spec`,
    the overrides of ``train.py``) -> (config, a label naming the overrides)."""
    config = cli.config_from_spec(spec)
    path = shlex.split(spec)[0].split(":", 1)[0]
    label = config.get("experiment", os.path.splitext(os.path.basename(path))[0])
    overrides = cli.override_label(spec)
    return config, f"{label} ({overrides})" if overrides else label


def measure_config(
    config: ml_collections.ConfigDict,
    *,
    name: str,
    workdir: str | None = None,
    batch_size: int = 8,
    image_size: int | None = None,
    bn: str = "batch",
    seed: int = 0,
) -> Measurement:
    """Build ``config``'s network unrolled, initialize it (or restore ``workdir``'s latest
    checkpoint) and measure it on ``batch_size`` N(0, 1) images with random labels."""
    info = datasets.dataset_info(config)
    unrolled = config.copy_and_resolve_references()
    unrolled.model.scan = False
    unrolled.model.remat = False
    model = experiment.build_model(unrolled)
    height, width, channels = info.image_shape
    if image_size is not None:
        height = width = image_size
    # The "rbg" generator draws the same distributions (He-normal init, N(0, 1) images) as the
    # default threefry, whose XLA:CPU compilation takes over a second per parameter shape.
    image_key, label_key, init_key = jax.random.split(jax.random.key(seed, impl="rbg"), 3)
    images = jax.random.normal(image_key, (batch_size, height, width, channels))
    labels = jax.random.randint(label_key, (batch_size,), 0, info.num_classes)
    if workdir:
        from preact import training  # the checkpoint stack is only needed here

        state, step, _ = training.restore_for_eval(config, workdir)
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        if config.model.scan:
            variables = networks.unscan_variables(variables)
        source = f"{workdir} (step {step})"
    else:
        variables = model.init({"params": init_key, "dropout": init_key}, images[:1], train=False)
        source = "init"
    return measure(model, variables, images, labels, name=name, bn=bn, source=source)


def plot(measurements: Sequence[Measurement], *, out: str | None = None, title: str | None = None):
    """Forward (top) and backward (bottom) RMS against unit index, one column per depth."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    depths = sorted({m.depth for m in measurements})
    fig = Figure(figsize=(5.0 * len(depths), 7.5), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(depths), squeeze=False)
    for col, depth in enumerate(depths):
        # Colours by order within a column, so "original" and "pre-act" (listed in the same
        # order at every depth) keep their colours from column to column.
        column = [m for m in measurements if m.depth == depth]
        palette = {m.name: f"C{i % 10}" for i, m in enumerate(column)}
        for m in column:
            index = np.arange(1, len(m.forward) + 1)
            for row, values in enumerate((m.forward, m.backward)):
                ax = axes[row][col]
                (line,) = ax.plot(index, values, color=palette[m.name], label=m.name, lw=1.3)
                line.set_gid(f"{m.name}/{('forward', 'backward')[row]}")
                # Units where h is not the identity: dimension changes (footnote 1) and the
                # shared pre-activation of pre-act nets.
                steps = [i + 1 for i, c in enumerate(m.non_identity) if c]
                ax.plot(
                    steps, values[np.array(steps, dtype=int) - 1], "o", ms=3, color=palette[m.name]
                )
        axes[0][col].set_title(f"{depth} layers")
        axes[0][col].set_ylabel("RMS of $x_l$ (forward)")
        axes[1][col].set_ylabel(r"RMS of $\partial E/\partial x_l$ (backward)")
        axes[1][col].set_xlabel("unit index $l$ ($x_1$ = stem output)")
        for row in range(2):
            axes[row][col].set_yscale("log")
            axes[row][col].grid(True, which="both", alpha=0.3)
            axes[row][col].legend(fontsize="x-small")
    bn = {m.bn for m in measurements}
    fig.suptitle(
        title
        or f"Signal propagation at {', '.join(sorted({m.source for m in measurements}))}, "
        f"BN with {'/'.join(sorted(bn))} statistics\n"
        "(dots: units whose shortcut is not the identity: dimension changes, shared pre-activation)"
    )
    fig.tight_layout()
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        fig.savefig(out, format="png")
    return fig


def load_measurements(path: str) -> list[Measurement]:
    """The measurements a run of this command saved as JSON (to re-plot without re-measuring)."""
    with open(path) as f:
        records = json.load(f)
    fields = {f.name for f in dataclasses.fields(Measurement)}  # not the environment, command
    return [
        Measurement(
            **{
                k: np.array(v) if k in ("forward", "backward") else v
                for k, v in r.items()
                if k in fields
            }
        )
        for r in records
    ]


def _split(value: str | None) -> list[str]:
    """Comma-separated entries; a comma inside brackets or quotes (a dict override) is not a
    separator."""
    if not value:
        return []
    entries, depth, quote, start = [], 0, None, 0
    for i, char in enumerate(value):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            entries.append(value[start:i].strip())
            start = i + 1
    return [*entries, value[start:].strip()]


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    fv = {"flag_values": flag_values}
    flags.DEFINE_string(
        "configs",
        ",".join(spec for spec, _ in PAPER_NETWORKS),
        "Comma-separated configs, each 'NAME_OR_PATH[:ARG] --config.FIELD=VALUE ...' as "
        "train.py takes them (default: the paper's 8 networks).",
        **fv,
    )
    flags.DEFINE_string("labels", None, "Comma-separated legend names.", **fv)
    flags.DEFINE_string(
        "workdirs", None, "Comma-separated checkpoint workdirs, one per config ('' = init).", **fv
    )
    flags.DEFINE_string("out", "docs/propagation.png", "PNG file to write.", **fv)
    flags.DEFINE_string("json", None, "Numbers as JSON (default: OUT with .json).", **fv)
    flags.DEFINE_integer("batch_size", 8, "Random images per network.", **fv)
    flags.DEFINE_integer(
        "image_size", None, "Image height and width; default: the dataset's.", **fv
    )
    flags.DEFINE_enum("bn", "batch", BN_MODES, "BN statistics: batch or running.", **fv)
    flags.DEFINE_integer("seed", 0, "Seed of the images, labels and initialization.", **fv)
    flags.DEFINE_string("title", None, "Figure title.", **fv)
    flags.DEFINE_string(
        "from_json",
        None,
        "Re-plot the measurements of an earlier run's JSON; measure nothing.",
        **fv,
    )


def _command_line(flag_values: flags.FlagValues) -> str:
    """The command line that sets these flags: the ones given, each with its value."""
    given = [
        f"--{name}={shlex.quote(str(flag_values[name].value))}"
        for name in sorted(flag_values)
        if flag_values[name].present
    ]
    return " ".join(["python -m preact.analysis.propagation", *given])


def main(argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[Measurement]:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {list(argv[1:])}")
    args = flag_values
    xla_flags.apply_defaults()  # before JAX starts a backend, as train.py does
    if args.from_json:
        measurements = load_measurements(args.from_json)
        plot(measurements, out=args.out, title=args.title)
        print(f"wrote {args.out}")
        return measurements

    specs = _split(args.configs)
    default_labels = dict(PAPER_NETWORKS)
    labels = _split(args.labels) or [None] * len(specs)
    workdirs = _split(args.workdirs) or [""] * len(specs)
    if len(labels) != len(specs) or len(workdirs) != len(specs):
        raise app.UsageError("--labels and --workdirs need one entry per config")
    measurements = []
    for spec, label, workdir in zip(specs, labels, workdirs, strict=True):
        config, auto_label = load_config(spec)
        name = label or default_labels.get(spec) or auto_label
        start = time.perf_counter()
        m = measure_config(
            config,
            name=name,
            workdir=workdir or None,
            batch_size=args.batch_size,
            image_size=args.image_size,
            bn=args.bn,
            seed=args.seed,
        )
        print(
            f"{name}: {len(m.forward) - 1} units, loss {m.loss:.3f}, RMS x_1 {m.forward[0]:.3g} "
            f"-> x_L+1 {m.forward[-1]:.3g}, dE/dx_1 {m.backward[0]:.3g} -> dE/dx_L+1 "
            f"{m.backward[-1]:.3g} ({time.perf_counter() - start:.0f}s)",
            flush=True,
        )
        measurements.append(m)
    plot(measurements, out=args.out, title=args.title)
    json_path = args.json or os.path.splitext(args.out)[0] + ".json"
    with open(json_path, "w") as f:
        made = {
            "environment": provenance.environment(),
            "command": _command_line(flag_values),
            "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        json.dump([{**m.to_json(), **made} for m in measurements], f, indent=1)
    print(f"wrote {args.out} and {json_path}")
    return measurements


def _command(argv: list[str]) -> None:
    main(argv)  # app.run would exit with main's return value, which is for callers in Python


if __name__ == "__main__":
    define_flags()
    app.run(_command)
