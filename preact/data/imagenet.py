"""ImageNet augmentation and evaluation crops on the host, one decoded image at a time, with PIL.

Training (docs/reproduction.md#the-imagenet-recipe):
- 'scale_jitter', the paper's (He et al. 2015 §3.4): resize the shorter side to s ~ U{256, ...,
  480}, take a random 224x224 crop, flip horizontally with probability 1/2.
- 'inception_crop', fb.resnet.torch's RandomSizedCrop (used for the paper's † ResNet-200 row):
  a crop of area fraction U(0.08, 1) and aspect ratio U(3/4, 4/3) (width and height swapped with
  probability 1/2), up to 10 tries, else resize + centre crop; resized to 224x224, then flipped
  with probability 1/2. Its colour jitter and PCA lighting are not reproduced.
Evaluation: resize the shorter side to s and take the single centre crop: 224 from s = 256 and
320 from s = 320 (the paper's §5; it does not say where the crop is, the centre is our choice).

All resizing is bicubic, as in fb.resnet.torch's transforms.lua.
"""

import math

import numpy as np
from PIL import Image

from preact.data import datasets

_RESAMPLE = Image.Resampling.BICUBIC


def scale_jitter(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    scale_range: tuple[int, int],
    size: int,
    flip: bool,
) -> np.ndarray:
    """Shorter side resized to U{scale_range}, random size x size crop, random flip."""
    shorter = int(rng.integers(scale_range[0], scale_range[1], endpoint=True))
    resized = resize_shorter_side(_to_pil(image), shorter)
    top = int(rng.integers(0, resized.height - size, endpoint=True))
    left = int(rng.integers(0, resized.width - size, endpoint=True))
    crop = resized.crop((left, top, left + size, top + size))
    return _maybe_flip(_to_array(crop, image), rng, flip)


def inception_crop(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    size: int,
    flip: bool,
    area_range: tuple[float, float] = (0.08, 1.0),
    aspect_range: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> np.ndarray:
    """fb.resnet.torch's RandomSizedCrop(size), then a random flip."""
    pil = _to_pil(image)
    height, width = image.shape[:2]
    for _ in range(attempts):
        area = rng.uniform(*area_range) * height * width
        aspect = rng.uniform(*aspect_range)
        crop_w = round(math.sqrt(area * aspect))
        crop_h = round(math.sqrt(area / aspect))
        if rng.random() < 0.5:
            crop_w, crop_h = crop_h, crop_w
        if crop_h <= height and crop_w <= width:
            top = int(rng.integers(0, height - crop_h, endpoint=True))
            left = int(rng.integers(0, width - crop_w, endpoint=True))
            box = (left, top, left + crop_w, top + crop_h)
            out = pil.resize((size, size), _RESAMPLE, box=box)
            break
    else:
        out = center_crop(resize_shorter_side(pil, size), size)
    return _maybe_flip(_to_array(out, image), rng, flip)


def center_crop_eval(image: np.ndarray, *, resize: int, crop: int) -> np.ndarray:
    """Shorter side resized to `resize`, then the centre crop x crop."""
    return _to_array(center_crop(resize_shorter_side(_to_pil(image), resize), crop), image)


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    scale = size / min(width, height)
    new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
    return image if new_size == image.size else image.resize(new_size, _RESAMPLE)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    left = (image.width - size) // 2
    top = (image.height - size) // 2
    return image.crop((left, top, left + size, top + size))


def _to_pil(image: np.ndarray) -> Image.Image:
    # Single-channel images go through PIL's 'L' mode and come back with their channel axis.
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def _to_array(image: Image.Image, like: np.ndarray) -> np.ndarray:
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if like.shape[-1] == 1 else array


def _maybe_flip(image: np.ndarray, rng: np.random.Generator, flip: bool) -> np.ndarray:
    # The flip draw is always made, so flip=False does not shift the random stream.
    flipped = rng.random() < 0.5
    return image[:, ::-1] if flip and flipped else image


# What the registry knows about ImageNet (preact.data.datasets). Its images come only from a
# TFDS-prepared copy (preact.data.tfds_source); a flip keeps the class (the paper's scale
# augmentation flips); the per-channel constants are fb.resnet.torch's (datasets/imagenet.lua,
# there on the 0..1 scale).
datasets.register(
    datasets.Dataset(
        name="imagenet2012",
        title="ImageNet",
        num_classes=1000,
        image_shape=(224, 224, 3),
        splits={"train": 1_281_167, "validation": 50_000},
        per_channel_stats=(
            tuple(255.0 * m for m in (0.485, 0.456, 0.406)),
            tuple(255.0 * s for s in (0.229, 0.224, 0.225)),
        ),
    )
)
