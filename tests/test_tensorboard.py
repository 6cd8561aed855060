"""TensorBoard event files: what is written can be read back, with no TensorFlow."""

import math
import os
import sys

import pytest

from preact import tensorboard
from preact.configs import smoke


def test_scalars_round_trip(tmp_path):
    workdir = str(tmp_path)
    with tensorboard.TensorBoardWriter(workdir) as writer:
        writer.write_scalars(100, {"train_loss": 2.25, "train_error": 81.5, "learning_rate": 0.01})
        writer.write_scalars(200, {"train_loss": 1.5, "test_error": 40.0, "test_loss": 1.75})
        writer.write_scalars(250, {"diverged": True})
    logdir = os.path.join(workdir, "tensorboard")
    assert any(f.startswith("events.out.tfevents.") for f in os.listdir(logdir))
    scalars = tensorboard.read_scalars(logdir)
    assert scalars["train_loss"] == [(100, 2.25), (200, 1.5)]
    assert scalars["train_error"] == [(100, 81.5)]
    assert scalars["learning_rate"] == [(100, pytest.approx(0.01))]  # float32 on disk
    assert scalars["test_error"] == [(200, 40.0)]
    assert scalars["diverged"] == [(250, 1.0)]
    assert "tensorflow" not in sys.modules


def test_resumed_run_hides_the_redone_steps(tmp_path):
    workdir = str(tmp_path)
    with tensorboard.TensorBoardWriter(workdir) as writer:
        for step in (10, 20, 30):
            writer.write_scalars(step, {"train_loss": float(step)})
    # Checkpoint at step 20, crash after 30: the resumed run redoes 21..30 with new values.
    with tensorboard.TensorBoardWriter(workdir, purge_step=21) as writer:
        writer.write_scalars(30, {"train_loss": -30.0})
    points = tensorboard.read_scalars(os.path.join(workdir, "tensorboard"))["train_loss"]
    assert points == [(10, 10.0), (20, 20.0), (30, -30.0)]


def test_hparams_are_the_flattened_config(tmp_path):
    from tensorboardX.proto import event_pb2, plugin_hparams_pb2

    config = smoke.get_config()
    with tensorboard.TensorBoardWriter(str(tmp_path)) as writer:
        writer.write_hparams(config)
    logdir = tmp_path / "tensorboard"
    (path,) = [p for p in logdir.iterdir() if p.name.startswith("events.out.tfevents.")]
    hparams, text = {}, None
    for payload in tensorboard._records(str(path)):
        event = event_pb2.Event.FromString(payload)
        for value in event.summary.value:
            if value.tag == "_hparams_/session_start_info":
                data = plugin_hparams_pb2.HParamsPluginData.FromString(
                    value.metadata.plugin_data.content
                )
                for name, v in data.session_start_info.hparams.items():
                    hparams[name] = getattr(v, v.WhichOneof("kind"))
            if value.tag.startswith("config"):
                text = value.tensor.string_val[0].decode()
    assert hparams["experiment"] == "smoke"
    assert hparams["dataset"] == "digits"
    assert hparams["model.depth"] == 20.0
    assert hparams["model.unit"] == "full_preact"
    assert hparams["model.scan"] is True
    assert hparams["lr_boundaries_steps"] == "(250, 350)"
    assert "model.width = 16" in text


def test_flatten_config_drops_none_and_stringifies_tuples():
    flat = tensorboard.flatten_config({"a": {"b": 1, "c": None}, "d": (1, 2), "e": math.pi})
    assert flat == {"a.b": 1, "d": "(1, 2)", "e": math.pi}


def test_disabled_writer_writes_nothing(tmp_path):
    writer = tensorboard.TensorBoardWriter(str(tmp_path), enabled=False)
    writer.write_scalars(1, {"train_loss": 1.0})
    writer.write_hparams(smoke.get_config())
    writer.close()
    assert not os.path.exists(tmp_path / "tensorboard")


def test_non_numeric_scalar_is_refused(tmp_path):
    with tensorboard.TensorBoardWriter(str(tmp_path)) as writer, pytest.raises(TypeError):
        writer.write_scalars(1, {"train_loss": "low"})


def test_corrupt_record_is_detected(tmp_path):
    with tensorboard.TensorBoardWriter(str(tmp_path)) as writer:
        writer.write_scalars(1, {"train_loss": 1.0})
    logdir = tmp_path / "tensorboard"
    (path,) = list(logdir.iterdir())
    data = bytearray(path.read_bytes())
    data[-6] ^= 0xFF  # a byte of the last record's payload
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="CRC|truncated"):
        tensorboard.read_scalars(str(logdir))
