"""`make_pipeline`: reads the data settings of a config, finds the data and builds the pipeline.

Everything that can be wrong with the settings or the data is found here, before any device work,
and reported as one `DataError`. Two pipelines serve the result:
- `DevicePipeline` for datasets that fit in device memory (CIFAR, MNIST, Fashion-MNIST, digits,
  small TFDS datasets of fixed image size): augmentation 'pad_crop_flip' or 'none';
- `StreamingPipeline` for the rest (ImageNet): 'scale_jitter' or 'inception_crop' on host worker
  threads, evaluated at each of `eval_crops`.
The paper's augmentations: docs/reproduction.md#training-recipes.
"""

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from preact.data import datasets, normalize, tfds_source
from preact.data.arrays import InMemoryDataset
from preact.data.base import InputPipeline
from preact.data.device_pipeline import DevicePipeline
from preact.data.errors import DataError, DataNotFoundError
from preact.data.streaming import StreamingPipeline, train_transform

__all__ = ["DataError", "InputPipeline", "make_pipeline"]

DATA_SOURCES = ("auto", "archive", "tfds")
# The jax.random implementations a run may name; the same generator seeds the initialization and
# dropout, so this is the one check of config.rng_impl (run by preact.experiment.validate).
RNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")
AUGMENTS = ("pad_crop_flip", "none", "scale_jitter", "inception_crop")
_STREAMING_AUGMENTS = ("scale_jitter", "inception_crop")
_STAT_SAMPLE = 500  # images read to estimate per-channel statistics of an unknown streamed set

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """The config fields make_pipeline reads, checked (see make_pipeline for their meaning)."""

    dataset: str
    data_source: str
    data_dir: str
    batch_size: int
    eval_batch_size: int
    seed: int
    rng_impl: str
    normalization: str
    augment: str
    crop_padding: int
    random_flip: bool
    random_erasing: float
    image_size: int
    train_scale_range: tuple[int, int]
    eval_crops: tuple[tuple[int, int], ...]
    num_data_workers: int
    train_split: str
    eval_split: str


