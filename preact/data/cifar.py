"""CIFAR-10 and CIFAR-100 from the official archives of https://www.cs.toronto.edu/~kriz/cifar.html.

Both official formats are read straight from the .tar.gz, in one pass and without extracting
anything to disk or needing TensorFlow:
- python (`cifar-10-python.tar.gz`, `cifar-100-python.tar.gz`): pickled dicts whose `data` is
  uint8 [n, 3072] in channel-major order (1024 red, 1024 green, 1024 blue values, rows top to
  bottom). The pickles are loaded with an unpickler that only admits numpy arrays, so an archive
  from an untrusted mirror cannot run code.
- binary (`cifar-10-binary.tar.gz`, `cifar-100-binary.tar.gz`): fixed-length records of
  <label byte><3072 pixel bytes>, or <coarse byte><fine byte><3072 pixel bytes> for CIFAR-100.

The result is uint8 NHWC images, the fine labels and, for CIFAR-100, the 20 coarse labels: the 50k
training images and the 10k test images that the paper trains and reports on
(docs/reproduction.md#the-papers-cifar-recipe). Every archive is checked against the md5 published
on the dataset page (the same digests torchvision uses) before it is read.
"""

import dataclasses
import importlib
import io
import logging
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from preact.data import datasets
from preact.data import download as download_lib
from preact.data.arrays import InMemoryDataset, LabeledImages
from preact.data.errors import DataError, DataNotFoundError

# The dataset page moved to cave.cs.toronto.edu; the md5 check makes any mirror safe to use.
_BASE_URLS = ("https://www.cs.toronto.edu/~kriz/", "https://cave.cs.toronto.edu/kriz/")
_IMAGE_BYTES = 32 * 32 * 3

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ArchiveSpec:
    """One official archive: its file name, published md5 and internal layout."""

    dataset: str  # 'cifar10' or 'cifar100'
    fmt: str  # 'python' or 'binary'
    filename: str
    md5: str
    train_members: tuple[str, ...]
    test_member: str
    num_classes: int

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(base + self.filename for base in _BASE_URLS)


def _cifar10(fmt: str, filename: str, md5: str) -> ArchiveSpec:
    folder, ext = (
        ("cifar-10-batches-py", "") if fmt == "python" else ("cifar-10-batches-bin", ".bin")
    )
    return ArchiveSpec(
        dataset="cifar10",
        fmt=fmt,
        filename=filename,
        md5=md5,
        train_members=tuple(f"{folder}/data_batch_{i}{ext}" for i in range(1, 6)),
        test_member=f"{folder}/test_batch{ext}",
        num_classes=10,
    )


def _cifar100(fmt: str, filename: str, md5: str) -> ArchiveSpec:
    folder, ext = ("cifar-100-python", "") if fmt == "python" else ("cifar-100-binary", ".bin")
    return ArchiveSpec(
        dataset="cifar100",
        fmt=fmt,
        filename=filename,
        md5=md5,
        train_members=(f"{folder}/train{ext}",),
        test_member=f"{folder}/test{ext}",
        num_classes=100,
    )


