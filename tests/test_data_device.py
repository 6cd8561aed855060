"""The on-device pipeline: what its augmentation, sharding, determinism and evaluation guarantee."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from numpy.lib.stride_tricks import sliding_window_view

from preact.data import device_pipeline, normalize
from preact.data.arrays import InMemoryDataset, LabeledImages

N_TRAIN, N_TEST, SIZE, PAD = 40, 13, 8, 2
DEVICE_COUNTS = [n for n in (1, 2, 4, 8) if n <= jax.local_device_count()]


def dataset():
    rng = np.random.default_rng(0)
    train = LabeledImages(
        rng.integers(0, 256, (N_TRAIN, SIZE, SIZE, 3), dtype=np.uint8),
        rng.integers(0, 5, N_TRAIN).astype(np.int32),
    )
    # Test labels are the example ids, so that evaluation coverage can be counted.
    test = LabeledImages(
        rng.integers(0, 256, (N_TEST, SIZE, SIZE, 3), dtype=np.uint8),
        np.arange(N_TEST, dtype=np.int32),
    )
    return InMemoryDataset("synthetic", train, test, N_TEST, "synthetic test data")


DATA = dataset()
NORM = normalize.for_arrays("per_pixel_mean", "synthetic", DATA.train.images)


def build(
    num_devices=1,
    *,
    devices=None,
    seed=0,
    batch=16,
    eval_batch=8,
    padding=PAD,
    flip=True,
    process_index=0,
    process_count=1,
):
    return device_pipeline.DevicePipeline(
        DATA,
        NORM,
        train=DATA.train,
        evaluation=DATA.test,
        batch_size=batch,
        eval_batch_size=eval_batch,
        seed=seed,
        padding=padding,
        flip=flip,
        devices=devices or jax.local_devices()[:num_devices],
        process_index=process_index,
        process_count=process_count,
    )


def global_batch(batch):
    return {k: np.asarray(v).reshape(-1, *v.shape[2:]) for k, v in batch.items()}


def source_views(padding):
    """All crops of the padded, normalized training images and their flips: [N, 2, dy, dx, ...]."""
    normalized = NORM(DATA.train.images)
    padded = np.pad(normalized, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    views = []
    for image in (padded, padded[:, :, ::-1]):
        windows = sliding_window_view(image, (SIZE, SIZE), axis=(1, 2))  # [N, dy, dx, C, H, W]
        views.append(windows.transpose(0, 1, 2, 4, 5, 3))
    return np.stack(views, axis=1)


def match(image, views):
    """(source index, flipped, dy, dx) of the view equal to `image` (exactly one expected)."""
    hits = np.argwhere(np.all(np.abs(views - image) < 1e-4, axis=(-3, -2, -1)))
    assert len(hits) == 1, f"{len(hits)} candidate sources"
    return tuple(int(v) for v in hits[0])


@pytest.mark.parametrize("num_devices", DEVICE_COUNTS)
def test_shapes_dtypes_and_sharding(num_devices):
    pipeline = build(num_devices)
    batch = pipeline.train_batch(0)
    b = 16 // num_devices
    assert batch["image"].shape == (num_devices, b, SIZE, SIZE, 3)
    assert batch["image"].dtype == np.float32 and batch["label"].dtype == np.int32
    assert batch["label"].shape == (num_devices, b)
    for value in batch.values():
        assert {s.device for s in value.addressable_shards} == set(
            jax.local_devices()[:num_devices]
        )
        assert all(s.data.shape[0] == 1 for s in value.addressable_shards)
        if num_devices > 1:
            assert value.sharding.spec == P("device")
    # A pmapped step over the same devices takes the batch as it is.
    means = jax.pmap(lambda x: x.mean(), devices=jax.local_devices()[:num_devices])(batch["image"])
    assert means.shape == (num_devices,)


def test_crops_are_shifts_of_the_padded_image_and_flips_half():
    pipeline = build(padding=PAD, flip=True)
    views = source_views(PAD)
    found = []
    for step in range(4 * pipeline.steps_per_epoch):
        batch = global_batch(pipeline.train_batch(step))
        for image, label in zip(batch["image"], batch["label"], strict=True):
            source, flipped, dy, dx = match(image, views)
            assert label == DATA.train.labels[source]
            found.append((step // pipeline.steps_per_epoch, source, flipped, dy, dx))
    found = np.array(found)
    flipped = found[:, 2].mean()
    assert 0.35 < flipped < 0.65, f"flipped {flipped:.0%} of the time"
    offsets = {(dy, dx) for dy, dx in found[:, 3:]}
    assert len(offsets) > 0.8 * (2 * PAD + 1) ** 2  # offsets are spread over the whole range
    for epoch in range(4):  # within an epoch each example is drawn at most once
        sources = found[found[:, 0] == epoch, 1]
        assert len(set(sources)) == len(sources) == pipeline.steps_per_epoch * 16


def test_no_augmentation_is_the_normalized_image():
    pipeline = build(padding=0, flip=False)
    views = source_views(0)
    batch = global_batch(pipeline.train_batch(3))
    for image in batch["image"]:
        _, flipped, dy, dx = match(image, views)
        assert (flipped, dy, dx) == (0, 0, 0)


def test_batch_is_a_pure_function_of_seed_and_step():
    first = build(seed=7)
    steps = [5, 0, 2 * first.steps_per_epoch + 1, 5]
    batches = [global_batch(first.train_batch(s)) for s in steps]
    np.testing.assert_array_equal(batches[0]["image"], batches[3]["image"])
    again = build(seed=7)  # a resumed run: a fresh pipeline, straight to step 5
    np.testing.assert_array_equal(global_batch(again.train_batch(5))["image"], batches[0]["image"])
    assert not np.array_equal(batches[0]["image"], batches[1]["image"])
    other_seed = global_batch(build(seed=8).train_batch(5))
    assert not np.array_equal(other_seed["image"], batches[0]["image"])
    compiled = device_pipeline._train_batch._cache_size()
    for step in range(3 * first.steps_per_epoch):
        first.train_batch(step)
    assert device_pipeline._train_batch._cache_size() == compiled  # steps and epochs never retrace


def test_every_epoch_draws_a_new_order_without_repeats():
    """Each epoch visits distinct examples, in an order of its own: a pipeline that reused one
    permutation (the epoch left out of the order's key) would show every epoch the same
    sequence of batches."""
    pipeline = build(padding=0, flip=False)  # untouched images: each one names its example
    source = NORM(DATA.train.images).reshape(N_TRAIN, -1)
    orders = []
    for epoch in range(3):
        order = []
        for i in range(pipeline.steps_per_epoch):
            images = global_batch(pipeline.train_batch(epoch * pipeline.steps_per_epoch + i))
            for image in images["image"].reshape(len(images["image"]), -1):
                (match,) = np.flatnonzero(np.all(source == image, axis=1))
                order.append(int(match))
        assert len(set(order)) == len(order) == pipeline.steps_per_epoch * 16  # no repeats
        orders.append(order)
    assert orders[0] != orders[1] and orders[1] != orders[2] and orders[0] != orders[2]


@pytest.mark.parametrize("num_devices", [n for n in DEVICE_COUNTS if n > 1] or [None])
def test_same_global_batch_on_one_or_many_devices(num_devices):
    if num_devices is None:
        pytest.skip("one device only (tests/conftest.py normally provides 8)")
    one, many = build(1), build(num_devices)
    for step in (0, 1, one.steps_per_epoch + 1):
        a, b = global_batch(one.train_batch(step)), global_batch(many.train_batch(step))
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])


def test_hosts_take_their_slices_of_the_global_batch():
    devices = jax.local_devices()
    half = max(1, len(devices) // 2)
    hosts = [
        build(devices=devices[:half], process_index=0, process_count=2),
        build(devices=devices[-half:], process_index=1, process_count=2),
    ]
    single = build(1)
    for step in (0, 3):
        expected = global_batch(single.train_batch(step))
        parts = [global_batch(h.train_batch(step)) for h in hosts]
        for key in ("image", "label"):
            np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), expected[key])


@pytest.mark.parametrize("num_devices", DEVICE_COUNTS)
def test_eval_is_untouched_and_counts_every_example_once(num_devices):
    pipeline = build(num_devices, eval_batch=8)
    images, labels, masks = [], [], []
    for batch in pipeline.eval_batches("test"):
        assert batch["image"].shape == (num_devices, 8 // num_devices, SIZE, SIZE, 3)
        assert batch["mask"].dtype == np.float32
        batch = global_batch(batch)
        images.append(batch["image"])
        labels.append(batch["label"])
        masks.append(batch["mask"])
    images, labels, masks = map(np.concatenate, (images, labels, masks))
    assert len(masks) == 16 and masks.sum() == N_TEST  # 13 examples in two batches of 8
    real = masks == 1.0
    np.testing.assert_array_equal(labels[real], np.arange(N_TEST))
    np.testing.assert_array_equal(images[real], NORM(DATA.test.images))
    assert np.all(images[~real] == 0.0)


def test_eval_over_hosts_counts_every_example_once():
    devices = jax.local_devices()
    seen = []
    for process_index in range(2):
        host = build(
            devices=devices[:1], eval_batch=6, process_index=process_index, process_count=2
        )
        for batch in host.eval_batches():
            batch = global_batch(batch)
            seen.extend(batch["label"][batch["mask"] == 1.0])
    assert sorted(seen) == list(range(N_TEST))


def test_unknown_eval_name():
    with pytest.raises(
        ValueError, match=r"Unknown evaluation 'test_224'; expected one of \('test',\)"
    ):
        next(build().eval_batches("test_224"))
