"""MNIST and Fashion-MNIST from tiny IDX files written here; every bad file, one line naming it.

The IDX bytes are written by hand (big-endian headers packed here, not by the reader), so a round
trip checks the reader against the format, not against itself. No test reads /usr/share or the
network: the Debian location and urlopen are replaced.
"""

import dataclasses
import gzip
import hashlib
import io
import re
import struct
import urllib.error

import jax
import numpy as np
import pytest

from preact import configuration
from preact.configs import fashion_mnist
from preact.data import download, make_pipeline, mnist
from preact.data.errors import DataError, DataNotFoundError
from tests.helpers import data_config, run_script

N_TRAIN, N_TEST = 6, 4
TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = mnist.FILES


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No network, and no Debian copy: every test sees only the files it writes."""

    def refuse(url, timeout):
        raise AssertionError(f"a test tried to reach {url}")

    monkeypatch.setattr(download, "urlopen", refuse)
    monkeypatch.setattr(mnist, "SYSTEM_DIRS", {})


def idx_bytes(magic, dims, values):
    return struct.pack(f">{1 + len(dims)}I", magic, *dims) + np.asarray(values, np.uint8).tobytes()


def write(path, blob):
    path.write_bytes(gzip.compress(blob) if path.name.endswith(".gz") else blob)
    return path


def write_copy(directory, seed=0, gz=(True, False, True, False)):
    """The four files of a tiny dataset; gz says which of FILES are compressed."""
    rng = np.random.default_rng(seed)
    data = {}
    for n, images_file, labels_file in ((N_TRAIN, *mnist.FILES[:2]), (N_TEST, *mnist.FILES[2:])):
        data[images_file] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        data[labels_file] = rng.integers(0, 10, n).astype(np.uint8)
    directory.mkdir(parents=True, exist_ok=True)
    for file, compressed in zip(mnist.FILES, gz, strict=True):
        values = data[file]
        magic = 0x00000803 if values.ndim == 3 else 0x00000801
        write(directory / (file + ".gz" * compressed), idx_bytes(magic, values.shape, values))
    return data


def config(data_dir, dataset="fashion_mnist", **overrides):
    """The paper's data recipe from configs/default.py on a tiny batch."""
    settings = dict(
        dataset=dataset,
        data_source="archive",  # never asks TFDS whether a copy is prepared
        data_dir=str(data_dir),
        batch_size=2,
        eval_batch_size=4,
        random_flip=dataset == "fashion_mnist",
    )
    return data_config("default", **{**settings, **overrides})


def build(cfg):
    return make_pipeline(cfg, devices=jax.local_devices()[:1])


def assert_one_line_naming(error, path):
    message = str(error)
    assert "\n" not in message, message
    assert str(path) in message, message


@pytest.mark.parametrize("gz", [(True,) * 4, (False,) * 4, (True, False, False, True)])
def test_round_trip_pixel_by_pixel(tmp_path, gz):
    data = write_copy(tmp_path, gz=gz)
    loaded = mnist.load("fashion_mnist", tmp_path)
    for split, images_file, labels_file in (
        (loaded.train, TRAIN_IMAGES, TRAIN_LABELS),
        (loaded.test, TEST_IMAGES, TEST_LABELS),
    ):
        assert split.images.dtype == np.uint8
        assert split.images.shape == (len(data[images_file]), 28, 28, 1)
        np.testing.assert_array_equal(split.images[..., 0], data[images_file])
        np.testing.assert_array_equal(split.labels, data[labels_file])
        assert split.labels.dtype == np.int32
    assert loaded.num_classes == 10 and loaded.name == "fashion_mnist"


def test_make_pipeline_serves_28x28x1(tmp_path):
    write_copy(tmp_path)
    pipeline = build(config(tmp_path))
    assert pipeline.image_shape == (28, 28, 1)
    assert (pipeline.num_classes, pipeline.num_train_examples) == (10, N_TRAIN)
    pipeline.close()


def test_found_in_download_dir_then_system_dir(tmp_path, monkeypatch):
    empty = tmp_path / "data"
    empty.mkdir()
    debian = tmp_path / "debian"
    data = write_copy(debian, seed=1)
    monkeypatch.setattr(mnist, "SYSTEM_DIRS", {"fashion_mnist": (debian,)})
    assert mnist.find_copy("fashion_mnist", empty) == debian
    assert mnist.find_copy("mnist", empty) is None  # no system copy of MNIST
    np.testing.assert_array_equal(
        mnist.load("fashion_mnist", empty).test.images[..., 0], data[TEST_IMAGES]
    )
    write_copy(empty / "fashion_mnist_idx", seed=2)
    assert mnist.find_copy("fashion_mnist", empty) == empty / "fashion_mnist_idx"


def corrupt_images_magic(directory):
    images = np.zeros((N_TRAIN, 28, 28), np.uint8)
    return write(directory / TRAIN_IMAGES, idx_bytes(0x00000801, images.shape, images))


def truncated_raw(directory):
    path = write(directory / TEST_LABELS, idx_bytes(0x00000801, (N_TEST,), np.zeros(N_TEST)))
    path.write_bytes(path.read_bytes()[:-1])
    return path