# In order of preference: when both formats are present the python archive is read.
ARCHIVES: dict[str, tuple[ArchiveSpec, ...]] = {
    "cifar10": (
        _cifar10("python", "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
        _cifar10("binary", "cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530"),
    ),
    "cifar100": (
        _cifar100("python", "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),
        _cifar100("binary", "cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8"),
    ),
}
NUM_COARSE_CLASSES = 20


def find_archive(dataset: str, directory: Path) -> tuple[ArchiveSpec, Path] | None:
    """The first official archive of `dataset` present in `directory`, or None."""
    for spec in ARCHIVES[dataset]:
        path = directory / spec.filename
        if path.is_file():
            return spec, path
    return None


def missing_archive_hint(dataset: str, directory: Path) -> str:
    """Says which files to put where, for error messages."""
    python, binary = ARCHIVES[dataset]
    return (
        f"Put {python.filename} (md5 {python.md5}, from {python.urls[0]}) or {binary.filename} "
        f"(md5 {binary.md5}) into {directory}, or prepare the TFDS dataset {dataset!r} there."
    )


def load(dataset: str, directory: Path) -> InMemoryDataset:
    """Reads CIFAR `dataset` from its official archive in `directory`, downloading it if missing.

    A present archive must have its published md5; a download is verified the same way and only
    renamed into `directory` once complete.
    """
    found = find_archive(dataset, directory)
    if found is not None:
        spec, path = found
        download_lib.verify_md5(path, spec.md5)
    else:
        spec = ARCHIVES[dataset][0]
        path = directory / spec.filename
        try:
            download_lib.download(spec.urls, path, spec.md5)
        except DataNotFoundError as e:
            raise DataNotFoundError(
                f"No official {dataset} archive in {directory}, and {e}. "
                + missing_archive_hint(dataset, directory)
            ) from e
    return read_archive(path, spec)


def read_archive(path: Path, spec: ArchiveSpec) -> InMemoryDataset:
    """Parses an archive laid out as `spec` says (no checksum check; see `load`)."""
    members = _read_members(path, (*spec.train_members, spec.test_member))
    parse = _parse_python if spec.fmt == "python" else _parse_binary
    train_parts = [parse(members[m], spec, f"{path}:{m}") for m in spec.train_members]
    train = LabeledImages(
        images=np.concatenate([p.images for p in train_parts]),
        labels=np.concatenate([p.labels for p in train_parts]),
        coarse_labels=(
            np.concatenate([p.coarse_labels for p in train_parts])
            if spec.dataset == "cifar100"
            else None
        ),
    )
    test = parse(members[spec.test_member], spec, f"{path}:{spec.test_member}")
    log.info(
        "Read %s: %d train and %d test images from %s", spec.dataset, len(train), len(test), path
    )
    return InMemoryDataset(
        name=spec.dataset,
        train=train,
        test=test,
        num_classes=spec.num_classes,
        description=f"{spec.dataset} from {path} ({spec.fmt} archive)",
    )


def _read_members(path: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """Reads the named regular files of a .tar.gz in one sequential pass."""
    wanted = set(names)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    found[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(
            f"{path} is not a complete gzip-compressed tar archive ({type(e).__name__}: {e}); "
            "expected the official archive from the CIFAR page. Delete it and download it again."
        ) from e
    missing = [n for n in names if n not in found]
    if missing:
        raise DataError(
            f"{path} lacks {', '.join(missing)}: it is not the official {path.name} "
            "(expected the layout of the archive from the CIFAR page)."
        )
    return found


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Admits the few globals a pickled numpy array needs, so a pickle cannot run code."""

    _ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("_codecs", "encode"),  # how protocol 2 stores bytes
        }
    )

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if module.startswith("numpy") and module.endswith("multiarray"):
            # The archives name numpy 1's module; numpy 2 moved it to numpy._core.
            for candidate in ("numpy._core.multiarray", "numpy.core.multiarray"):
                try:
                    return getattr(importlib.import_module(candidate), name)
                except ImportError:
                    continue
        return super().find_class(module, name)


def _parse_python(blob: bytes, spec: ArchiveSpec, where: str) -> LabeledImages:
    try:
        batch = _ArraysOnlyUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except Exception as e:  # a damaged pickle can fail in many ways; all mean the same here
        raise DataError(f"{where} is not a CIFAR python batch (a pickled dict): {e}") from e
    if not isinstance(batch, dict):
        raise DataError(f"{where} is not a CIFAR python batch: found {type(batch).__name__}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    label_key = "labels" if spec.dataset == "cifar10" else "fine_labels"
    data = batch.get("data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(f"{where}: expected 'data' to be uint8 [n, {_IMAGE_BYTES}]")
    if data.shape[1] != _IMAGE_BYTES:
        raise DataError(f"{where}: expected 'data' of shape [n, {_IMAGE_BYTES}], got {data.shape}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = _labels(batch.get(label_key), len(data), spec.num_classes, f"{where} '{label_key}'")
    coarse = None
    if spec.dataset == "cifar100":
        coarse = _labels(
            batch.get("coarse_labels"), len(data), NUM_COARSE_CLASSES, f"{where} 'coarse_labels'"
        )
    return LabeledImages(np.ascontiguousarray(images), labels, coarse)


def _parse_binary(blob: bytes, spec: ArchiveSpec, where: str) -> LabeledImages:
    label_bytes = 1 if spec.dataset == "cifar10" else 2
    record = label_bytes + _IMAGE_BYTES
    if not blob or len(blob) % record:
        raise DataError(
            f"{where} has {len(blob)} bytes, not a whole number of {record}-byte records "
            f"(<{label_bytes} label byte(s)><{_IMAGE_BYTES} pixels>)"
        )
    rows = np.frombuffer(blob, np.uint8).reshape(-1, record)
    images = rows[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = _labels(rows[:, label_bytes - 1], len(rows), spec.num_classes, f"{where} labels")
    coarse = None
    if spec.dataset == "cifar100":
        coarse = _labels(rows[:, 0], len(rows), NUM_COARSE_CLASSES, f"{where} coarse labels")
    return LabeledImages(np.ascontiguousarray(images), labels, coarse)


def _labels(values, n: int, num_classes: int, what: str) -> np.ndarray:
    try:
        labels = np.asarray(values, dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{what}: expected {n} integer labels: {e}") from e
    if labels.shape != (n,):
        raise DataError(f"{what}: expected {n} labels, got shape {labels.shape}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{what}: expected labels in [0, {num_classes}), got {labels.min()}..{labels.max()}"
        )
    return labels.astype(np.int32)


# What the registry knows about CIFAR (preact.data.datasets). Horizontal flips keep the class
# ("a 32x32 crop is randomly sampled from the padded image or its horizontal flip", He et al.
# 2015 §4.2); the per-channel constants are fb.resnet.torch's (datasets/cifar10.lua,
# cifar100.lua: "computed from entire training set"), used by the Torch recipe.
for _name, _title, _classes, _stats in (
    ("cifar10", "CIFAR-10", 10, ((125.3, 123.0, 113.9), (63.0, 62.1, 66.7))),
    ("cifar100", "CIFAR-100", 100, ((129.3, 124.1, 112.4), (68.2, 65.4, 70.4))),
):
    datasets.register(
        datasets.Dataset(
            name=_name,
            title=_title,
            num_classes=_classes,
            image_shape=(32, 32, 3),
            splits={"train": 50_000, "test": 10_000},
            load=lambda data_dir, name=_name: load(name, data_dir),
            find_copy=lambda data_dir, name=_name: find_archive(name, data_dir),
            per_channel_stats=_stats,
        )
    )
