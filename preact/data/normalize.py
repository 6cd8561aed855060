"""Input normalization: the paper's mean image or the Torch recipe's per-channel mean and std.

- 'per_pixel_mean': subtract the mean training image, no division ("32x32 images, with the
  per-pixel mean subtracted", He et al. 2015 §4.2, which the paper follows). Values stay on the
  0..255 scale.
- 'per_channel': (x - mean_c) / std_c on 0..255 values, as fb.resnet.torch does (the Torch
  recipe, docs/reproduction.md#the-torch-recipe-torch), with the published constants a
  dataset's registry entry states (``per_channel_stats``: CIFAR-10/100 and ImageNet) and
  statistics computed from the training images for any other dataset.

For streamed datasets (ImageNet) the images differ in size and every crop lands somewhere else, so
the mean over crops is the same at every pixel: there 'per_pixel_mean' subtracts the per-channel
mean and 'per_channel' also divides by the per-channel std.
"""

import dataclasses
from collections.abc import Iterable

import numpy as np

from preact.data import datasets

MODES = ("per_pixel_mean", "per_channel")


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
    stats = published_stats(dataset)
    mean, std = stats if stats is not None else channel_stats([train_images])
    return _per_channel(mean, std)


def for_stream(mode: str, dataset: str, sample: Iterable[np.ndarray]) -> Normalization:
    """Normalization of a streamed dataset; `sample` (uint8 images) is read only if needed."""
    stats = published_stats(dataset)
    mean, std = stats if stats is not None else channel_stats(sample)
    if mode == "per_pixel_mean":
        std = np.ones_like(np.asarray(mean))
    return _per_channel(mean, std)


def published_stats(dataset: str):
    """The registered (mean, std) per channel of ``dataset``, or None (compute them)."""
    entry = datasets.DATASETS.get(dataset)
    return entry.per_channel_stats if entry is not None else None


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
