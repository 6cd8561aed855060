"""The streaming pipeline: examples are read, decoded and augmented by host worker threads.

For datasets too large for device memory (ImageNet). Reading goes through a random-access source
(`tfds.data_source`), which decodes with PIL; decoding and resizing release the GIL, so threads
scale with cores. While the trainer runs step s, steps s + 1 ... s + prefetch are being made.

Batch `step` is a pure function of (seed, step), as in the in-memory pipeline: epoch e visits the
training set in the order `default_rng((seed, 0, e)).permutation(N)` (the remainder dropped), and
the example at position q of the global batch is augmented with `default_rng((seed, 1, step,
q))`, independent of how the batch is split over devices and hosts.
"""

import concurrent.futures
import functools
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from preact.data import imagenet
from preact.data.base import InputPipeline
from preact.data.errors import DataError
from preact.data.normalize import Normalization

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def train_transform(
    augment: str, *, image_size: int, scale_range: tuple[int, int], flip: bool
) -> Transform:
    """The host-side training transform for `augment` (see preact.data.imagenet)."""
    if augment == "scale_jitter":
        return functools.partial(
            imagenet.scale_jitter, scale_range=scale_range, size=image_size, flip=flip
        )
    if augment == "inception_crop":
        return functools.partial(imagenet.inception_crop, size=image_size, flip=flip)
    # 'none': the evaluation view at the training size.
    return lambda image, rng: imagenet.center_crop_eval(image, resize=image_size, crop=image_size)


class StreamingPipeline(InputPipeline):
    """Serves a random-access source through host worker threads (see the module docstring)."""

    def __init__(
        self,
        *,
        train: Sequence[dict[str, Any]],
        evaluation: Sequence[dict[str, Any]],
        num_classes: int,
        channels: int,
        description: str,
        normalization: Normalization,
        transform: Transform,
        image_size: int,
        eval_crops: Sequence[tuple[int, int]],
        batch_size: int,
        eval_batch_size: int,
        seed: int,
        num_devices: int,
        process_index: int,
        process_count: int,
        num_workers: int,
        prefetch: int = 2,
    ):
        self.num_classes = num_classes
        self.image_shape = (image_size, image_size, channels)
        self.num_train_examples = len(train)
        self.num_eval_examples = len(evaluation)
        self.steps_per_epoch = len(train) // batch_size
        self.eval_names = tuple(f"test_{crop}" for _, crop in eval_crops)
        self.description = description
        self._eval_crops = dict(zip(self.eval_names, eval_crops, strict=True))
        self._train, self._eval = train, evaluation
        self._norm, self._transform = normalization, transform
        self._seed = seed
        self._batch_size, self._eval_batch_size = batch_size, eval_batch_size
        self._num_devices = num_devices
        self._host_batch = batch_size // process_count
        self._host_offset = process_index * self._host_batch
        self._host_eval_batch = eval_batch_size // process_count
        self._host_eval_offset = process_index * self._host_eval_batch
        self._prefetch = prefetch
        self._workers = concurrent.futures.ThreadPoolExecutor(num_workers, "preact-data")
        # One assembler thread: it waits on the workers, the workers never wait on anything.
        self._assembler = concurrent.futures.ThreadPoolExecutor(1, "preact-batch")
        self._pending: dict[int, concurrent.futures.Future] = {}
        self._orders: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def train_batch(self, step: int) -> dict:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        with self._lock:
            future = self._pending.pop(step, None)
            for stale in [s for s in self._pending if s < step]:
                self._pending.pop(stale).cancel()
            if future is None:
                future = self._assembler.submit(self._make_train_batch, step)
            for ahead in range(step + 1, step + 1 + self._prefetch):
                if ahead not in self._pending:
                    self._pending[ahead] = self._assembler.submit(self._make_train_batch, ahead)
        return future.result()

    def eval_batches(self, name: str | None = None) -> Iterator[dict]:
        name = self.eval_names[0] if name is None else name
        if name not in self._eval_crops:
            raise DataError(f"Unknown evaluation {name!r}; expected one of {self.eval_names}")
        resize, crop = self._eval_crops[name]
        num_batches = math.ceil(len(self._eval) / self._eval_batch_size)
        submit = functools.partial(self._assembler.submit, self._make_eval_batch, resize, crop)
        ahead = [submit(i) for i in range(min(self._prefetch, num_batches))]
        for index in range(num_batches):
            if index + self._prefetch < num_batches:
                ahead.append(submit(index + self._prefetch))
            yield ahead.pop(0).result()

    def close(self) -> None:
        with self._lock:
            for future in self._pending.values():
                future.cancel()
            self._pending.clear()
        self._assembler.shutdown(wait=True, cancel_futures=True)
        self._workers.shutdown(wait=True, cancel_futures=True)

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            # Two epochs are kept: prefetching crosses epoch boundaries.
            self._orders = {e: o for e, o in self._orders.items() if e == epoch - 1}
            rng = np.random.default_rng((self._seed, 0, epoch))
            self._orders[epoch] = rng.permutation(len(self._train))
        return self._orders[epoch]

    def _make_train_batch(self, step: int) -> dict:
        epoch, within = divmod(step, self.steps_per_epoch)
        positions = self._host_offset + np.arange(self._host_batch)
        indices = self._order(epoch)[within * self._batch_size + positions]
        load = functools.partial(self._load_train_example, step)
        images, labels = zip(*self._workers.map(load, indices, positions), strict=True)
        return self._batch(np.stack(images), np.asarray(labels, np.int32))

    def _load_train_example(self, step: int, index: int, position: int):
        example = self._train[int(index)]
        rng = np.random.default_rng((self._seed, 1, step, int(position)))
        return self._transform(example["image"], rng), example["label"]

    def _load_eval_example(self, resize: int, crop: int, index: int):
        example = self._eval[int(index)]
        image = imagenet.center_crop_eval(example["image"], resize=resize, crop=crop)
        return image, example["label"]

    def _make_eval_batch(self, resize: int, crop: int, index: int) -> dict:
        start = index * self._eval_batch_size + self._host_eval_offset
        positions = np.arange(start, start + self._host_eval_batch)
        real = positions[positions < len(self._eval)]
        load = functools.partial(self._load_eval_example, resize, crop)
        images = np.zeros((len(positions), crop, crop, self.image_shape[2]), np.uint8)
        labels = np.zeros((len(positions),), np.int32)
        for i, (image, label) in enumerate(self._workers.map(load, real)):
            images[i], labels[i] = image, label
        batch = self._batch(images, labels)
        valid = (positions < len(self._eval)).reshape(batch["label"].shape)
        batch["image"][~valid] = 0.0  # padding is zero after normalization, as on device
        batch["mask"] = valid.astype(np.float32)
        return batch

    def _batch(self, images: np.ndarray, labels: np.ndarray) -> dict:
        """Normalizes and splits a host batch into [devices, per-device batch, ...]."""
        per_device = len(labels) // self._num_devices
        return {
            "image": self._norm(images).reshape(self._num_devices, per_device, *images.shape[1:]),
            "label": labels.reshape(self._num_devices, per_device),
        }
