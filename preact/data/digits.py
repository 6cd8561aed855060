"""scikit-learn's handwritten digits as a small, real, offline dataset for smoke runs.

`sklearn.datasets.load_digits()` ships 1,797 8x8 grey images (pixel values 0..16) of the digits
0-9 inside the scikit-learn wheel, so training runs end to end with no download. The images are
rescaled to uint8 (round(v * 255 / 16)) and split once, by a permutation drawn from
`numpy.random.default_rng(0)`: its first 1,437 indices are the training set and the last 360 the
test set (an 80/20 split, fixed for every run and machine).
"""

import numpy as np

from preact.data import datasets
from preact.data.arrays import InMemoryDataset, LabeledImages

NUM_TRAIN = 1437
NUM_TEST = 360
_SPLIT_SEED = 0


def load() -> InMemoryDataset:
    from sklearn.datasets import load_digits  # scikit-learn is only needed for this dataset

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int32)
    order = np.random.default_rng(_SPLIT_SEED).permutation(len(images))
    train, test = order[:NUM_TRAIN], order[NUM_TRAIN:]
    return InMemoryDataset(
        name="digits",
        train=LabeledImages(images[train], labels[train]),
        test=LabeledImages(images[test], labels[test]),
        num_classes=10,
        description=f"digits (scikit-learn load_digits, {NUM_TRAIN} train / {NUM_TEST} test)",
    )


# Bundled with scikit-learn's wheel: no files to find, no TFDS copy. A mirrored digit is another
# symbol, so flips are not label-safe.
datasets.register(
    datasets.Dataset(
        name="digits",
        title="scikit-learn's digits",
        num_classes=10,
        image_shape=(8, 8, 1),
        splits={"train": NUM_TRAIN, "test": NUM_TEST},
        load=lambda data_dir: load(),
        tfds=False,
        flip_keeps_label=False,
    )
)
