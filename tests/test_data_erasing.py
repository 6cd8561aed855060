"""Random erasing (preact.data.augment.random_erasing) on the on-device pipeline: one rectangle
of the mean value, of the documented size, in the documented share of images, nothing else."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from preact.data import augment, device_pipeline, normalize
from preact.data.arrays import InMemoryDataset, LabeledImages

SIZE, BATCH = 28, 256


def _pipeline(erasing, seed=0):
    rng = np.random.default_rng(0)
    # Pixels in 1..255 around a mean image far from every pixel: no unerased pixel normalizes to 0.
    images = rng.integers(1, 256, (BATCH, SIZE, SIZE, 1), dtype=np.uint8)
    images[:, ::2] = 255
    train = LabeledImages(images, np.zeros(BATCH, np.int32))
    data = InMemoryDataset("synthetic", train, train, 10, "synthetic")
    norm = normalize.Normalization(np.zeros((SIZE, SIZE, 1), np.float32), np.float32(1.0))
    return device_pipeline.DevicePipeline(
        data,
        norm,
        train=train,
        evaluation=train,
        batch_size=BATCH,
        eval_batch_size=BATCH,
        seed=seed,
        padding=2,
        flip=True,
        erasing=erasing,
        devices=jax.local_devices()[:1],
        process_index=0,
        process_count=1,
    )


def _rectangles(plain, erased):
    """(top, left, h, w) of the changed pixels of each image, None where nothing changed; fails
    unless the changed pixels form one solid rectangle set to 0."""
    found = []
    for a, b in zip(plain, erased, strict=True):
        changed = np.any(a != b, axis=-1)
        if not changed.any():
            found.append(None)
            continue
        rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
        top, left = rows[0], cols[0]
        h, w = rows[-1] - top + 1, cols[-1] - left + 1
        block = np.zeros_like(changed)
        block[top : top + h, left : left + w] = True
        # The padding of the crop is 0 too: an erased pixel there does not change; so the changed
        # pixels are the rectangle minus padding, and the rectangle is 0 everywhere.
        assert np.all(b[block] == 0), "erased pixels must take the mean value, 0"
        assert np.all(changed <= block)
        found.append((top, left, h, w))
    return found


@pytest.mark.parametrize("step", [0, 5])
def test_erasing_in_the_pipeline_zeroes_one_rectangle_after_the_same_crop_and_flip(step):
    plain = np.asarray(_pipeline(0.0).train_batch(step)["image"])[0]
    erased = np.asarray(_pipeline(1.0).train_batch(step)["image"])[0]
    # Same crop and flip with and without erasing (erasing draws from its own fold of each
    # key), and with probability 1 every image changes.
    assert all(r is not None for r in _rectangles(plain, erased))


def test_the_rectangles_have_the_documented_sizes_and_reach_every_position():
    keys = augment.example_keys(jax.random.key(0), jnp.int32(0), jnp.arange(4 * BATCH))
    erased = np.asarray(
        augment.random_erasing(jnp.ones((4 * BATCH, SIZE, SIZE, 1)), keys, probability=1.0)
    )
    rects = _rectangles(np.ones_like(erased), erased)
    for (_, _, h, w), image in zip(rects, erased, strict=True):
        assert (image == 0).sum() == h * w  # one solid rectangle, nothing else
    low, high = augment.ERASING_AREA
    areas = np.array([h * w for _, _, h, w in rects]) / SIZE**2
    # Rounding each side to whole pixels and cutting to the image widen the range a little.
    assert areas.min() >= low * 0.5 and areas.max() <= high * 1.3
    assert areas.mean() == pytest.approx((low + high) / 2, abs=0.05)
    aspects = np.array([h / w for _, _, h, w in rects])
    assert aspects.min() < 0.6 and aspects.max() > 1.8  # tall and wide rectangles both occur
    assert min(t for t, _, _, _ in rects) == 0 and min(left for _, left, _, _ in rects) == 0
    # Rectangles shorter than the image reach the far edges too: every position is drawn.
    assert max(t + h for t, _, h, _ in rects if h < SIZE) == SIZE
    assert max(left + w for _, left, _, w in rects if w < SIZE) == SIZE


def test_the_probability_is_the_share_of_erased_images_and_zero_is_off():
    plain = np.asarray(_pipeline(0.0).train_batch(3)["image"])[0]
    half = np.asarray(_pipeline(0.5).train_batch(3)["image"])[0]
    share = np.mean([r is not None for r in _rectangles(plain, half)])
    assert 0.4 < share < 0.6  # 256 draws: 0.5 +- 0.1 is over 3 standard deviations
    assert not np.array_equal(plain, half)


def test_erasing_is_a_function_of_seed_and_step():
    a, b = _pipeline(0.5), _pipeline(0.5)
    np.testing.assert_array_equal(a.train_batch(7)["image"], b.train_batch(7)["image"])
    assert not np.array_equal(a.train_batch(7)["image"], a.train_batch(8)["image"])
    other = _pipeline(0.5, seed=1).train_batch(7)["image"]
    assert not np.array_equal(a.train_batch(7)["image"], other)
