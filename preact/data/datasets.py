"""The dataset registry: every dataset a config can name, stated once.

Each entry says what the model needs before any data is read (classes, input shape), what the
official release holds (its splits and their sizes) and where the images come from: a reader of
official files (``load``, with ``find_copy`` telling whether a copy is present), a TFDS-prepared
copy, or both. ``config.dataset`` is the entry's name, which is also its TFDS name.

A dataset of your own is one :func:`register` call (in this file or in a module your config
imports) with a ``load`` that returns a :class:`preact.data.arrays.InMemoryDataset` of uint8
NHWC images and int labels; nothing else changes::

    datasets.register(datasets.Dataset(
        name="my_data", title="My data", num_classes=5, image_shape=(32, 32, 3),
        splits={"train": 4000, "test": 1000}, load=lambda data_dir: my_module.load(data_dir),
        tfds=False))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from preact.data import cifar, digits, mnist
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
      find_copy: whether ``load`` finds its files in a data directory without downloading;
        None when ``load`` needs no files (a bundled copy).
      tfds: whether a TFDS-prepared copy can be read (``config.data_source`` ``tfds``/``auto``).
    """

    name: str
    title: str
    num_classes: int
    image_shape: tuple[int, int, int]
    splits: Mapping[str, int]
    load: Callable[[Path | None], InMemoryDataset] | None = None
    find_copy: Callable[[Path | None], Any] | None = None
    tfds: bool = True

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


def _archive(name: str, module: Any, find: Callable[[str, Path], Any]) -> dict[str, Any]:
    return dict(
        load=lambda data_dir: module.load(name, data_dir),
        find_copy=lambda data_dir: find(name, data_dir),
    )


register(Dataset("cifar10", "CIFAR-10", 10, (32, 32, 3), {"train": 50_000, "test": 10_000},
                 **_archive("cifar10", cifar, cifar.find_archive)))  # fmt: skip
register(Dataset("cifar100", "CIFAR-100", 100, (32, 32, 3), {"train": 50_000, "test": 10_000},
                 **_archive("cifar100", cifar, cifar.find_archive)))  # fmt: skip
register(Dataset("mnist", "MNIST", 10, (28, 28, 1), {"train": 60_000, "test": 10_000},
                 **_archive("mnist", mnist, mnist.find_copy)))  # fmt: skip
register(Dataset("fashion_mnist", "Fashion-MNIST", 10, (28, 28, 1),
                 {"train": 60_000, "test": 10_000},
                 **_archive("fashion_mnist", mnist, mnist.find_copy)))  # fmt: skip
# scikit-learn's handwritten digits, bundled with its wheel: the offline smoke run.
register(Dataset("digits", "scikit-learn's digits", 10, (8, 8, 1),
                 {"train": digits.NUM_TRAIN, "test": digits.NUM_TEST},
                 load=lambda data_dir: digits.load(), tfds=False))  # fmt: skip
register(Dataset("imagenet2012", "ImageNet", 1000, (224, 224, 3),
                 {"train": 1_281_167, "validation": 50_000}))  # fmt: skip
