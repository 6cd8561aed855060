"""Datasets prepared the TFDS way, read with `tfds.data_source` (ArrayRecord; no TensorFlow).

`tfds.data_source` gives random access to a prepared dataset (imagenet2012, cifar10, or any other
with an 'image' and a 'label' feature) and decodes images with PIL, so nothing here imports
TensorFlow. Preparing a dataset that is not there yet (`download_and_prepare`) does need
TensorFlow; it is attempted only where TensorFlow is importable (e.g. Colab) and always in the
ArrayRecord format that `data_source` reads.
"""

import dataclasses
import functools
import importlib.util
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from preact.data.arrays import InMemoryDataset, LabeledImages
from preact.data.errors import DataError, DataNotFoundError

log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    """TFDS's own default, $TFDS_DATA_DIR, else ~/tensorflow_datasets, found as TFDS finds it
    but without importing it: digits and the IDX datasets use this directory too, and must run
    where tensorflow-datasets is not installed."""
    return Path(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets").expanduser()


@functools.cache
def tfds_available() -> bool:
    return importlib.util.find_spec("tensorflow_datasets") is not None


def _tfds():
    """``tensorflow_datasets``, or one line saying how to install it (an optional package)."""
    if not tfds_available():
        raise DataError(
            "reading this dataset through TFDS needs tensorflow-datasets, which is not "
            "installed: pip install 'tensorflow-datasets>=4.9.10' array-record"
        )
    import tensorflow_datasets as tfds

    return tfds


@functools.cache
def tensorflow_available() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


@dataclasses.dataclass(frozen=True)
class TfdsDataset:
    """Random-access sources for a training and an evaluation split of one TFDS dataset."""

    name: str
    train: Sequence[dict[str, Any]]
    eval: Sequence[dict[str, Any]]
    num_classes: int
    image_shape: tuple[int | None, int | None, int]  # None where image sizes vary
    description: str


def is_prepared(name: str, data_dir: Path) -> bool:
    """Whether `name` is prepared under `data_dir` (False also for names TFDS does not know, and
    where tensorflow-datasets is not installed)."""
    if not tfds_available():
        return False
    tfds = _tfds()
    try:
        return tfds.builder(name, data_dir=data_dir).is_prepared()
    except Exception:  # unknown name, unreadable metadata: either way, not usable as prepared
        return False


def open_dataset(name: str, data_dir: Path, *, train_split: str, eval_split: str) -> TfdsDataset:
    """Opens `train_split` and `eval_split` of TFDS dataset `name` under `data_dir`.

    `eval_split` '' picks 'test', or 'validation' where there is no test split (imagenet2012).
    """
    builder = _builder(name, data_dir)
    features = builder.info.features
    for key in ("image", "label"):
        if features is None or key not in features:
            raise DataError(
                f"TFDS dataset {name!r} has no {key!r} feature; expected an image classification "
                "dataset with 'image' and 'label' features"
            )
    label = features["label"]
    if not hasattr(label, "num_classes"):
        raise DataError(f"TFDS dataset {name!r}: 'label' is not a ClassLabel feature")
    known_splits = set(builder.info.splits.keys()) if builder.info.splits else set()
    if not eval_split:
        has_validation_only = "validation" in known_splits and "test" not in known_splits
        eval_split = "validation" if has_validation_only else "test"
    train = open_split(name, train_split, data_dir, builder=builder)
    evaluation = open_split(name, eval_split, data_dir, builder=builder)
    image_shape = tuple(features["image"].shape)
    return TfdsDataset(
        name=name,
        train=train,
        eval=evaluation,
        num_classes=int(label.num_classes),
        image_shape=image_shape,
        description=f"{name} from TFDS in {data_dir} ({train_split}: {len(train)}, "
        f"{eval_split}: {len(evaluation)} examples)",
    )


def open_split(name: str, split: str, data_dir: Path, *, builder=None) -> Sequence[dict[str, Any]]:
    """A random-access source for `split` (any TFDS split spec, e.g. 'train[:45000]')."""
    tfds = _tfds()
    builder = builder or _builder(name, data_dir)
    splits = builder.info.splits
    if splits:  # empty when the dataset is not prepared (or mocked); data_source then decides
        try:
            splits[split]
        except (KeyError, ValueError) as e:
            raise DataError(
                f"TFDS dataset {name!r} has no split {split!r}; it has {sorted(splits.keys())}"
            ) from e
    prepare = tensorflow_available()
    try:
        return tfds.data_source(
            name,
            split=split,
            data_dir=data_dir,
            download=prepare,
            builder_kwargs={"file_format": "array_record"} if prepare else None,
        )
    except Exception as e:  # tfds raises many types here; turn each into one clear message
        if not builder.is_prepared():
            raise DataNotFoundError(
                f"TFDS dataset {name!r} is not prepared in {data_dir}. Prepare it there in the "
                "ArrayRecord format (e.g. `tfds build "
                f"{name} --data_dir={data_dir} --file_format=array_record`, which needs "
                "TensorFlow)."
            ) from e
        raise DataError(
            f"Cannot read split {split!r} of TFDS dataset {name!r} in {data_dir}: {e}. "
            "tfds.data_source needs the dataset prepared with file_format=array_record."
        ) from e


def _builder(name: str, data_dir: Path):
    tfds = _tfds()

    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise DataNotFoundError(
            f"Unknown dataset {name!r}: expected 'cifar10', 'cifar100', 'digits' or the name of a "
            f"TFDS dataset (registered, or prepared in {data_dir})"
        ) from e
    except Exception as e:  # corrupt metadata and the like
        raise DataError(f"Cannot open TFDS dataset {name!r} in {data_dir}: {e}") from e


def read_into_memory(dataset: TfdsDataset) -> InMemoryDataset:
    """Decodes every example of a fixed-image-size TFDS dataset (e.g. cifar10) into arrays."""
    if None in dataset.image_shape:
        raise DataError(
            f"TFDS dataset {dataset.name!r} has images of varying size {dataset.image_shape}; "
            "only fixed-size images can be held in memory (use augment 'scale_jitter' or "
            "'inception_crop', which stream)"
        )
    return InMemoryDataset(
        name=dataset.name,
        train=_read_split(dataset.train, dataset.image_shape),
        test=_read_split(dataset.eval, dataset.image_shape),
        num_classes=dataset.num_classes,
        description=dataset.description,
    )


def _read_split(source: Sequence[dict[str, Any]], shape: tuple[int, ...]) -> LabeledImages:
    n = len(source)
    images = np.empty((n, *shape), np.uint8)
    labels = np.empty((n,), np.int32)
    coarse = None
    for i in range(n):
        example = source[i]
        images[i] = example["image"]
        labels[i] = example["label"]
        if "coarse_label" in example:  # cifar100 in TFDS
            if coarse is None:
                coarse = np.empty((n,), np.int32)
            coarse[i] = example["coarse_label"]
    return LabeledImages(images, labels, coarse)
