"""make_pipeline's settings: every bad value gives one DataError that names the field."""

import jax
import pytest

from preact.data import DataError, make_pipeline
from tests.helpers import data_config


def build(cfg, num_devices=1, **kwargs):
    return make_pipeline(cfg, devices=jax.local_devices()[:num_devices], **kwargs)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("data_source", "hdfs", r"config.data_source = 'hdfs' is not one of \('auto', 'archive'"),
        ("normalization", "zca", r"config.normalization = 'zca' is not one of"),
        ("augment", "mixup", r"config.augment = 'mixup' is not one of"),
        ("batch_size", 0, r"config.batch_size must be an int >= 1, got 0"),
        ("eval_batch_size", 2.5, r"config.eval_batch_size must be an int >= 1, got 2.5"),
        ("seed", -1, r"config.seed must be an int >= 0, got -1"),
        ("seed", 2**32, r"config.seed must be < 2\*\*32"),
        ("crop_padding", -4, r"config.crop_padding must be an int >= 0"),
        ("random_flip", "yes", r"config.random_flip must be a bool"),
        (
            "random_erasing",
            1.5,
            r"config.random_erasing must be a probability in \[0, 1\], got 1.5",
        ),
        ("random_erasing", -0.1, r"config.random_erasing must be a probability in \[0, 1\]"),
        ("random_erasing", "yes", r"config.random_erasing must be a probability in \[0, 1\]"),
        ("random_erasing", True, r"config.random_erasing must be a probability in \[0, 1\]"),
        ("dataset", "", r"config.dataset is empty"),
        ("data_source", "tfds", r"config.data_source must be 'auto' for 'digits', got 'tfds'"),
        ("batch_size", 4096, r"config.batch_size = 4096 exceeds the 1437 training examples"),
        ("train_split", "validation", r"config.train_split = 'validation' does not exist"),
    ],
)
def test_bad_values(field, value, message):
    # A plain dict: a ConfigDict would itself refuse some of these values (a float for an int).
    with pytest.raises(DataError, match=message):
        build({**data_config().to_dict(), field: value})


def test_random_erasing_needs_the_in_memory_augmentation():
    # Erasing lives in the on-device pad_crop_flip step; asked for with another augmentation it
    # would silently do nothing.
    with pytest.raises(DataError, match=r"config.random_erasing = 0.5 needs config.augment"):
        build(data_config(augment="none", random_erasing=0.5))


def test_missing_field():
    cfg = data_config()
    del cfg["normalization"]
    with pytest.raises(DataError, match=r"config.normalization is missing"):
        build(cfg)


def test_batch_must_split_over_hosts_and_devices():
    with pytest.raises(DataError, match=r"config.batch_size = 31 is not divisible by .* = 2 \* 1"):
        build(data_config(batch_size=31), process_index=1, process_count=2)
    with pytest.raises(DataError, match=r"process_index 2 is not in \[0, 2\)"):
        build(data_config(), process_index=2, process_count=2)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(train_scale_range=(4, 12)), r"image_size \(8\) <= low <= high"),
        (dict(eval_crops=((8, 10),)), r"crop <= shorter side"),
        (dict(eval_crops=((8, 8), (9, 8))), r"two evaluations of the same crop size"),
        (dict(image_size=0), r"config.image_size must be an int >= 1"),
        (dict(num_data_workers=-1), r"config.num_data_workers must be an int >= 1"),
    ],
)
def test_bad_streaming_values(overrides, message):
    cfg = data_config(augment="scale_jitter", image_size=8, train_scale_range=(8, 12))
    cfg.update(overrides)
    with pytest.raises(DataError, match=message):
        build(cfg)
