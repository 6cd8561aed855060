"""TFDS datasets through tfds.data_source: prepared here without TensorFlow, and mocked."""

import io

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.core import registered

from preact.data import normalize, pipeline, tfds_source
from preact.data.errors import DataError, DataNotFoundError
from tests.helpers import data_config

FIXED_TRAIN, FIXED_TEST = 12, 5


def png(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def fixed_split(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8), rng.integers(0, 3, n)


# Not registered, so TFDS must find them from the prepared files alone, as it would find a
# dataset prepared on another machine. Images are given encoded: TFDS encodes arrays with TF.
with registered.skip_registration():

    class TinyFixed(tfds.core.GeneratorBasedBuilder):
        """8x8 images of one size, 'train' and 'test' splits."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(8, 8, 3)),
                    "label": tfds.features.ClassLabel(num_classes=3),
                }
            )
            return tfds.core.DatasetInfo(builder=self, features=features)

        def _split_generators(self, dl_manager):
            return {
                "train": self._generate_examples(FIXED_TRAIN, 0),
                "test": self._generate_examples(FIXED_TEST, 1),
            }

        def _generate_examples(self, n, seed):
            images, labels = fixed_split(n, seed)
            for i in range(n):
                yield i, {"image": png(images[i]), "label": int(labels[i])}

    class TinyVaried(tfds.core.GeneratorBasedBuilder):
        """Images of varying sizes with 'train' and 'validation' splits, like imagenet2012."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "label": tfds.features.ClassLabel(num_classes=4),
                }
            )
            return tfds.core.DatasetInfo(builder=self, features=features)

        def _split_generators(self, dl_manager):
            return {
                "train": self._generate_examples(10, 0),
                "validation": self._generate_examples(7, 1),
            }

        def _generate_examples(self, n, seed):
            rng = np.random.default_rng(seed)
            for i in range(n):
                shape = (int(rng.integers(12, 30)), int(rng.integers(12, 30)), 3)
                image = rng.integers(0, 256, shape, dtype=np.uint8)
                yield i, {"image": png(image), "label": i % 4}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A TFDS data dir with both tiny datasets prepared as ArrayRecord, without TensorFlow."""
    data_dir = tmp_path_factory.mktemp("tfds")
    config = tfds.download.DownloadConfig(try_download_gcs=False)
    for builder in (TinyFixed, TinyVaried):
        builder(data_dir=data_dir, file_format="array_record").download_and_prepare(
            download_config=config
        )
    return data_dir


TINY_TFDS = dict(
    dataset="tiny_fixed",
    data_source="tfds",
    batch_size=4,
    eval_batch_size=4,
    normalization="per_channel",
    crop_padding=2,
    image_size=8,
    train_scale_range=(8, 12),
    eval_crops=((10, 8), (12, 12)),
    num_data_workers=2,
)


def config(**overrides):
    return data_config("default", **{**TINY_TFDS, **overrides})


def make_pipeline(cfg):
    return pipeline.make_pipeline(cfg, devices=jax.local_devices()[:1])


def test_prepared_fixed_size_dataset_is_served_from_memory(prepared):
    served = make_pipeline(config(data_dir=str(prepared), data_source="auto"))
    assert (served.num_classes, served.image_shape) == (3, (8, 8, 3))
    assert (served.num_train_examples, served.num_eval_examples) == (FIXED_TRAIN, FIXED_TEST)
    assert served.steps_per_epoch == FIXED_TRAIN // 4
    images, labels = fixed_split(FIXED_TRAIN, 0)
    norm = normalize.for_arrays("per_channel", "tiny_fixed", images)
    test_images, test_labels = fixed_split(FIXED_TEST, 1)
    got_images, got_labels = [], []
    for batch in served.eval_batches():
        real = np.asarray(batch["mask"]).reshape(-1) == 1.0
        got_images.append(np.asarray(batch["image"]).reshape(-1, 8, 8, 3)[real])
        got_labels.append(np.asarray(batch["label"]).reshape(-1)[real])
    # TFDS shuffles the records when it prepares a dataset: match each image to its source.
    expected = norm(test_images)
    sources = [
        int(np.argmin(np.abs(expected - image).max(axis=(1, 2, 3))))
        for image in np.concatenate(got_images)
    ]
    assert sorted(sources) == list(range(FIXED_TEST))
    np.testing.assert_allclose(np.concatenate(got_images), expected[sources], atol=1e-5)
    np.testing.assert_array_equal(np.concatenate(got_labels), test_labels[sources])
    batch = served.train_batch(0)
    assert batch["image"].shape == (1, 4, 8, 8, 3)
    assert set(np.asarray(batch["label"]).ravel()) <= {0, 1, 2}


def test_varied_sizes_stream_and_evaluate_on_validation(prepared):
    cfg = config(dataset="tiny_varied", data_dir=str(prepared), augment="scale_jitter")
    with pipeline.make_pipeline(cfg, devices=jax.local_devices()[:1]) as served:
        assert served.eval_names == ("test_8", "test_12")
        assert (served.num_train_examples, served.num_eval_examples) == (10, 7)  # 'validation'
        assert served.train_batch(1)["image"].shape == (1, 4, 8, 8, 3)
        sizes = {
            name: next(served.eval_batches(name))["image"].shape[2] for name in served.eval_names
        }
        assert sizes == {"test_8": 8, "test_12": 12}


def test_varied_sizes_cannot_pad_crop_flip(prepared):
    with pytest.raises(
        DataError, match=r"'pad_crop_flip' needs images of one size, but 'tiny_varied'"
    ):
        make_pipeline(config(dataset="tiny_varied", data_dir=str(prepared)))


def test_split_that_does_not_exist(prepared):
    with pytest.raises(
        DataError, match=r"'tiny_fixed' has no split 'validation'; it has \['test', "
    ):
        make_pipeline(config(data_dir=str(prepared), eval_split="validation"))
    with pytest.raises(DataError, match=r"has no split 'train\[:200%\]'"):
        tfds_source.open_split("tiny_fixed", "train[:200%]", prepared)


def test_split_slices_work(prepared):
    served = make_pipeline(config(data_dir=str(prepared), train_split="train[:8]"))
    assert served.num_train_examples == 8


def test_unknown_dataset_name(prepared):
    with pytest.raises(
        DataNotFoundError, match=r"Unknown dataset 'no_such_dataset': expected 'cifar10'"
    ):
        make_pipeline(config(dataset="no_such_dataset", data_dir=str(prepared)))


def test_registered_but_not_prepared(tmp_path):
    with pytest.raises(
        DataNotFoundError, match=rf"TFDS dataset 'cifar10' is not prepared in {tmp_path}"
    ):
        make_pipeline(config(dataset="cifar10", data_dir=str(tmp_path)))


def test_mocked_cifar10_is_read_into_memory():
    with tfds.testing.mock_data(num_examples=8):
        served = make_pipeline(config(dataset="cifar10", crop_padding=4))
    assert (served.num_classes, served.image_shape, served.num_train_examples) == (
        10,
        (32, 32, 3),
        8,
    )
    batch = served.train_batch(0)
    assert batch["image"].shape == (1, 4, 32, 32, 3) and batch["image"].dtype == np.float32


def test_mocked_imagenet_streams_deterministically():
    cfg = config(
        dataset="imagenet2012",
        augment="inception_crop",
        image_size=16,
        eval_crops=((20, 16), (24, 24)),
        eval_batch_size=8,
    )
    with tfds.testing.mock_data(num_examples=12):
        first = make_pipeline(cfg)
        again = make_pipeline(cfg)
    with first, again:
        assert first.num_classes == 1000 and first.image_shape == (16, 16, 3)
        a, b = first.train_batch(2), again.train_batch(2)
        assert isinstance(a["image"], np.ndarray) and a["image"].shape == (1, 4, 16, 16, 3)
        np.testing.assert_array_equal(a["image"], b["image"])
        masks = [batch["mask"] for batch in first.eval_batches("test_24")]
        assert masks[0].shape == (1, 8) and sum(m.sum() for m in masks) == 12
