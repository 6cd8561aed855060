"""ImageNet-style host augmentation and the streaming pipeline (served here from real digits)."""

import numpy as np
import pytest

from preact.data import imagenet, pipeline
from tests.helpers import data_config


def gradient_image(height, width):
    """Pixel values that encode the position, so crops and flips can be located."""
    rows = np.arange(height)[:, None] * np.ones((1, width))
    cols = np.ones((height, 1)) * np.arange(width)[None, :]
    return np.stack([rows, cols, rows + cols], axis=-1).astype(np.uint8)


def test_eval_crop_is_the_centre():
    image = gradient_image(20, 30)
    crop = imagenet.center_crop_eval(image, resize=20, crop=10)  # shorter side already 20
    np.testing.assert_array_equal(crop, image[5:15, 10:20])
    big = imagenet.center_crop_eval(gradient_image(40, 60), resize=32, crop=32)
    assert big.shape == (32, 32, 3) and big.dtype == np.uint8


@pytest.mark.parametrize("augment", ["scale_jitter", "inception_crop"])
def test_train_views_have_the_size_and_flip_half_the_time(augment):
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    if augment == "scale_jitter":
        kwargs = dict(scale_range=(16, 24), size=16)
        transform = imagenet.scale_jitter
    else:
        kwargs = dict(size=16)
        transform = imagenet.inception_crop
    flips = 0
    for seed in range(200):
        plain = transform(image, np.random.default_rng(seed), flip=False, **kwargs)
        maybe = transform(image, np.random.default_rng(seed), flip=True, **kwargs)
        assert plain.shape == (16, 16, 3) and plain.dtype == np.uint8
        if not np.array_equal(plain, maybe):
            np.testing.assert_array_equal(maybe, plain[:, ::-1])  # the same view, mirrored
            flips += 1
    assert 70 < flips < 130


def test_scale_jitter_crops_a_resized_image():
    # A constant image stays constant whatever the scale and crop: resizing never pads.
    image = np.full((30, 40, 3), 77, np.uint8)
    out = imagenet.scale_jitter(
        image, np.random.default_rng(1), scale_range=(16, 48), size=16, flip=True
    )
    assert np.all(out == 77)


def test_inception_crop_falls_back_to_the_centre():
    image = gradient_image(24, 36)
    impossible = imagenet.inception_crop(
        image, np.random.default_rng(0), size=12, flip=False, area_range=(2.0, 3.0)
    )
    np.testing.assert_array_equal(impossible, imagenet.center_crop_eval(image, resize=12, crop=12))


def test_grey_images_keep_their_channel():
    image = np.random.default_rng(0).integers(0, 256, (10, 12, 1), dtype=np.uint8)
    assert imagenet.scale_jitter(
        image, np.random.default_rng(0), scale_range=(8, 10), size=8, flip=True
    ).shape == (8, 8, 1)
    assert imagenet.center_crop_eval(image, resize=9, crop=8).shape == (8, 8, 1)


# The smoke config's digits, streamed with scale jitter at two test crops.
STREAMING = dict(
    batch_size=32,
    eval_batch_size=64,
    seed=3,
    normalization="per_pixel_mean",
    augment="scale_jitter",
    crop_padding=0,
    random_flip=False,
    image_size=8,
    train_scale_range=(8, 12),
    eval_crops=((8, 8), (12, 10)),
    num_data_workers=2,
)


def digits_config(**overrides):
    return data_config(**{**STREAMING, **overrides})


def build(num_devices=1, process_index=0, process_count=1, **overrides):
    import jax

    devices = [jax.local_devices()[0]] * num_devices  # streaming output only needs the count
    return pipeline.make_pipeline(
        digits_config(**overrides),
        devices=devices,
        process_index=process_index,
        process_count=process_count,
    )


def flat(batch):
    return {k: v.reshape(-1, *v.shape[2:]) for k, v in batch.items()}


def test_streaming_batches_are_pure_functions_of_seed_and_step():
    with build() as first, build(num_devices=4) as four, build(seed=4) as other:
        assert first.image_shape == (8, 8, 1) and first.eval_names == ("test_8", "test_10")
        a = first.train_batch(7)
        assert a["image"].shape == (1, 32, 8, 8, 1) and a["image"].dtype == np.float32
        assert a["label"].dtype == np.int32
        for step in (0, 1, 2):  # prefetching ahead does not change what a step gets
            first.train_batch(step)
        np.testing.assert_array_equal(first.train_batch(7)["image"], a["image"])
        b = four.train_batch(7)
        assert b["image"].shape == (4, 8, 8, 8, 1)
        np.testing.assert_array_equal(flat(b)["image"], flat(a)["image"])
        assert not np.array_equal(other.train_batch(7)["image"], a["image"])
        assert not np.array_equal(first.train_batch(8)["image"], a["image"])


def test_streaming_hosts_take_their_slices():
    with build() as single, build(2, 0, 2) as host0, build(2, 1, 2) as host1:
        parts = [flat(h.train_batch(44)) for h in (host0, host1)]
        expected = flat(single.train_batch(44))
        np.testing.assert_array_equal(
            np.concatenate([p["image"] for p in parts]), expected["image"]
        )


def test_streaming_eval_counts_every_example_once_per_crop():
    labels = {}
    for process_index in range(2):
        with build(2, process_index, 2) as host:
            for name in host.eval_names:
                for batch in host.eval_batches(name):
                    batch = flat(batch)
                    real = batch["mask"] == 1.0
                    assert np.all(batch["image"][~real] == 0.0)
                    labels.setdefault(name, []).extend(batch["label"][real])
    with build() as single:
        expected = sorted(
            label
            for batch in single.eval_batches()
            for label in flat(batch)["label"][flat(batch)["mask"] == 1]
        )
    assert len(expected) == 360
    for name in ("test_8", "test_10"):
        assert sorted(labels[name]) == expected
