"""The dataset registry: every fact about a dataset a config can name, in one entry.

Each entry says what the model needs before any data is read (classes, input shape), what the
official release holds (its splits and their sizes), which augmentations keep its labels (a
mirrored digit is another digit), its published normalization constants, and where the images
come from: a reader of official files (``load``, with ``find_copy`` telling whether a copy is on
disk), a TFDS-prepared copy, or both. ``config.dataset`` is the entry's name, which is also its
TFDS name.

Each dataset is one module holding its reader and its one :func:`register` call
(:mod:`preact.data.cifar`, :mod:`preact.data.mnist`, :mod:`preact.data.digits`,
:mod:`preact.data.imagenet`); ``preact.data`` imports them, so the registry is complete
whenever ``preact.data`` is. A dataset of your own is one more ``register`` call, in a module
your config or script imports, with a ``load`` that returns a
:class:`preact.data.arrays.InMemoryDataset` of uint8 NHWC images and int labels; nothing else
changes::

    datasets.register(datasets.Dataset(
        name="my_data", title="My data", num_classes=5, image_shape=(32, 32, 3),
        splits={"train": 4000, "test": 1000}, load=lambda data_dir: my_module.load(data_dir),
        tfds=False, flip_keeps_label=True, per_channel_stats=((120.0,) * 3, (60.0,) * 3)))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections

from preact.data.arrays import InMemoryDataset


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One dataset.

    Attributes:
      name: what ``config.dataset`` says (the TFDS name where TFDS has it).
      title: how tables and logs name it.
      num_classes: labels 0 .. num_classes - 1.
      image_shape: (H, W, C) of a training input (for ImageNet: after the crop).
      splits: examples per split of the official release, train first.
      load: reads the official files (or a bundled copy) from a data directory (None: the
        default locations) into host memory; None when only TFDS can read the dataset.
      find_copy: where ``load`` finds its files in a data directory without downloading (None
        when there is no copy); None when ``load`` needs no files (a bundled copy).
      tfds: whether a TFDS-prepared copy can be read (``config.data_source`` ``tfds``/``auto``).
      flip_keeps_label: whether a left-right mirror of an image shows the same class, i.e.
        whether ``random_flip`` is a label-safe augmentation (not for digits: the pipeline
        warns when it is on).
      per_channel_stats: the published (mean, std) per channel on the 0..255 scale that
        ``normalization='per_channel'`` uses (fb.resnet.torch's, for the Torch recipe); None:
        computed from the training images.
    """

    name: str
    title: str
    num_classes: int
    image_shape: tuple[int, int, int]
    splits: Mapping[str, int]
    load: Callable[[Path | None], InMemoryDataset] | None = None
    find_copy: Callable[[Path | None], Any] | None = None
    tfds: bool = True
    flip_keeps_label: bool = True
    per_channel_stats: tuple[Sequence[float], Sequence[float]] | None = None

    @property
    def has_reader(self) -> bool:
        """Whether the dataset has official files (or a bundled copy) this project reads."""
        return self.load is not None


DATASETS: dict[str, Dataset] = {}


def register(dataset: Dataset) -> Dataset:
    """Adds ``dataset`` to the registry (a name registered twice is a mistake, not an update)."""
    if dataset.name in DATASETS:
        raise ValueError(f"dataset {dataset.name!r} is already registered")
    DATASETS[dataset.name] = dataset
    return dataset


def get(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; valid: {tuple(DATASETS)}") from None


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the model needs to know about the data before any of it is read."""

    num_classes: int
    image_shape: tuple[int, int, int]  # (H, W, C) of a training input


def dataset_info(config: ml_collections.ConfigDict) -> DatasetInfo:
    """Classes and input shape of ``config.dataset`` from the registry; ``config.num_classes``
    (with ``config.image_size``) overrides for a TFDS dataset that is not registered."""
    entry = DATASETS.get(config.dataset)
    info = entry and DatasetInfo(entry.num_classes, tuple(entry.image_shape))
    if config.get("num_classes") is not None:
        size = config.image_size
        shape = info.image_shape if info else (size, size, 3)
        return DatasetInfo(config.num_classes, shape)
    if info is None:
        raise ValueError(
            f"dataset {config.dataset!r} is not one of {tuple(DATASETS)}; for another "
            "TFDS dataset set --config.num_classes"
        )
    return info
