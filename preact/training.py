"""Train state, the train and eval steps, the one place they are mapped over devices, the loop.

The train step is a pure function of (state, batch): gradients, BN running statistics and metrics
are averaged over devices with ``lax.pmean``, and the state stays unreplicated (``in_axes=None``),
as in Flax's ImageNet example. BatchNorm's batch statistics are per device (what the paper's
2-GPU runs did: 64 images per GPU) or synchronized over the whole batch, by
``config.bn_statistics``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state
from jax.experimental import multihost_utils

from preact import (
    checkpointing,
    data,
    evaluation,
    experiment,
    optim,
    provenance,
    reductions,
    stopping,
    tensorboard,
)
from preact import metrics as metrics_lib
from preact import workdir as workdir_lib

log = logging.getLogger(__name__)

AXIS = experiment.BN_AXIS_NAME  # the device axis of the mapped steps
evaluate = evaluation.evaluate  # kept here too: callers map the eval step with this module


class TrainState(train_state.TrainState):
    batch_stats: Any = None


class DivergenceError(RuntimeError):
    """A non-finite loss or gradient (the "fail" rows of Table 1 may end this way)."""


class BadInput(ValueError):
    """The config, the data or the workdir cannot be used. Raised before anything is compiled or
    written; the message is one line that names the culprit."""


@contextlib.contextmanager
def bad_input():
    """Errors raised inside are input errors: re-raised as BadInput."""
    try:
        yield
    except BadInput:
        raise
    except (ValueError, TypeError, OSError) as e:
        raise BadInput(str(e)) from e


def check_config(
    config: ml_collections.ConfigDict, *, num_devices: int = 1, num_processes: int = 1
) -> Any:
    """Every check of ``config`` (raises BadInput); returns the model it describes.

    :func:`preact.experiment.validate` runs each module's own checks (model, optimizer and
    schedule, data, run, checkpoints) before anything is compiled.
    """
    with bad_input():
        return experiment.validate(config, num_devices=num_devices, num_processes=num_processes)


def create_train_state(
    config: ml_collections.ConfigDict,
    model: Any,
    image_shape: tuple[int, ...],
    schedule: optax.Schedule | None = None,
) -> TrainState:
    """The initial state; ``schedule``: the run's learning-rate schedule (built from the config
    when not given)."""
    rng = jax.random.key(config.seed, impl=config.rng_impl)

    @jax.jit
    def init() -> TrainState:
        x = jnp.zeros((1, *image_shape), jnp.float32)
        variables = model.init({"params": rng, "dropout": rng}, x, train=False)
        params = variables["params"]
        return TrainState.create(
            apply_fn=model.apply,
            params=params,
            tx=optim.create_optimizer(config, params, schedule),
            batch_stats=variables.get("batch_stats", {}),
        )

    return init()


def abstract_train_state(
    config: ml_collections.ConfigDict,
    model: Any,
    image_shape: tuple[int, ...],
    schedule: optax.Schedule | None = None,
) -> TrainState:
    """The state's shapes and dtypes, for restoring without initializing."""
    return jax.eval_shape(lambda: create_train_state(config, model, image_shape, schedule))


