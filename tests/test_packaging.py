"""pip install . puts only the preact package on the path, with the experiment configs, and the
installed entry points train from any directory."""

import os
import subprocess
import sys

import pytest

from preact import cli
from tests.helpers import ROOT, TINY_FLAGS


def test_config_names_resolve_to_the_packaged_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "preact1001").mkdir()  # a workdir named like the config does not shadow it
    argv = ["train.py", "--config=preact1001:torch", "--config=nonesuch", "--workdir=w"]
    cli.resolve_config_names(argv)
    assert argv[1] == f"--config={os.path.join(ROOT, 'preact', 'configs', 'preact1001.py')}:torch"
    assert argv[2:] == ["--config=nonesuch", "--workdir=w"]  # not a packaged config: as given


@pytest.mark.slow
def test_installed_package_trains_from_another_directory(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), ROOT], check=True, timeout=300)  # fmt: skip
    installed = sorted(os.listdir(target))
    assert [n for n in installed if n not in ("bin", "__pycache__")] == [
        "preact",
        "preact-0.1.0.dist-info",
    ]
    assert os.path.isfile(target / "preact" / "configs" / "smoke.py")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    tiny = [*TINY_FLAGS, "--config.num_train_steps=2"]
    for command in ([str(target / "bin" / "preact-train")],
                    [sys.executable, "-m", "preact.train"]):  # fmt: skip
        workdir = elsewhere / os.path.basename(command[-1]).replace(".", "_")
        proc = subprocess.run([*command, "--config=smoke", f"--workdir={workdir}", *tiny],
                              cwd=elsewhere, env=env, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "test_error=" in proc.stdout
        # The package imported was the installed one, not this checkout.
        assert str(target) in subprocess.run(
            [sys.executable, "-c", "import preact; print(preact.__file__)"],
            cwd=elsewhere, env=env, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
