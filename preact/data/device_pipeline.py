"""The in-memory pipeline: the whole dataset lives on the accelerator, batches are made there.

CIFAR's 50,000 training images are 154 MB as uint8 (3,072 bytes each), so each local device holds a
copy of the training and test images, and one jitted, `shard_map`-ped function per step gathers,
normalizes, crops, flips (and, if asked, erases) each device's share of the batch on that device.
The host only passes the step number; nothing is decoded, copied or augmented on the host in
training.

Batch `step` is a pure function of (seed, step), which makes resuming exact:
- with order_key, augment_key = split(key(seed)), epoch e = step // steps_per_epoch visits the
  training set in the order `permutation(fold_in(order_key, e), N)`, dropping the last
  N mod global_batch examples;
- the step takes the slice [i * B, (i + 1) * B) of it, i = step mod steps_per_epoch;
- the example at position q of that global batch is augmented with `fold_in(fold_in(augment_key,
  step), q)`, so the same global batch comes out whatever the number of devices and hosts.
"""

import dataclasses
import functools
import math
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from preact.data import augment as augment_lib
from preact.data.arrays import InMemoryDataset, LabeledImages
from preact.data.base import InputPipeline
from preact.data.errors import DataError
from preact.data.normalize import Normalization

_AXIS = "device"


