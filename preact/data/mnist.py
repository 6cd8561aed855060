"""MNIST and Fashion-MNIST ('mnist', 'fashion_mnist') from their four official IDX files.

Both sets are 60,000 training and 10,000 test images, 28x28 grey, 10 classes, in the same four
files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
`t10k-labels-idx1-ubyte`, each gzip-compressed `.gz` or not; see preact.data.idx). They are
looked for, in this order, in:
1. `data_dir` itself (the files a user put there; one dataset per directory, since both sets use
   the same file names);
2. `data_dir/<name>_idx/`, where a download goes (not `data_dir/<name>/`, which is TFDS's);
3. the Debian location, for Fashion-MNIST `/usr/share/datasets/fashion-mnist/` (package
   `dataset-fashion-mnist`; there is no Debian package of MNIST). Debian ships the files
   recompressed, with other md5s than the published ones, so a copy found on disk is checked by
   its structure (the IDX headers, sizes, 28x28 images, labels 0..9), not by md5.
The first directory holding any of the four files is the copy; a file missing from it is an error,
except in the download directory, where the missing files are downloaded. The pipeline then tries a
TFDS-prepared copy, and only then downloads: from the official Fashion-MNIST bucket, or the PyTorch
mirror of MNIST (and the one TFDS uses), each file checked against its published md5 and renamed
into place only when complete (preact.data.download).

What a CIFAR config does with 28x28x1 images: the CIFAR stem (a 3x3 convolution, stride 1) takes
one channel as readily as three, and the three stages run at 28x28, 14x14 and 7x7 before the global
average pool. The default augmentation, 'pad_crop_flip' with crop_padding 4, pads 4 pixels on each
side and crops 28x28 back (shifts of up to 4 pixels), then flips half the images left to right.
The padding is zeros after normalization, i.e. "the mean": with 'per_pixel_mean' about the mean
image along the edge, which is background (0) for MNIST, whose digits were scaled into a 20x20 box
and centred; for Fashion-MNIST it averages 12 along the border (up to 54 where garments reach the
edge), a dim grey against the black background. Horizontal flips keep the class of clothes, and
many entries of the benchmark table in the Fashion-MNIST README train with random crops and
horizontal flips. A mirrored digit is not the same digit, so for 'mnist' set random_flip to False
(the pipeline warns when it is not).
"""

import dataclasses
import logging
from pathlib import Path

import numpy as np

from preact.data import datasets, idx
from preact.data import download as download_lib
from preact.data.arrays import InMemoryDataset, LabeledImages
from preact.data.errors import DataError, DataNotFoundError

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IMAGE_SIZE = 28
NUM_CLASSES = 10

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Source:
    """Where one of the two datasets comes from: mirrors, published md5s of the .gz files."""

    title: str
    base_urls: tuple[str, ...]
    md5: dict[str, str]  # by file name without .gz
    class_names: tuple[str, ...]


