"""tensorflow-datasets and tensorboardX are optional: a run that does not read TFDS data trains,
checkpoints and evaluates without them, and one that needs them says so in one line.

The subprocesses run with both packages made unimportable (a ``sitecustomize`` that sets
``sys.modules[name] = None``: ``import`` raises ModuleNotFoundError and
``importlib.util.find_spec`` returns None, as on a machine where they were never installed).
"""

import os

import pytest

from preact.data import tfds_source
from tests.helpers import TINY_FLAGS, run_script
from tests.test_data_idx import write_copy

pytestmark = pytest.mark.slow  # train.py / eval.py subprocesses

MISSING = ("tensorflow_datasets", "tensorboardX")
TB_LINE = "tensorboardX is not installed: TensorBoard files are off"


def _without(tmp_path, packages=MISSING):
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{p!r}] = None\n" for p in packages)
    )
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def test_the_blocker_blocks(tmp_path):
    """The test's premise: in its subprocesses the two packages cannot be imported."""
    import subprocess
    import sys

    code = f"import importlib.util as u; print([u.find_spec(p) for p in {MISSING!r}])"
    env = {**os.environ, **_without(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "[None, None]", out.stderr


def test_digits_train_and_evaluate_without_tfds_or_tensorboardx(tmp_path):
    env = _without(tmp_path)
    workdir = str(tmp_path / "run")
    args = ["--config=configs/smoke.py", f"--workdir={workdir}", *TINY_FLAGS]
    train = run_script("train.py", *args, "--config.num_train_steps=10", env_extra=env)
    assert train.returncode == 0, train.stderr[-3000:]
    output = train.stdout + train.stderr
    assert output.count(TB_LINE) == 1, output  # one line, once
    assert "Traceback" not in output
    assert os.path.exists(os.path.join(workdir, "metrics.jsonl"))
    assert os.listdir(os.path.join(workdir, "checkpoints"))
    assert not os.path.exists(os.path.join(workdir, "tensorboard"))
    evaluate = run_script("eval.py", *args, env_extra=env)
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    assert os.path.exists(os.path.join(workdir, "eval_results.json"))


def test_fashion_mnist_idx_files_train_without_tfds(tmp_path):
    # The tiny copy has 6 training images: 2 devices, a batch of 2.
    env = {**_without(tmp_path), "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    write_copy(tmp_path / "data")
    workdir = str(tmp_path / "run")
    train = run_script(
        "train.py", "--config=configs/fashion_mnist.py", f"--workdir={workdir}", *TINY_FLAGS,
        "--config.num_train_steps=2", f"--config.data_dir={tmp_path / 'data'}",
        "--config.batch_size=2", "--config.eval_batch_size=4", env_extra=env,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    assert "28x28x1" in train.stdout + train.stderr


def test_tfds_data_without_tfds_is_one_line_and_exit_2(tmp_path):
    env = _without(tmp_path)
    train = run_script(
        "train.py", "--config=configs/preact110.py", f"--workdir={tmp_path / 'run'}",
        "--config.data_source=tfds", f"--config.data_dir={tmp_path}", env_extra=env,
    )  # fmt: skip
    assert train.returncode == 2, train.stdout + train.stderr
    lines = train.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs tensorflow-datasets, which is not installed" in lines[0]
    assert not (tmp_path / "run").exists()  # nothing written before the error


def test_default_data_dir_is_tfds_own(monkeypatch, tmp_path):
    """Found without importing TFDS, and the same directory TFDS itself uses."""
    tfds = pytest.importorskip("tensorflow_datasets")
    for value in (None, str(tmp_path)):
        if value is None:
            monkeypatch.delenv("TFDS_DATA_DIR", raising=False)
        else:
            monkeypatch.setenv("TFDS_DATA_DIR", value)
        expected = os.path.expanduser(tfds.core.constants.get_default_data_dir())
        assert str(tfds_source.default_data_dir()) == expected
