"""In-memory datasets: uint8 NHWC images with integer labels, as the readers return them."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class LabeledImages:
    """One split held in host memory.

    images: uint8 [N, H, W, C]. labels: int32 [N] (CIFAR-100: the 100 fine labels).
    coarse_labels: int32 [N] for CIFAR-100 (its 20 superclasses), else None.
    """

    images: np.ndarray
    labels: np.ndarray
    coarse_labels: np.ndarray | None = None

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 [N, H, W, C], got {self.images.dtype} {self.images.shape}"
            )
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels must be [{len(self.images)}], got {self.labels.shape}")

    def __len__(self) -> int:
        return len(self.images)


@dataclasses.dataclass(frozen=True)
class InMemoryDataset:
    """A dataset small enough to live in memory (CIFAR, digits): its train and test splits."""

    name: str
    train: LabeledImages
    test: LabeledImages
    num_classes: int
    description: str  # where the data came from, for the training log

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.train.images.shape[1:])