SOURCES = {
    "fashion_mnist": Source(
        title="Fashion-MNIST",
        # md5s from the table in the README of github.com/zalandoresearch/fashion-mnist.
        base_urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        md5=dict(
            zip(
                FILES,
                (
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    "25c81989df183df01b3e8a0aad5dffbe",
                    "bef4ecab320f06d8554ea6380940ec79",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ),
                strict=True,
            )
        ),
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
    "mnist": Source(
        title="MNIST",
        # yann.lecun.com refuses downloads now; these mirrors serve the same files (torchvision's
        # and TFDS's), and the md5 check makes any mirror safe.
        base_urls=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        md5=dict(
            zip(
                FILES,
                (
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                    "d53e105ee54ea40749a09fcbcd1e9432",
                    "9fb629c4189551a2d022fa330f9573f3",
                    "ec29112dd5afa0611ce80d1b7f02629c",
                ),
                strict=True,
            )
        ),
        class_names=tuple(str(d) for d in range(10)),
    ),
}
# Read at call time, so tests can point it elsewhere and never read /usr/share.
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "fashion_mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}
DEBIAN_PACKAGES = {"fashion_mnist": "dataset-fashion-mnist"}  # what installs SYSTEM_DIRS


def download_dir(name: str, data_dir: Path) -> Path:
    return data_dir / f"{name}_idx"


def candidate_dirs(name: str, data_dir: Path) -> tuple[Path, ...]:
    """The directories searched for the files of `name`, in order."""
    return (data_dir, download_dir(name, data_dir), *SYSTEM_DIRS.get(name, ()))


def find_copy(name: str, data_dir: Path) -> Path | None:
    """The first directory holding any of the four files of `name`, or None."""
    for directory in candidate_dirs(name, data_dir):
        if any(_locate(directory, f) is not None for f in FILES):
            return directory
    return None


def missing_files_hint(name: str, data_dir: Path) -> str:
    """Says which files to put where, for error messages."""
    source = SOURCES[name]
    package = DEBIAN_PACKAGES.get(name)
    debian = f" or install the Debian package {package}," if package else ""
    return (
        f"Put {', '.join(f + '.gz' for f in FILES)} (from {source.base_urls[0]}; gzip-compressed "
        f"or not) into {data_dir},{debian} or prepare the TFDS dataset {name!r} there."
    )


def load(name: str, data_dir: Path) -> InMemoryDataset:
    """Reads `name` from the first copy of its IDX files, downloading them if there is none."""
    source = SOURCES[name]
    directory = find_copy(name, data_dir)
    target = download_dir(name, data_dir)
    if directory is None or directory == target:
        _download_missing(name, data_dir, found_any=directory is not None)
        directory = target
    paths = {}
    for file in FILES:
        paths[file] = _locate(directory, file)
        if paths[file] is None:
            raise DataNotFoundError(
                f"{directory / file}(.gz) is missing: {directory} holds only some of the four "
                f"{source.title} IDX files ({', '.join(FILES)}; each .gz or not)"
            )
    train = _split(paths["train-images-idx3-ubyte"], paths["train-labels-idx1-ubyte"])
    test = _split(paths["t10k-images-idx3-ubyte"], paths["t10k-labels-idx1-ubyte"])
    log.info("Read %s: %d train and %d test images from %s", name, len(train), len(test), directory)
    return InMemoryDataset(
        name=name,
        train=train,
        test=test,
        num_classes=NUM_CLASSES,
        description=f"{name} from {directory} (IDX files, {len(train)} train / {len(test)} test)",
    )


def _locate(directory: Path, file: str) -> Path | None:
    """`file` in `directory`, uncompressed (preferred: no decompression) or .gz; None if neither."""
    for candidate in (directory / file, directory / f"{file}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _download_missing(name: str, data_dir: Path, *, found_any: bool) -> None:
    source, target = SOURCES[name], download_dir(name, data_dir)
    for file in FILES:
        if _locate(target, file) is not None:
            continue
        urls = [base + f"{file}.gz" for base in source.base_urls]
        try:
            download_lib.download(urls, target / f"{file}.gz", source.md5[file])
        except DataNotFoundError as e:
            if found_any:
                where = f"{target} holds only part of {name}"
            else:
                where = f"No {name} IDX files in " + ", ".join(
                    str(d) for d in candidate_dirs(name, data_dir)
                )
            raise DataNotFoundError(
                f"{where}, and {e}. " + missing_files_hint(name, data_dir)
            ) from e


def _split(images_path: Path, labels_path: Path) -> LabeledImages:
    images = idx.read_images(images_path)
    labels = idx.read_labels(labels_path)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(
            f"{images_path} holds {images.shape[1]}x{images.shape[2]} images, expected "
            f"{IMAGE_SIZE}x{IMAGE_SIZE}"
        )
    if len(labels) != len(images):
        raise DataError(
            f"{labels_path} holds {len(labels)} labels but {images_path.name} holds "
            f"{len(images)} images; the counts must agree"
        )
    if len(labels) and labels.max() >= NUM_CLASSES:
        raise DataError(
            f"{labels_path} holds label {labels.max()}, expected labels 0..{NUM_CLASSES - 1}"
        )
    return LabeledImages(images[..., None], labels.astype(np.int32))


# What the registry knows about both (preact.data.datasets). Mirrored clothes keep their class;
# a mirrored digit is another digit, so flips are not label-safe for MNIST.
for _name, _flip_keeps_label in (("mnist", False), ("fashion_mnist", True)):
    datasets.register(
        datasets.Dataset(
            name=_name,
            title=SOURCES[_name].title,
            num_classes=NUM_CLASSES,
            image_shape=(IMAGE_SIZE, IMAGE_SIZE, 1),
            splits={"train": 60_000, "test": 10_000},
            load=lambda data_dir, name=_name: load(name, data_dir),
            find_copy=lambda data_dir, name=_name: find_copy(name, data_dir),
            flip_keeps_label=_flip_keeps_label,
        )
    )