def training_loss(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """The mean cross-entropy the step minimises: against the one-hot labels (the paper's), or
    with ``label_smoothing`` > 0 against targets of 1 - label_smoothing + label_smoothing / K on
    the label and label_smoothing / K on each of the other K - 1 classes (Szegedy et al. 2016,
    "Rethinking the Inception architecture", Sec. 7)."""
    if not label_smoothing:
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    return optax.softmax_cross_entropy(logits, targets).mean()


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    learning_rate_fn: Callable[[Any], Any],
    seed: int,
    rng_impl: str = "threefry2x32",
    ordered: bool = False,
    label_smoothing: float = 0.0,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One SGD step on this device's share of the batch; call it through :func:`parallel`.

    ``ordered``: every mean over devices in one fixed device order (``deterministic_reductions``,
    :mod:`preact.reductions`), bit-identical on every process layout. ``label_smoothing``: see
    :func:`training_loss`; the logged ``train_loss`` is then the smoothed loss it minimises.
    """
    pmean = functools.partial(reductions.pmean, axis_name=AXIS, ordered=ordered)
    # Dropout (the dropout-shortcut variant) draws from (seed, step, device): a pure function of
    # the step, so a resumed run draws the same masks.
    rng = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed, impl=rng_impl), state.step),
                             jax.lax.axis_index(AXIS))  # fmt: skip

    def loss_fn(params: Any) -> tuple[jax.Array, tuple[Any, jax.Array]]:
        logits, new_model_state = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            batch["image"],
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": rng},
        )
        # The data loss only, as Caffe reports it; weight decay lives in the optimizer.
        loss = training_loss(logits, batch["label"], label_smoothing)
        return loss, (new_model_state["batch_stats"], logits)

    (loss, (batch_stats, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grads = pmean(grads)
    # Synchronized BN already gives every device the same statistics; with per-device statistics
    # the running averages differ and the state keeps their mean.
    batch_stats = pmean(batch_stats)
    new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)

    loss = pmean(loss)
    error = pmean(jnp.mean(jnp.argmax(logits, -1) != batch["label"]))
    finite = jnp.isfinite(loss) & jnp.all(
        jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])
    )
    # A non-finite step leaves the state as it was, so a diverged state is never saved.
    new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state)
    metrics = {
        "train_loss": loss,
        "train_error": 100.0 * error,
        "learning_rate": learning_rate_fn(state.step),
        "finite": finite,
    }
    return new_state, metrics


def eval_step(
    state: TrainState, batch: dict[str, jax.Array], *, ordered: bool = False
) -> dict[str, jax.Array]:
    """Sums over this device's (padded) share of an eval batch, summed over devices (in device
    order with ``ordered``)."""
    logits = state.apply_fn(
        {"params": state.params, "batch_stats": state.batch_stats}, batch["image"], train=False
    )
    mask = batch["mask"]
    labels = batch["label"]
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    top1 = jnp.argmax(logits, -1) == labels
    k = min(5, logits.shape[-1])
    topk = jnp.any(jax.lax.top_k(logits, k)[1] == labels[:, None], axis=-1)
    sums = {
        "loss": jnp.sum(loss * mask),
        "errors": jnp.sum((~top1) * mask),
        "top5_errors": jnp.sum((~topk) * mask),
        "count": jnp.sum(mask),
    }
    return reductions.psum(sums, AXIS, ordered=ordered)


def parallel(fn: Callable[..., Any], devices: list[Any] | None = None) -> Callable[..., Any]:
    """The one place steps are mapped over devices: state unreplicated, batch split on axis 0.

    ``devices=None`` maps over every device of every process (each host feeds its local ones).
    """
    return jax.pmap(fn, axis_name=AXIS, in_axes=(None, 0), out_axes=None, devices=devices)


def replicate(tree: Any, devices: list[Any] | None = None) -> Any:
    """Place ``tree`` on every local device as the mapped steps return it (on a multi-host run,
    an array of this process's devices), so that the first call and every later one see the same
    input sharding and the step compiles exactly once."""
    devices = list(devices if devices is not None else jax.local_devices())
    mesh = jax.sharding.Mesh(np.asarray(devices), (AXIS,))
    return jax.device_put(tree, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))


def make_train_step(
    config: ml_collections.ConfigDict,
    devices: list[Any] | None = None,
    schedule: optax.Schedule | None = None,
):
    """The mapped train step; it logs ``schedule`` (the run's, the one its optimizer follows;
    built from the config when not given)."""
    step = functools.partial(
        train_step,
        learning_rate_fn=schedule if schedule is not None else optim.learning_rate_schedule(config),
        seed=config.seed,
        rng_impl=config.rng_impl,
        ordered=config.deterministic_reductions,
        label_smoothing=float(config.get("label_smoothing", 0.0)),
    )
    return parallel(step, devices)


def make_eval_step(config: ml_collections.ConfigDict, devices: list[Any] | None = None):
    step = functools.partial(eval_step, ordered=config.deterministic_reductions)
    return parallel(step, devices)


def _write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    """``<workdir>/config.json``: the config's fields, and under ``environment`` the software
    and devices of this launch (preact.provenance; every checkpoint records its own)."""
    record = json.loads(config.to_json_best_effort())
    record["environment"] = provenance.environment()
    workdir_lib.write_json(os.path.join(workdir, "config.json"), record)


def describe_devices(config: ml_collections.ConfigDict) -> str:
    """One line: the devices the steps are mapped over and the batch each gets."""
    env = provenance.environment()
    processes = env["process_count"]
    per_device = config.batch_size // max(env["device_count"], 1)
    return (
        f"devices: {env['device_count']} x {env['device_kind']} (backend {env['backend']}; "
        f"{processes} process{'es' if processes != 1 else ''}, {env['local_device_count']} "
        f"local device{'s' if env['local_device_count'] != 1 else ''}); batch "
        f"{config.batch_size} images = {per_device} per device"
    )


def describe_data(config: ml_collections.ConfigDict, pipeline: Any) -> str:
    """One line: the dataset, the sizes of its splits, and where the pipeline read it from."""
    shape = "x".join(str(d) for d in pipeline.image_shape)
    return (
        f"data: {config.dataset}, {pipeline.num_train_examples:,} train / "
        f"{pipeline.num_eval_examples:,} test images ({shape}, {pipeline.num_classes} classes, "
        f"{pipeline.steps_per_epoch:,} steps per epoch); read from: {pipeline.description}"
    )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Train ``config`` in ``workdir`` (resuming from its latest checkpoint), evaluating on the
    whole test split every ``eval_every_steps`` and at the end. Returns the last metrics.

    Raises BadInput, before anything is compiled or written, for a bad config, unusable data or
    an unusable workdir (not a directory, of another model, or held by another trainer).
    """
    num_devices, num_processes = jax.local_device_count(), jax.process_count()
    model = check_config(config, num_devices=num_devices, num_processes=num_processes)
    with bad_input():
        workdir_lib.check_creatable(workdir)  # before reading any data, which takes a while
        pipeline = data.make_pipeline(config)
        if pipeline.num_classes != model.num_classes:
            raise ValueError(
                f"dataset {config.dataset!r} has {pipeline.num_classes} classes but the model "
                f"has {model.num_classes}; set --config.num_classes={pipeline.num_classes}"
            )
        workdir_lib.ensure_directory(workdir)
        checkpointing.check_workdir_identity(workdir, config)
    with _workdir_lock(workdir):
        checkpoints = checkpointing.Checkpointer(workdir, config)
        try:
            return _train(config, workdir, model, pipeline, checkpoints)
        finally:
            checkpoints.close()


@contextlib.contextmanager
def _workdir_lock(workdir: str) -> Iterator[None]:
    """Process 0 holds the workdir's lock; every process learns whether it got it."""
    lock, error = workdir_lib.WorkdirLock(workdir), None
    if jax.process_index() == 0:
        try:
            lock.acquire()
        except workdir_lib.WorkdirError as e:
            error = e
    if jax.process_count() > 1:
        locked = bool(multihost_utils.broadcast_one_to_all(np.int32(error is None)))
        if not locked and error is None:
            error = workdir_lib.WorkdirError(f"process 0 could not lock workdir {workdir!r}")
    if error is not None:
        raise BadInput(str(error)) from error
    try:
        yield
    finally:
        lock.release()


def _train(
    config: ml_collections.ConfigDict,
    workdir: str,
    model: Any,
    pipeline: Any,
    checkpoints: checkpointing.Checkpointer,
) -> dict[str, Any]:
    is_main = jax.process_index() == 0
    writer = metrics_lib.MetricsWriter(workdir, enabled=is_main)
    progress = metrics_lib.Progress(
        config.num_train_steps, enabled=is_main, bar=config.progress_bar
    )
    # The learning-rate schedule, built once: the optimizer follows it and the train step logs it.
    schedule = optim.learning_rate_schedule(config)
    with bad_input():  # every checkpoint unusable, a mangled metrics file
        abstract = abstract_train_state(config, model, pipeline.image_shape, schedule)
        restored = checkpoints.restore(abstract)
        # Records past the checkpoint (all of them on a fresh start) are of steps to be redone.
        writer.truncate_after(restored[1] if restored is not None else 0)
    progress.message(describe_devices(config))
    progress.message(describe_data(config, pipeline))
    if restored is not None:
        state, start_step = restored
        progress.message(f"resumed from checkpoint at step {start_step} in {workdir}")
    else:
        started = time.perf_counter()
        state, start_step = create_train_state(config, model, pipeline.image_shape, schedule), 0
        count = sum(int(np.size(x)) for x in jax.tree.leaves(state.params))
        progress.message(f"initialized {count:,} parameters in "
                         f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    if is_main:
        _write_config(workdir, config)
    board = tensorboard.TensorBoardWriter(
        workdir, enabled=is_main, purge_step=start_step + 1 if restored is not None else None
    )
    if board.off_reason:
        progress.message(board.off_reason)
    board.write_hparams(config)
    state = replicate(state)

    p_train_step = make_train_step(config, schedule=schedule)
    p_eval_step = make_eval_step(config)
    last: dict[str, Any] = {"step": start_step}
    step = start_step
    pending: list[dict[str, jax.Array]] = []
    # Throughput and the ETA are measured over the steps after the first call, which compiles.
    window_start, window_step = time.perf_counter(), step
    training_start, compile_s, evaluated = time.perf_counter(), None, False

    try:
        with stopping.StopSignal() as stop:
            while step < config.num_train_steps:
                if compile_s is None:
                    progress.message("compiling the train step (first call) ...")
                    started = time.perf_counter()
                state, metrics = p_train_step(state, pipeline.train_batch(step))
                pending.append(metrics)
                step += 1
                if compile_s is None:
                    jax.block_until_ready((state, metrics))
                    compile_s = time.perf_counter() - started
                    progress.message(f"compiled the train step: the first call (compile and one "
                                     f"step) took {compile_s:.1f} s")  # fmt: skip
                    window_start, window_step = time.perf_counter(), step
                at_end = step == config.num_train_steps
                at_log = step % config.log_every_steps == 0 or at_end
                at_eval = step % config.eval_every_steps == 0 or at_end
                at_ckpt = step % config.checkpoint_every_steps == 0 or at_end
                stop_now = stop.requested(step)
                if not (at_log or at_eval or at_ckpt or stop_now):
                    continue  # metrics stay on the device: no host sync between log steps

                host, pending = jax.device_get(pending), []
                diverged = _first_divergence(host, step, checkpoints)
                if diverged is not None:
                    failed_step, message = diverged
                    if config.on_divergence == "raise":
                        raise DivergenceError(message)
                    writer.write(failed_step, {"diverged": True})
                    board.write_scalars(failed_step, {"diverged": True})
                    progress.message(message)
                    last = {"step": failed_step, "diverged": True}
                    break

                # None when the window holds only the compiling first call: nothing timed yet.
                timed = step - window_step
                steps_per_sec = (timed / max(time.perf_counter() - window_start, 1e-9)
                                 if timed else None)  # fmt: skip
                scalars = _train_scalars(
                    host, None if steps_per_sec is None else steps_per_sec * config.batch_size
                )
                if at_eval:
                    if not evaluated:
                        progress.message("compiling the eval step (first evaluation) ...")
                    started = time.perf_counter()
                    results = evaluation.evaluate_splits(p_eval_step, state, pipeline)
                    scalars.update(evaluation.log_scalars(results, model.num_classes))
                    eval_s, evaluated = time.perf_counter() - started, True
                writer.write(step, scalars)
                board.write_scalars(step, scalars)
                last = {"step": step, **scalars}
                progress.update(step, scalars["train_loss"], scalars.get("images_per_sec"),
                                steps_per_sec)  # fmt: skip
                if at_eval:
                    progress.message(f"step {step}: test_error {scalars['test_error']:.2f}% "
                                     f"test_loss {scalars['test_loss']:.4f} "
                                     f"({pipeline.num_eval_examples:,} images, "
                                     f"{eval_s:.1f} s)")  # fmt: skip
                if at_ckpt or stop_now:
                    path = checkpoints.save(step, state)
                if stop_now:
                    progress.message(f"stopped at step {step}; checkpoint written to {path}")
                    raise stopping.Stopped(stop.received, step, path)
                window_start, window_step = time.perf_counter(), step
    finally:
        board.close()
    if step > start_step and not last.get("diverged"):
        progress.message(f"trained steps {start_step + 1}-{step} in "
                         f"{metrics_lib.duration(time.perf_counter() - training_start)}, of which "
                         f"{compile_s:.1f} s the first call (compiling)")  # fmt: skip
    return last


def _train_scalars(host: list[dict[str, Any]], images_per_sec: float | None) -> dict[str, float]:
    """The scalars of one logging window: training loss and error averaged over its steps, the
    learning rate, and the throughput (absent for a window of only the compiling first call).

    The devices compute in float32: its values are rounded to float32's precision (a learning
    rate of 0.1, not 0.10000000149011612; see metrics.float32_value)."""
    scalars = {
        k: metrics_lib.float32_value(np.mean(np.asarray([m[k] for m in host], np.float32)))
        for k in ("train_loss", "train_error")
    }
    scalars["learning_rate"] = metrics_lib.float32_value(host[-1]["learning_rate"])
    if images_per_sec is not None:
        scalars["images_per_sec"] = round(images_per_sec, 2)
    return scalars


def _first_divergence(
    host: list[dict[str, Any]], step: int, checkpoints: Any
) -> tuple[int, str] | None:
    """(step, message) of the window's first non-finite step, if any. A step is named by the
    count of updates it completes, as in the logs: ``host[i]`` is the update to step
    ``step - len(host) + i + 1``."""
    bad = [i for i, m in enumerate(host) if not bool(m["finite"])]
    if not bad:
        return None
    failed_step = step - len(host) + bad[0] + 1
    return failed_step, _divergence_message(failed_step, host[bad[0]], checkpoints)


def _divergence_message(step: int, metrics: dict[str, Any], checkpoints: Any) -> str:
    steps = checkpoints.steps()
    where = (f"the last good checkpoint is step {steps[0]} in {checkpoints.directory}"
             if steps else "no checkpoint was written yet")  # fmt: skip
    return (
        f"training diverged at step {step}: loss {float(metrics['train_loss'])} "
        f"(non-finite loss or gradient; the update to step {step} was not applied); {where}"
    )


def restore_for_eval(
    config: ml_collections.ConfigDict, workdir: str, step: int | None = None
) -> tuple[TrainState, int, Any]:
    """The model of ``config`` and the state of a workdir's latest (or given) checkpoint, as
    verified host arrays. Raises BadInput for a bad config, workdir or step, or when no
    checkpoint is usable."""
    model = check_config(config)
    with bad_input():
        workdir_lib.check_readable(workdir)
        checkpoints = checkpointing.Checkpointer(workdir, config, read_only=True)
        try:
            checkpoints.check_identity()
            steps = checkpoints.steps()
            if not steps:
                raise FileNotFoundError(f"no checkpoint in {checkpoints.directory}; train first")
            if step is not None and step not in steps:
                raise ValueError(f"no checkpoint at step {step} in {checkpoints.directory}; "
                                 f"available: {sorted(steps)}")  # fmt: skip
            info = data.datasets.dataset_info(config)
            abstract = abstract_train_state(config, model, info.image_shape)
            state, restored_step = checkpoints.restore(abstract, step=step)
        finally:
            checkpoints.close()
    return state, restored_step, model


def evaluate_workdir(
    config: ml_collections.ConfigDict, workdir: str, step: int | None = None
) -> dict[str, Any]:
    """What ``eval.py`` does: restore a workdir's latest (or given) checkpoint, evaluate the
    whole test split (each evaluation of it), write ``<workdir>/eval_results.json`` with the
    ``environment`` that evaluated it, and return that record.

    Raises BadInput, before anything is compiled or written, for a bad config, workdir, step or
    data.
    """
    check_config(config)
    with bad_input():
        workdir_lib.check_readable(workdir)
        workdir_lib.check_writable(workdir, "eval.py writes eval_results.json there")
    # The checkpoint next: a missing or foreign one is reported before any data is read.
    state, restored_step, model = restore_for_eval(config, workdir, step)
    with bad_input():
        pipeline = data.make_pipeline(config)
    results = evaluation.evaluate_splits(make_eval_step(config), replicate(state), pipeline)
    record = evaluation.eval_record(
        results, model.num_classes, step=restored_step, experiment=config.experiment
    )
    record["environment"] = provenance.environment()
    if jax.process_index() == 0:
        workdir_lib.write_json(os.path.join(workdir, "eval_results.json"), record)
    return record
