"""CIFAR from tiny archives written here in both official formats; every bad input, one error."""

import dataclasses
import hashlib
import io
import os
import pickle
import tarfile
import urllib.error

import jax
import numpy as np
import pytest

from preact.data import cifar, download, pipeline
from preact.data.errors import DataError, DataNotFoundError
from tests.helpers import data_config

N_TRAIN, N_TEST = 10, 4  # CIFAR-10 python: 5 training batches of 2 images


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(url, timeout):
        raise AssertionError(f"a test tried to reach {url}")

    monkeypatch.setattr(download, "urlopen", refuse)


def make_split(rng, n, dataset):
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    fine = rng.integers(0, 10 if dataset == "cifar10" else 100, n).astype(np.int32)
    coarse = rng.integers(0, 20, n).astype(np.int32) if dataset == "cifar100" else None
    return images, fine, coarse


def add_member(tar, name, blob):
    info = tarfile.TarInfo(name)
    info.size = len(blob)
    tar.addfile(info, io.BytesIO(blob))


def python_batch(images, fine, coarse):
    """A batch as the official pickles hold it: channel-major rows, bytes keys, numpy 1 names."""
    batch = {b"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1)}
    if coarse is None:
        batch[b"labels"] = [int(v) for v in fine]
    else:
        batch[b"fine_labels"] = [int(v) for v in fine]
        batch[b"coarse_labels"] = [int(v) for v in coarse]
    blob = pickle.dumps(batch, protocol=2)
    return blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def binary_batch(images, fine, coarse):
    pixels = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    labels = fine[:, None] if coarse is None else np.stack([coarse, fine], axis=1)
    return np.concatenate([labels.astype(np.uint8), pixels], axis=1).tobytes()


def write_archive(directory, dataset, fmt, train, test):
    spec = next(s for s in cifar.ARCHIVES[dataset] if s.fmt == fmt)
    encode = python_batch if fmt == "python" else binary_batch
    path = directory / spec.filename
    parts = len(spec.train_members)
    with tarfile.open(path, "w:gz") as tar:
        for i, member in enumerate(spec.train_members):
            chunk = slice(i * N_TRAIN // parts, (i + 1) * N_TRAIN // parts)
            add_member(tar, member, encode(*(a if a is None else a[chunk] for a in train)))
        add_member(tar, spec.test_member, encode(*test))
    return path


@pytest.fixture
def accept_md5(monkeypatch):
    """Lets the tiny archive at `path` pass as the official one (its md5 becomes the expected)."""

    def accept(path):
        for dataset, specs in cifar.ARCHIVES.items():
            patched = tuple(
                dataclasses.replace(s, md5=download.file_md5(path))
                if s.filename == path.name
                else s
                for s in specs
            )
            monkeypatch.setitem(cifar.ARCHIVES, dataset, patched)

    return accept


def config(data_dir, dataset="cifar10", **overrides):
    """The paper's data recipe (configs/default.py) on an archive in ``data_dir``."""
    fields = dict(dataset=dataset, data_source="archive", data_dir=str(data_dir), batch_size=4,
                  eval_batch_size=4)  # fmt: skip
    return data_config("default", **{**fields, **overrides})


def make_pipeline(cfg):
    # One device, so that the tiny batches divide whatever device count the session has.
    return pipeline.make_pipeline(cfg, devices=jax.local_devices()[:1])


@pytest.mark.parametrize("fmt", ["python", "binary"])
@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_archive_reads_back_pixel_exact(tmp_path, dataset, fmt):
    rng = np.random.default_rng(0)
    train, test = make_split(rng, N_TRAIN, dataset), make_split(rng, N_TEST, dataset)
    path = write_archive(tmp_path, dataset, fmt, train, test)
    spec = next(s for s in cifar.ARCHIVES[dataset] if s.fmt == fmt)
    data = cifar.read_archive(path, spec)
    for split, (images, fine, coarse) in ((data.train, train), (data.test, test)):
        assert split.images.dtype == np.uint8 and split.images.shape[1:] == (32, 32, 3)
        np.testing.assert_array_equal(split.images, images)
        np.testing.assert_array_equal(split.labels, fine)
        if coarse is None:
            assert split.coarse_labels is None
        else:
            np.testing.assert_array_equal(split.coarse_labels, coarse)
    assert data.num_classes == (10 if dataset == "cifar10" else 100)


def test_pipeline_serves_archive_with_test_data_untouched(tmp_path, accept_md5):
    rng = np.random.default_rng(1)
    train, test = make_split(rng, N_TRAIN, "cifar100"), make_split(rng, N_TEST, "cifar100")
    accept_md5(write_archive(tmp_path, "cifar100", "binary", train, test))
    served = make_pipeline(config(tmp_path, "cifar100"))
    assert (served.num_classes, served.image_shape) == (100, (32, 32, 3))
    assert (served.num_train_examples, served.num_eval_examples) == (N_TRAIN, N_TEST)
    assert served.steps_per_epoch == N_TRAIN // 4
    (batch,) = served.eval_batches()
    images = np.asarray(batch["image"]).reshape(-1, 32, 32, 3)
    mean_image = train[0].mean(axis=0, dtype=np.float64).astype(np.float32)
    np.testing.assert_allclose(images, test[0] - mean_image, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(batch["label"]).reshape(-1), test[1])


def test_auto_prefers_archive_and_python_format(tmp_path, accept_md5):
    rng = np.random.default_rng(2)
    train, test = make_split(rng, N_TRAIN, "cifar10"), make_split(rng, N_TEST, "cifar10")
    accept_md5(write_archive(tmp_path, "cifar10", "binary", train, test))
    accept_md5(write_archive(tmp_path, "cifar10", "python", train, test))
    served = make_pipeline(config(tmp_path, data_source="auto"))
    assert "python archive" in served.description


def test_download_verifies_md5_and_renames_atomically(tmp_path, accept_md5, monkeypatch):
    rng = np.random.default_rng(3)
    source = tmp_path / "server"
    source.mkdir()
    blob_path = write_archive(
        source,
        "cifar10",
        "python",
        make_split(rng, N_TRAIN, "cifar10"),
        make_split(rng, 4, "cifar10"),
    )
    accept_md5(blob_path)
    fetched = []

    def serve(url, timeout):
        fetched.append(url)
        return io.BytesIO(blob_path.read_bytes())

    monkeypatch.setattr(download, "urlopen", serve)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    served = make_pipeline(config(data_dir))
    assert fetched == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert os.listdir(data_dir) == ["cifar-10-python.tar.gz"]  # no temporary file left behind
    assert served.num_train_examples == N_TRAIN


def test_download_with_wrong_md5_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "urlopen", lambda url, timeout: io.BytesIO(b"not the archive"))
    with pytest.raises(DataError, match="cifar-10-python.tar.gz with the published md5"):
        make_pipeline(config(tmp_path))
    assert os.listdir(tmp_path) == []


def test_offline_says_where_to_put_which_file(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(download, "urlopen", offline)
    message = rf"Put cifar-100-python.tar.gz .* or cifar-100-binary.tar.gz .* into {tmp_path}"
    with pytest.raises(DataNotFoundError, match=message):
        make_pipeline(config(tmp_path, "cifar100", data_source="auto"))
    assert os.listdir(tmp_path) == []


def test_checksum_mismatch(tmp_path):
    rng = np.random.default_rng(4)
    write_archive(
        tmp_path,
        "cifar10",
        "python",
        make_split(rng, N_TRAIN, "cifar10"),
        make_split(rng, 4, "cifar10"),
    )
    with pytest.raises(
        DataError,
        match=r"cifar-10-python.tar.gz has md5 \w+, but the published checksum .* is c58f3010",
    ):
        make_pipeline(config(tmp_path))


def test_truncated_archive(tmp_path, accept_md5):
    rng = np.random.default_rng(5)
    path = write_archive(
        tmp_path,
        "cifar10",
        "binary",
        make_split(rng, N_TRAIN, "cifar10"),
        make_split(rng, 4, "cifar10"),
    )
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    accept_md5(path)
    with pytest.raises(
        DataError, match=r"cifar-10-binary.tar.gz is not a complete gzip-compressed tar"
    ):
        make_pipeline(config(tmp_path))


def test_file_of_wrong_format(tmp_path, accept_md5):
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_text("<html>404 Not Found</html>")
    accept_md5(path)
    with pytest.raises(
        DataError, match=r"cifar-10-python.tar.gz is not a complete gzip-compressed tar"
    ):
        make_pipeline(config(tmp_path))


def test_archive_of_wrong_layout(tmp_path, accept_md5):
    rng = np.random.default_rng(6)
    train, test = make_split(rng, N_TRAIN, "cifar10"), make_split(rng, 4, "cifar10")
    binary = write_archive(tmp_path, "cifar10", "binary", train, test)
    path = binary.rename(tmp_path / "cifar-10-python.tar.gz")
    accept_md5(path)
    with pytest.raises(DataError, match=r"lacks cifar-10-batches-py/data_batch_1"):
        make_pipeline(config(tmp_path))


def test_binary_member_of_wrong_size(tmp_path):
    spec = cifar.ARCHIVES["cifar100"][1]
    path = tmp_path / spec.filename
    with tarfile.open(path, "w:gz") as tar:
        add_member(tar, spec.train_members[0], bytes(3074 * 2 + 1))
        add_member(tar, spec.test_member, bytes(3074))
    with pytest.raises(
        DataError, match=r"train.bin has 6149 bytes, not a whole number of 3074-byte"
    ):
        cifar.read_archive(path, spec)


def test_pickle_cannot_run_code(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    spec = cifar.ARCHIVES["cifar10"][0]
    path = tmp_path / spec.filename
    with tarfile.open(path, "w:gz") as tar:
        for member in (*spec.train_members, spec.test_member):
            add_member(tar, member, pickle.dumps({b"data": Exploit()}, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_1 is not a CIFAR python batch.*refusing"):
        cifar.read_archive(path, spec)


def test_labels_out_of_range(tmp_path):
    rng = np.random.default_rng(7)
    train, test = make_split(rng, N_TRAIN, "cifar10"), make_split(rng, 4, "cifar10")
    test[1][0] = 10
    path = write_archive(tmp_path, "cifar10", "python", train, test)
    with pytest.raises(DataError, match=r"test_batch 'labels': expected labels in \[0, 10\)"):
        cifar.read_archive(path, cifar.ARCHIVES["cifar10"][0])


def test_data_dir_that_does_not_exist(tmp_path):
    with pytest.raises(DataNotFoundError, match="config.data_dir .*nowhere' is not a directory"):
        make_pipeline(config(tmp_path / "nowhere"))


def test_archive_source_only_for_cifar(tmp_path):
    with pytest.raises(DataError, match="'archive' needs a dataset with an official archive"):
        make_pipeline(config(tmp_path, "imagenet2012"))


def test_archive_split_that_does_not_exist(tmp_path, accept_md5):
    rng = np.random.default_rng(8)
    train, test = make_split(rng, N_TRAIN, "cifar10"), make_split(rng, 4, "cifar10")
    accept_md5(write_archive(tmp_path, "cifar10", "python", train, test))
    with pytest.raises(DataError, match="config.eval_split = 'validation' does not exist"):
        make_pipeline(config(tmp_path, eval_split="validation"))


def test_download_progress_is_printed_to_stderr(tmp_path, monkeypatch, capsys):
    """train.py shows warnings only: the download says what it does on stderr instead."""
    blob = os.urandom(3 << 20)  # three chunks of 1 MiB
    md5 = hashlib.md5(blob).hexdigest()

    class Response(io.BytesIO):
        headers = {"Content-Length": str(len(blob))}

    monkeypatch.setattr(download, "urlopen", lambda url, timeout: Response(blob))
    monkeypatch.setattr(download, "_REPORT_EVERY_S", 0.0)  # a progress line for every chunk
    download.download(["https://example.org/a.tar.gz"], tmp_path / "a.tar.gz", md5)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"downloading https://example.org/a.tar.gz to {tmp_path / 'a.tar.gz'} ..."
    assert lines[1].startswith("  a.tar.gz: 1.0 MB of 3.1 MB (33%) in ")
    assert lines[-1].startswith("downloaded a.tar.gz: 3.1 MB in ") and "md5 verified" in lines[-1]
