"""scikit-learn's digits as the offline dataset, and the normalizations the paper and Torch use."""

import jax
import numpy as np
from sklearn.datasets import load_digits

from preact.data import digits, make_pipeline, normalize
from tests.helpers import data_config


def test_digits_split_is_fixed_and_complete():
    data = digits.load()
    assert data.train.images.shape == (1437, 8, 8, 1) and data.test.images.shape == (360, 8, 8, 1)
    assert data.train.images.dtype == np.uint8 and data.num_classes == 10
    again = digits.load()
    np.testing.assert_array_equal(data.test.images, again.test.images)
    source = load_digits()
    expected = np.round(source.images * 255 / 16).astype(np.uint8)[..., None]
    ours = np.concatenate([data.train.images, data.test.images])
    order = np.random.default_rng(0).permutation(1797)
    np.testing.assert_array_equal(ours, expected[order])
    np.testing.assert_array_equal(
        np.concatenate([data.train.labels, data.test.labels]), source.target[order]
    )
    assert set(data.test.labels) == set(range(10))


def test_smoke_config_pipeline():
    cfg = data_config()  # configs/smoke.py's data fields
    served = make_pipeline(cfg, devices=jax.local_devices()[:1])
    assert (served.num_classes, served.image_shape, served.steps_per_epoch) == (10, (8, 8, 1), 22)
    assert (served.num_train_examples, served.num_eval_examples) == (1437, 360)
    assert served.eval_names == ("test",)
    masks = [np.asarray(b["mask"]) for b in served.eval_batches()]
    assert len(masks) == 3 and sum(m.sum() for m in masks) == 360


def test_per_pixel_mean_subtracts_the_mean_training_image():
    images = np.random.default_rng(0).integers(0, 256, (50, 4, 4, 3), dtype=np.uint8)
    norm = normalize.for_arrays("per_pixel_mean", "anything", images)
    assert norm.mean.shape == (4, 4, 3)
    np.testing.assert_allclose(norm(images).mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_array_equal(norm.scale, 1.0)  # no division: the paper subtracts only


def test_per_channel_uses_the_torch_constants_for_cifar_and_computes_otherwise():
    images = np.random.default_rng(0).integers(0, 256, (50, 4, 4, 3), dtype=np.uint8)
    cifar = normalize.for_arrays("per_channel", "cifar10", images)
    np.testing.assert_allclose(cifar.mean, (125.3, 123.0, 113.9), rtol=1e-6)
    np.testing.assert_allclose(1 / cifar.scale, (63.0, 62.1, 66.7), rtol=1e-6)
    other = normalize.for_arrays("per_channel", "digits", images)
    normalized = other(images)
    np.testing.assert_allclose(normalized.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(normalized.std(axis=(0, 1, 2)), 1.0, atol=1e-4)
    stream = normalize.for_stream("per_pixel_mean", "imagenet2012", sample=())
    np.testing.assert_allclose(stream.mean, (123.675, 116.28, 103.53), rtol=1e-6)
    np.testing.assert_array_equal(stream.scale, 1.0)