def truncated_gz(directory):
    path = directory / (TRAIN_IMAGES + ".gz")
    blob = gzip.compress(idx_bytes(0x00000803, (N_TRAIN, 28, 28), np.zeros((N_TRAIN, 28, 28))))
    path.write_bytes(blob[: len(blob) // 2])
    return path


def header_only(directory):
    return write(directory / TEST_IMAGES, struct.pack(">II", 0x00000803, N_TEST))


def count_mismatch(directory):
    return write(directory / TRAIN_LABELS, idx_bytes(0x00000801, (N_TRAIN - 1,), range(5)))


def not_gzip(directory):
    path = directory / (TEST_LABELS + ".gz")
    path.write_bytes(b"this is not gzip data")
    return path


def wrong_size(directory):
    images = np.zeros((N_TEST, 32, 32), np.uint8)
    return write(directory / TEST_IMAGES, idx_bytes(0x00000803, images.shape, images))


def label_out_of_range(directory):
    return write(directory / TEST_LABELS, idx_bytes(0x00000801, (N_TEST,), [0, 1, 10, 2]))


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (corrupt_images_magic, "starts with magic 0x00000801 (the magic of an IDX labels file)"),
        (truncated_raw, "is truncated or corrupt"),
        (truncated_gz, "is not a complete gzip file"),
        (header_only, "fewer than the 16-byte header"),
        (count_mismatch, "the counts must agree"),
        (not_gzip, "is not a complete gzip file"),
        (wrong_size, "holds 32x32 images, expected 28x28"),
        (label_out_of_range, "holds label 10, expected labels 0..9"),
    ],
)
def test_bad_file_is_one_line_naming_it(tmp_path, damage, expected):
    write_copy(tmp_path, gz=(False,) * 4)
    bad = damage(tmp_path)
    if bad.name.endswith(".gz"):  # else the good uncompressed file would be read instead
        (tmp_path / bad.name.removesuffix(".gz")).unlink()
    with pytest.raises(DataError, match=re.escape(expected)) as error:
        build(config(tmp_path))
    assert_one_line_naming(error.value, bad)


def test_missing_file_is_one_line_naming_it(tmp_path):
    write_copy(tmp_path)
    (tmp_path / TRAIN_LABELS).unlink()  # written uncompressed by write_copy
    with pytest.raises(DataNotFoundError) as error:
        build(config(tmp_path))
    assert_one_line_naming(error.value, tmp_path / TRAIN_LABELS)


def test_offline_without_a_copy_says_what_to_put_where(tmp_path, monkeypatch):
    def no_network(url, timeout):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(download, "urlopen", no_network)
    with pytest.raises(DataNotFoundError) as error:
        build(config(tmp_path))
    message = str(error.value)
    assert "\n" not in message
    for file in mnist.FILES:
        assert f"{file}.gz" in message
    assert f"into {tmp_path}," in message and "dataset-fashion-mnist" in message
    assert not list((tmp_path / "fashion_mnist_idx").glob("*")), "no partial file may remain"


def test_download_checks_md5_and_completes_a_partial_copy(tmp_path, monkeypatch):
    blobs = {}
    for file in mnist.FILES:
        shape = (N_TRAIN, 28, 28) if "images" in file else (N_TRAIN,)
        magic = 0x00000803 if "images" in file else 0x00000801
        blobs[file + ".gz"] = gzip.compress(idx_bytes(magic, shape, np.ones(shape)))
    md5 = {f: hashlib.md5(blobs[f + ".gz"]).hexdigest() for f in mnist.FILES}
    monkeypatch.setitem(
        mnist.SOURCES, "mnist", dataclasses.replace(mnist.SOURCES["mnist"], md5=md5)
    )
    requested = []

    def serve(url, timeout):
        requested.append(url.rsplit("/", 1)[1])
        return io.BytesIO(blobs[requested[-1]])

    monkeypatch.setattr(download, "urlopen", serve)
    target = tmp_path / "mnist_idx"
    target.mkdir()
    (target / (TRAIN_IMAGES + ".gz")).write_bytes(blobs[TRAIN_IMAGES + ".gz"])  # an earlier try
    loaded = mnist.load("mnist", tmp_path)
    assert requested == [f + ".gz" for f in mnist.FILES[1:]]
    assert sorted(p.name for p in target.iterdir()) == sorted(blobs)
    assert len(loaded.train) == len(loaded.test) == N_TRAIN


def test_mnist_with_flips_warns(tmp_path, caplog):
    write_copy(tmp_path)
    build(config(tmp_path, dataset="mnist", random_flip=True)).close()
    assert "a mirrored digit is not the same digit" in caplog.text
    caplog.clear()
    build(config(tmp_path, dataset="fashion_mnist", random_flip=True)).close()
    assert "mirrored" not in caplog.text


@pytest.mark.slow
def test_train_py_exits_2_on_a_corrupt_file_before_compiling(tmp_path):
    write_copy(tmp_path / "data")
    bad = truncated_raw(tmp_path / "data")
    workdir = tmp_path / "work"
    result = run_script(
        "train.py",
        "--config=configs/smoke.py",
        "--config.dataset=fashion_mnist",
        f"--config.data_dir={tmp_path / 'data'}",
        f"--workdir={workdir}",
        timeout=120,
        env_extra={"JAX_LOG_COMPILES": "1"},  # any compilation would add lines to stderr
    )
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[0].startswith("error: ") and str(bad) in lines[0]
    assert not workdir.exists()  # train_and_evaluate creates it only after the data is found


def test_fashion_mnist_config_is_valid_and_drops_at_half_and_three_quarters():
    c = fashion_mnist.get_config()
    configuration.validate(c, num_devices=8)
    assert configuration.dataset_info(c) == configuration.DatasetInfo(10, (28, 28, 1))
    assert c.lr_boundaries_steps == (c.num_train_steps // 2, c.num_train_steps * 3 // 4)
