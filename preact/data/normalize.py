"""Input normalization: the paper's mean image or the Torch recipe's per-channel mean and std.

- 'per_pixel_mean': subtract the mean training image, no division ("32x32 images, with the
  per-pixel mean subtracted", He et al. 2015 §4.2, which the paper follows). Values stay on the
  0..255 scale.
- 'per_channel': (x - mean_c) / std_c on 0..255 values, as fb.resnet.torch does (the Torch
  recipe, docs/reproduction.md#the-torch-recipe-torch), with its published constants for
  CIFAR-10/100 and ImageNet and statistics computed from the training images for any other
  dataset.

For streamed datasets (ImageNet) the images differ in size and every crop lands somewhere else, so
the mean over crops is the same at every pixel: there 'per_pixel_mean' subtracts the per-channel
mean and 'per_channel' also divides by the per-channel std.
"""

import dataclasses
from collections.abc import Iterable

import numpy as np

MODES = ("per_pixel_mean", "per_channel")

# fb.resnet.torch datasets/cifar10.lua, cifar100.lua ("computed from entire training set").
CIFAR10_MEAN, CIFAR10_STD = (125.3, 123.0, 113.9), (63.0, 62.1, 66.7)
CIFAR100_MEAN, CIFAR100_STD = (129.3, 124.1, 112.4), (68.2, 65.4, 70.4)
# fb.resnet.torch datasets/imagenet.lua, there on the 0..1 scale.
IMAGENET_MEAN = tuple(255.0 * m for m in (0.485, 0.456, 0.406))
IMAGENET_STD = tuple(255.0 * s for s in (0.229, 0.224, 0.225))
PER_CHANNEL_CONSTANTS = {
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
    "cifar100": (CIFAR100_MEAN, CIFAR100_STD),
    "imagenet2012": (IMAGENET_MEAN, IMAGENET_STD),
}


@dataclasses.dataclass(frozen=True)
class Normalization:
    """x -> (x - mean) * scale. mean: float32 [H, W, C] or [C]; scale: float32 [C]."""

    mean: np.ndarray
    scale: np.ndarray

    def __call__(self, images):
        """Works on numpy and jax arrays of uint8 or float images [..., H, W, C]."""
        return (images.astype(np.float32) - self.mean) * self.scale


def for_arrays(mode: str, dataset: str, train_images: np.ndarray) -> Normalization:
    """Normalization of a dataset held in memory, from its uint8 training images [N, H, W, C]."""
    channels = train_images.shape[-1]
    if mode == "per_pixel_mean":
        mean_image = train_images.mean(axis=0, dtype=np.float64)
        return Normalization(mean_image.astype(np.float32), np.ones((channels,), np.float32))
    if dataset in PER_CHANNEL_CONSTANTS:
        mean, std = PER_CHANNEL_CONSTANTS[dataset]
    else:
        mean, std = channel_stats([train_images])
    return _per_channel(mean, std)


def for_stream(mode: str, dataset: str, sample: Iterable[np.ndarray]) -> Normalization:
    """Normalization of a streamed dataset; `sample` (uint8 images) is read only if needed."""
    if dataset in PER_CHANNEL_CONSTANTS:
        mean, std = PER_CHANNEL_CONSTANTS[dataset]
    else:
        mean, std = channel_stats(sample)
    if mode == "per_pixel_mean":
        std = np.ones_like(np.asarray(mean))
    return _per_channel(mean, std)


def channel_stats(images: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over all pixels of uint8 images [..., H, W, C] of any size."""
    total = total_sq = count = 0
    for batch in images:
        pixels = np.asarray(batch, np.float64).reshape(-1, batch.shape[-1])
        total = total + pixels.sum(axis=0)
        total_sq = total_sq + np.square(pixels).sum(axis=0)
        count += len(pixels)
    mean = total / count
    return mean, np.sqrt(np.maximum(total_sq / count - np.square(mean), 1e-12))


def _per_channel(mean, std) -> Normalization:
    mean = np.asarray(mean, np.float32)
    return Normalization(mean, (1.0 / np.asarray(std, np.float64)).astype(np.float32))