class DevicePipeline(InputPipeline):
    """Serves an in-memory dataset from device memory (see the module docstring)."""

    def __init__(
        self,
        dataset: InMemoryDataset,
        normalization: Normalization,
        *,
        train: LabeledImages,
        evaluation: LabeledImages,
        batch_size: int,
        eval_batch_size: int,
        seed: int,
        rng_impl: str = "threefry2x32",
        padding: int,
        flip: bool,
        erasing: float = 0.0,
        devices: Sequence[jax.Device],
        process_index: int,
        process_count: int,
    ):
        num_devices = len(devices)
        self.num_classes = dataset.num_classes
        self.image_shape = tuple(int(d) for d in train.images.shape[1:])
        self.num_train_examples = len(train)
        self.num_eval_examples = len(evaluation)
        self.steps_per_epoch = len(train) // batch_size
        self.eval_names = ("test",)
        self.description = dataset.description
        self._num_eval_batches = math.ceil(len(evaluation) / eval_batch_size)

        self._mesh = Mesh(np.asarray(devices), (_AXIS,))
        put = functools.partial(jax.device_put, device=NamedSharding(self._mesh, P()))
        self._train_arrays = put((train.images, train.labels))
        self._eval_arrays = put((evaluation.images, evaluation.labels))
        self._norm = put((normalization.mean, normalization.scale))
        self._seed = np.uint32(seed)
        self._rng_impl = rng_impl
        self._order_epoch, self._order = -1, None

        host_batch, host_eval_batch = batch_size // process_count, eval_batch_size // process_count
        self._train_layout = _TrainLayout(
            steps_per_epoch=self.steps_per_epoch,
            global_batch=batch_size,
            host_offset=process_index * host_batch,
            device_batch=host_batch // num_devices,
            rng_impl=rng_impl,
            padding=padding,
            flip=flip,
            erasing=float(erasing),
        )
        self._eval_layout = _EvalLayout(
            num_examples=len(evaluation),
            global_batch=eval_batch_size,
            host_offset=process_index * host_eval_batch,
            device_batch=host_eval_batch // num_devices,
        )

    def _epoch_order(self, epoch: int) -> jax.Array:
        if epoch != self._order_epoch:  # one permutation per epoch, kept on device
            order = _epoch_order(
                self._seed, np.int32(epoch), self.num_train_examples, self._mesh, self._rng_impl
            )
            self._order_epoch, self._order = epoch, order
        return self._order

    def train_batch(self, step: int) -> dict:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        order = self._epoch_order(step // self.steps_per_epoch)
        return _train_batch(
            self._train_arrays,
            self._norm,
            order,
            np.int32(step),
            self._seed,
            mesh=self._mesh,
            layout=self._train_layout,
        )

    def eval_batches(self, name: str | None = None) -> Iterator[dict]:
        if name not in (None, *self.eval_names):
            raise DataError(f"Unknown evaluation {name!r}; expected one of {self.eval_names}")
        for index in range(self._num_eval_batches):
            yield _eval_batch(
                self._eval_arrays,
                self._norm,
                np.int32(index),
                mesh=self._mesh,
                layout=self._eval_layout,
            )


# The jitted functions live at module level with hashable static layouts, so pipelines of the
# same shapes (a resumed run, an evaluation job, the tests) share one compilation. Their inputs
# are replicated on every device; each device computes its own [1, b, ...] slice of the output.


@dataclasses.dataclass(frozen=True)
class _TrainLayout:
    steps_per_epoch: int
    global_batch: int
    host_offset: int  # where this host's share starts in the global batch
    device_batch: int
    rng_impl: str
    padding: int
    flip: bool
    erasing: float = 0.0  # probability of random erasing (augment.random_erasing)


@dataclasses.dataclass(frozen=True)
class _EvalLayout:
    num_examples: int
    global_batch: int
    host_offset: int
    device_batch: int


def _keys(seed, impl):
    # The implementation is explicit: a jitted function's cache does not see the process-wide
    # default, so relying on it would let one caller's setting leak into another's batches.
    order_key, augment_key = jax.random.split(jax.random.key(seed, impl=impl))
    return order_key, augment_key


@functools.partial(jax.jit, static_argnames=("num_examples", "mesh", "impl"))
def _epoch_order(seed, epoch, num_examples, mesh, impl):
    order_key, _ = _keys(seed, impl)
    order = jax.random.permutation(jax.random.fold_in(order_key, epoch), num_examples)
    return jax.lax.with_sharding_constraint(order, NamedSharding(mesh, P()))


@functools.partial(jax.jit, static_argnames=("mesh", "layout"))
def _train_batch(arrays, norm, order, step, seed, *, mesh, layout):
    shard = functools.partial(_train_shard, layout=layout)
    return jax.shard_map(shard, mesh=mesh, in_specs=(P(),) * 5, out_specs=P(_AXIS))(
        arrays, norm, order, step, seed
    )


@functools.partial(jax.jit, static_argnames=("mesh", "layout"))
def _eval_batch(arrays, norm, index, *, mesh, layout):
    shard = functools.partial(_eval_shard, layout=layout)
    return jax.shard_map(shard, mesh=mesh, in_specs=(P(),) * 3, out_specs=P(_AXIS))(
        arrays, norm, index
    )


def _train_shard(arrays, norm, order, step, seed, *, layout: _TrainLayout):
    images, labels = arrays
    # Where this device's examples sit in the global batch.
    offset = layout.host_offset + jax.lax.axis_index(_AXIS) * layout.device_batch
    positions = offset + jnp.arange(layout.device_batch)
    start = (step % layout.steps_per_epoch) * layout.global_batch + offset
    indices = jax.lax.dynamic_slice_in_dim(order, start, layout.device_batch)
    batch = Normalization(*norm)(images[indices])
    if layout.padding or layout.flip or layout.erasing:
        _, augment_key = _keys(seed, layout.rng_impl)
        keys = augment_lib.example_keys(augment_key, step, positions)
        batch = augment_lib.pad_crop_flip(batch, keys, padding=layout.padding, flip=layout.flip)
        if layout.erasing:
            batch = augment_lib.random_erasing(batch, keys, probability=layout.erasing)
    return {"image": batch[None], "label": labels[indices][None]}


def _eval_shard(arrays, norm, index, *, layout: _EvalLayout):
    images, labels = arrays
    offset = layout.host_offset + jax.lax.axis_index(_AXIS) * layout.device_batch
    positions = index * layout.global_batch + offset + jnp.arange(layout.device_batch)
    mask = positions < layout.num_examples
    indices = jnp.minimum(positions, layout.num_examples - 1)  # padding rows are zeroed below
    batch = jnp.where(mask[:, None, None, None], Normalization(*norm)(images[indices]), 0.0)
    return {
        "image": batch[None],
        "label": jnp.where(mask, labels[indices], 0)[None],
        "mask": mask.astype(jnp.float32)[None],
    }