def make_pipeline(
    config,
    *,
    devices: Sequence[jax.Device] | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> InputPipeline:
    """Builds the input pipeline that `config` describes.

    Config fields (an ml_collections.ConfigDict or a dict):
      dataset: 'cifar10', 'cifar100', 'mnist', 'fashion_mnist' (28x28 grey; see
        preact.data.mnist), 'digits' (scikit-learn's 8x8 digits, offline; see
        preact.data.digits) or the name of any TFDS image classification dataset, e.g.
        'imagenet2012'.
      data_source: where cifar10/cifar100/mnist/fashion_mnist come from. 'archive': the official
        files, downloaded into data_dir if missing: cifar-10-python.tar.gz or
        cifar-10-binary.tar.gz (and the cifar-100 ones) in data_dir; the four IDX files of
        mnist/fashion_mnist in data_dir, data_dir/<name>_idx or, for fashion_mnist, where Debian
        installs them (see preact.data.mnist). 'tfds': a copy prepared by TFDS in data_dir.
        'auto': the official files if there are any, else a prepared TFDS copy, else the
        download. Other datasets always come from TFDS ('auto' or 'tfds'); digits from
        scikit-learn ('auto').
      data_dir: the directory holding the archives and the TFDS datasets. '' means TFDS's
        default, $TFDS_DATA_DIR or ~/tensorflow_datasets (created if a download needs it); a
        directory that is named must exist.
      batch_size: the global training batch, divisible by process_count * len(devices).
      eval_batch_size: the global evaluation batch, divisible likewise.
      seed: int in [0, 2**32); training batch `step` is a pure function of (seed, step).
      rng_impl: the jax.random implementation of the on-device pipeline ('threefry', the
        default, or 'rbg'); part of what the batches are a function of.
      normalization: 'per_pixel_mean' (the paper: the mean training image is subtracted) or
        'per_channel' (the Torch recipe: per-channel mean and std); see preact.data.normalize.
      augment: 'pad_crop_flip' (CIFAR: zero-pad by crop_padding, random crop, random flip),
        'none' (no augmentation), 'scale_jitter' or 'inception_crop' (ImageNet; streamed).
      crop_padding: pixels of zero padding on each side for 'pad_crop_flip' (4 for CIFAR).
      random_flip: whether 'pad_crop_flip', 'scale_jitter' and 'inception_crop' flip.
      random_erasing (0.0): the probability that 'pad_crop_flip' erases a random rectangle of a
        training image after the crop and flip (preact.data.augment.random_erasing); 0 is off,
        the paper's recipe.
    Optional fields, for streamed (ImageNet) datasets:
      image_size (224): the training crop.
      train_scale_range ((256, 480)): the shorter-side range of 'scale_jitter'.
      eval_crops (((256, 224), (320, 320))): (shorter side, centre crop) pairs, one evaluation
        each, named 'test_<crop>'.
      num_data_workers (min(16, CPU count)): host threads that decode and augment.
    Optional fields for any dataset:
      train_split ('train'), eval_split ('': 'test', or 'validation' where there is no test
        split): TFDS split specs such as 'train[:45000]'; archives and digits have 'train' and
        'test'.

    devices: the local devices to shard over (default jax.local_devices()). process_index and
    process_count default to jax.process_index() and jax.process_count().

    Raises:
      DataError (DataNotFoundError for missing files) naming the bad value or file.
    """
    settings = read_settings(config)
    devices = list(jax.local_devices() if devices is None else devices)
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise DataError(f"process_index {process_index} is not in [0, {process_count})")
    if not devices:
        raise DataError("devices is empty")
    for field in ("batch_size", "eval_batch_size"):
        value = getattr(settings, field)
        if value % (process_count * len(devices)):
            raise DataError(
                f"config.{field} = {value} is not divisible by process_count * local devices "
                f"= {process_count} * {len(devices)}"
            )
    data = _find_data(settings)
    streamed = settings.augment in _STREAMING_AUGMENTS or (
        isinstance(data, tfds_source.TfdsDataset) and None in data.image_shape
    )
    if streamed:
        pipeline = _streaming_pipeline(settings, data, len(devices), process_index, process_count)
    else:
        pipeline = _device_pipeline(settings, data, devices, process_index, process_count)
    if pipeline.steps_per_epoch < 1:
        pipeline.close()
        raise DataError(
            f"config.batch_size = {settings.batch_size} exceeds the "
            f"{pipeline.num_train_examples} training examples of {settings.dataset!r}"
        )
    return pipeline


def read_settings(config) -> DataSettings:
    """Reads and checks the data fields of `config`; raises DataError naming a bad one.

    The data's own checks: they read no file, so preact.experiment.validate runs them with the
    other modules' before anything compiles, and make_pipeline again before it reads the data.
    """

    def required(name):
        if name not in config:
            raise DataError(f"config.{name} is missing")
        return config.get(name)

    settings = DataSettings(
        dataset=required("dataset"),
        data_source=required("data_source"),
        data_dir=required("data_dir"),
        batch_size=required("batch_size"),
        eval_batch_size=required("eval_batch_size"),
        seed=required("seed"),
        rng_impl=required("rng_impl"),
        normalization=required("normalization"),
        augment=required("augment"),
        crop_padding=required("crop_padding"),
        random_flip=required("random_flip"),
        # Optional: configs written before the option existed have no such field.
        random_erasing=config.get("random_erasing", 0.0),
        image_size=required("image_size"),
        train_scale_range=tuple(required("train_scale_range")),
        eval_crops=tuple(tuple(pair) for pair in required("eval_crops")),
        # 0: as many decoding threads as the machine has cores, up to 16.
        num_data_workers=required("num_data_workers") or min(16, os.cpu_count() or 1),
        train_split=required("train_split"),
        eval_split=required("eval_split"),
    )
    _check_choice("data_source", settings.data_source, DATA_SOURCES)
    _check_choice("normalization", settings.normalization, normalize.MODES)
    _check_choice("augment", settings.augment, AUGMENTS)
    for name in ("dataset", "data_dir", "train_split", "eval_split"):
        if not isinstance(getattr(settings, name), str):
            raise DataError(f"config.{name} must be a string, got {getattr(settings, name)!r}")
    if not settings.dataset:
        raise DataError("config.dataset is empty")
    for name in ("batch_size", "eval_batch_size", "image_size", "num_data_workers"):
        _check_int(name, getattr(settings, name), minimum=1)
    _check_int("seed", settings.seed, minimum=0)
    if settings.rng_impl not in RNG_IMPLS:
        raise DataError(f"unknown rng_impl {settings.rng_impl!r}; valid: {RNG_IMPLS}")
    if settings.seed >= 2**32:  # the on-device pipeline seeds jax.random with a uint32
        raise DataError(f"config.seed must be < 2**32, got {settings.seed}")
    _check_int("crop_padding", settings.crop_padding, minimum=0)
    if not isinstance(settings.random_flip, bool | np.bool_):
        raise DataError(f"config.random_flip must be a bool, got {settings.random_flip!r}")
    erasing = settings.random_erasing
    if isinstance(erasing, bool) or not isinstance(erasing, int | float) or not 0 <= erasing <= 1:
        raise DataError(f"config.random_erasing must be a probability in [0, 1], got {erasing!r}")
    if erasing and settings.augment != "pad_crop_flip":
        raise DataError(
            f"config.random_erasing = {erasing} needs config.augment = 'pad_crop_flip' (the "
            f"in-memory pipeline erases on the device), got {settings.augment!r}"
        )
    if settings.augment in _STREAMING_AUGMENTS:  # early, before any data is read
        _check_streaming(settings)
    return settings


def _check_choice(name, value, choices):
    if value not in choices:
        raise DataError(f"config.{name} = {value!r} is not one of {choices}")


def _check_int(name, value, *, minimum):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise DataError(f"config.{name} must be an int >= {minimum}, got {value!r}")


def _check_streaming(settings: DataSettings) -> None:
    low_high = settings.train_scale_range
    if len(low_high) != 2 or not all(isinstance(v, int) for v in low_high):
        raise DataError(f"config.train_scale_range must be (low, high), got {low_high!r}")
    if settings.augment == "scale_jitter" and not settings.image_size <= low_high[0] <= low_high[1]:
        raise DataError(
            f"config.train_scale_range = {low_high} must satisfy image_size "
            f"({settings.image_size}) <= low <= high"
        )
    pairs = settings.eval_crops
    if not pairs or any(
        len(p) != 2 or not all(isinstance(v, int) and v > 0 for v in p) or p[1] > p[0]
        for p in pairs
    ):
        raise DataError(
            f"config.eval_crops must be (shorter side, crop) pairs with crop <= shorter side, "
            f"got {pairs!r}"
        )
    crops = [crop for _, crop in pairs]
    if len(set(crops)) != len(crops):
        raise DataError(f"config.eval_crops has two evaluations of the same crop size: {pairs!r}")


def _data_dir(settings: DataSettings) -> Path:
    if not settings.data_dir:
        return tfds_source.default_data_dir()
    path = Path(settings.data_dir).expanduser()
    if not path.is_dir():
        raise DataNotFoundError(f"config.data_dir {settings.data_dir!r} is not a directory")
    return path


def _find_data(settings: DataSettings) -> InMemoryDataset | tfds_source.TfdsDataset:
    """Finds the data `settings` name: arrays in host memory, or TFDS random-access sources."""
    name, source = settings.dataset, settings.data_source
    entry = datasets.DATASETS.get(name)  # None: another TFDS dataset (config.num_classes)
    if entry is not None and not entry.tfds:
        if source != "auto":
            raise DataError(f"config.data_source must be 'auto' for {name!r}, got {source!r}")
        return entry.load(_data_dir(settings))
    readers = tuple(n for n, d in datasets.DATASETS.items() if d.has_reader and d.tfds)
    if source == "archive" and name not in readers:
        raise DataError(
            f"config.data_source = 'archive' needs a dataset with an official archive "
            f"{readers}, got {name!r}"
        )
    data_dir = _data_dir(settings)
    if entry is not None and entry.has_reader and source != "tfds":
        has_files = entry.find_copy is None or entry.find_copy(data_dir) is not None
        if source == "archive" or has_files or not tfds_source.is_prepared(name, data_dir):
            return entry.load(data_dir)
    return tfds_source.open_dataset(
        name, data_dir, train_split=settings.train_split, eval_split=settings.eval_split
    )


def _array_splits(settings: DataSettings, data: InMemoryDataset):
    """The training and evaluation splits of a dataset read from an archive or scikit-learn."""
    splits = {"train": data.train, "test": data.test}
    chosen = []
    for field, split in (
        ("train_split", settings.train_split),
        ("eval_split", settings.eval_split or "test"),
    ):
        if split not in splits:
            raise DataError(
                f"config.{field} = {split!r} does not exist for {data.description}; "
                "it has 'train' and 'test'"
            )
        chosen.append(splits[split])
    return tuple(chosen)


def _device_pipeline(settings, data, devices, process_index, process_count) -> DevicePipeline:
    if isinstance(data, tfds_source.TfdsDataset):
        data = tfds_source.read_into_memory(data)
        train, evaluation = data.train, data.test
    else:
        train, evaluation = _array_splits(settings, data)
    crop_flip = settings.augment == "pad_crop_flip"
    flip = crop_flip and bool(settings.random_flip)
    entry = datasets.DATASETS.get(data.name)
    if flip and entry is not None and not entry.flip_keeps_label:
        log.warning(
            "config.random_flip is True for %r: a mirrored image is another class (a mirrored "
            "digit is not the same digit); set --config.random_flip=False",
            data.name,
        )
    return DevicePipeline(
        data,
        normalize.for_arrays(settings.normalization, data.name, train.images),
        train=train,
        evaluation=evaluation,
        batch_size=settings.batch_size,
        eval_batch_size=settings.eval_batch_size,
        seed=settings.seed,
        rng_impl=settings.rng_impl,
        padding=settings.crop_padding if crop_flip else 0,
        flip=flip,
        erasing=settings.random_erasing if crop_flip else 0.0,
        devices=devices,
        process_index=process_index,
        process_count=process_count,
    )


def _streaming_pipeline(settings, data, num_devices, process_index, process_count):
    _check_streaming(settings)  # again: variable-size images stream even with augment 'none'
    if settings.augment == "pad_crop_flip":
        raise DataError(
            f"config.augment = 'pad_crop_flip' needs images of one size, but {settings.dataset!r} "
            f"has images of shape {data.image_shape}; use 'scale_jitter' or 'inception_crop'"
        )
    if isinstance(data, InMemoryDataset):
        train, evaluation = (_ArraySource(split) for split in _array_splits(settings, data))
    else:
        train, evaluation = data.train, data.eval
    picks = np.linspace(0, len(train) - 1, min(_STAT_SAMPLE, len(train))).astype(int)
    sample = (train[int(i)]["image"] for i in picks)  # read only if statistics are unknown
    return StreamingPipeline(
        train=train,
        evaluation=evaluation,
        num_classes=data.num_classes,
        channels=data.image_shape[-1],
        description=data.description,
        normalization=normalize.for_stream(settings.normalization, data.name, sample),
        transform=train_transform(
            settings.augment,
            image_size=settings.image_size,
            scale_range=settings.train_scale_range,
            flip=bool(settings.random_flip),
        ),
        image_size=settings.image_size,
        eval_crops=settings.eval_crops,
        batch_size=settings.batch_size,
        eval_batch_size=settings.eval_batch_size,
        seed=settings.seed,
        num_devices=num_devices,
        process_index=process_index,
        process_count=process_count,
        num_workers=settings.num_data_workers,
    )


class _ArraySource:
    """Random access to an in-memory split, shaped like a TFDS data source."""

    def __init__(self, split):
        self._split = split

    def __len__(self) -> int:
        return len(self._split)

    def __getitem__(self, index: int) -> dict:
        return {"image": self._split.images[index], "label": self._split.labels[index]}
