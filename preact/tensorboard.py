"""TensorBoard event files for a run, written without TensorFlow: ``<workdir>/tensorboard/``.

The same scalars as ``metrics.jsonl`` (training loss, test error in percent, learning rate, ...),
so the curves of the paper's Fig. 1, 3 and 6 (training loss and test error against iterations)
can be watched live with ``tensorboard --logdir <workdir>/tensorboard``. The config is recorded
once as hyperparameters (TensorBoard's HParams dashboard) and as text.

Writing uses ``tensorboardX`` (clu's metric writers import TensorFlow), an optional package: where
it is not installed the writer is off and says so in one line. Viewing needs the
``tensorboard`` package. :func:`read_scalars` reads the event files back with no TensorFlow and
no TensorBoard, checking every record's CRC.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import struct
import uuid
from collections.abc import Mapping
from typing import Any

import ml_collections
import numpy as np

SUBDIR = "tensorboard"
# Hyperparameter values TensorBoard's HParams plugin can show; anything else becomes a string.
_HPARAM_TYPES = (bool, int, float, str)
_START = 1  # SessionLog.START in tensorboardX's event.proto


class TensorBoardWriter:
    """Scalars and hyperparameters of one run, in ``<workdir>/tensorboard/``.

    Args:
      workdir: the run's directory (the one holding ``metrics.jsonl``).
      enabled: False makes every call a no-op and creates nothing (processes other than 0 of a
        multi-host run).
      purge_step: on a resumed run, the first step that will be redone (restored step + 1):
        TensorBoard then hides the events at or after it that the interrupted run had written,
        as ``MetricsWriter.truncate_after`` drops them from ``metrics.jsonl``.
    """

    def __init__(self, workdir: str, *, enabled: bool = True, purge_step: int | None = None):
        self.logdir = os.path.join(workdir, SUBDIR)
        self._writer = None
        # tensorboardX is optional: without it the run goes on with metrics.jsonl and the
        # progress line, and the trainer prints this one line.
        self.off_reason = None
        if enabled and importlib.util.find_spec("tensorboardX") is None:
            self.off_reason = (
                "tensorboardX is not installed: TensorBoard files are off (metrics.jsonl and "
                "the progress line go on); pip install tensorboardX to write them"
            )
            enabled = False
        self.enabled = enabled
        if enabled:
            from tensorboardX import SummaryWriter  # only the writing process needs it

            # tensorboardX names files by the second and host only: a resumed run started in
            # the same second would overwrite the earlier file, so the name gets pid and a nonce.
            # flush_secs: a live TensorBoard sees new points within half a minute.
            self._writer = SummaryWriter(
                self.logdir,
                purge_step=purge_step,
                flush_secs=30,
                filename_suffix=f".{os.getpid()}.{uuid.uuid4().hex[:8]}",
            )

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        """One point per scalar at ``step`` (the iteration, the x-axis of the paper's figures).

        Booleans (``diverged``) are written as 0/1. Raises TypeError on a non-numeric value,
        so a typo in the caller does not silently lose a curve.
        """
        if not self.enabled:
            return
        for tag, value in scalars.items():
            self._writer.add_scalar(tag, _float(tag, value), global_step=int(step))

    def write_hparams(self, config: ml_collections.ConfigDict | Mapping[str, Any]) -> None:
        """The config, flattened to dotted names (``model.depth``), as this run's hyperparameters.

        Written into this run's own directory (not a sub-run, as ``SummaryWriter.add_hparams``
        does), so the HParams dashboard finds the run's ``test_error`` and ``train_loss``
        curves beside them. The whole config is also written as a text summary.
        """
        if not self.enabled:
            return
        from tensorboardX.summary import hparams

        flat = flatten_config(config)
        metrics = {"test_error": 0.0, "train_loss": 0.0}  # names only: values come from scalars
        experiment, session_start, _ = hparams(flat, metrics)
        file_writer = self._writer._get_file_writer()
        file_writer.add_summary(experiment)
        file_writer.add_summary(session_start)
        lines = [f"    {k} = {v!r}" for k, v in sorted(flat.items())]  # Markdown code block
        self._writer.add_text("config", "\n".join(lines), global_step=0)

    def flush(self) -> None:
        if self.enabled:
            self._writer.flush()

    def close(self) -> None:
        if self.enabled and self._writer is not None:
            self._writer.close()
            self._writer = None
            self.enabled = False

    def __enter__(self) -> TensorBoardWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def flatten_config(config: ml_collections.ConfigDict | Mapping[str, Any]) -> dict[str, Any]:
    """``{"model.depth": 110, ...}``; None fields are dropped, tuples become strings."""
    tree = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)
    flat: dict[str, Any] = {}

    def visit(prefix: str, node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                visit(f"{prefix}{key}.", value)
            return
        name = prefix[:-1]
        if node is None:
            return
        if isinstance(node, np.generic):
            node = node.item()
        flat[name] = node if isinstance(node, _HPARAM_TYPES) else str(node)

    visit("", tree)
    return flat


def _float(tag: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"scalar {tag!r} is not a number: {value!r}") from None


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` from every event file in ``logdir``, oldest file first.

    Parses the TFRecord framing (length, masked CRC-32C of the length, payload, masked CRC of
    the payload) and the ``Event`` protos with the copies tensorboardX ships, so neither
    TensorFlow nor TensorBoard is needed. A corrupt record raises ValueError. As TensorBoard
    does, a session restart at step T (``purge_step``) drops the earlier points at steps >= T.
    """
    from tensorboardX.proto import event_pb2

    files = []
    for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
        events = [event_pb2.Event.FromString(payload) for payload in _records(path)]
        if events:
            files.append((events[0].wall_time, path, events))
    scalars: dict[str, list[tuple[int, float]]] = {}
    for _, _, events in sorted(files):
        for event in events:
            if event.HasField("session_log") and event.session_log.status == _START:
                for tag, points in scalars.items():
                    scalars[tag] = [(s, v) for s, v in points if s < event.step]
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    number = value.simple_value
                elif value.HasField("tensor") and value.tensor.float_val:
                    number = value.tensor.float_val[0]
                else:
                    continue  # text, hparams
                scalars.setdefault(value.tag, []).append((int(event.step), float(number)))
    return scalars


def _records(path: str):
    from tensorboardX.crc32c import crc32c

    def masked(data: bytes) -> int:
        crc = crc32c(data)
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    with open(path, "rb") as f:
        while header := f.read(8):
            if len(header) < 8:
                raise ValueError(f"{path}: truncated record header")
            (length,) = struct.unpack("<Q", header)
            (length_crc,) = struct.unpack("<I", f.read(4))
            if masked(header) != length_crc:
                raise ValueError(f"{path}: bad length CRC")
            payload = f.read(length)
            (payload_crc,) = struct.unpack("<I", f.read(4))
            if len(payload) != length or masked(payload) != payload_crc:
                raise ValueError(f"{path}: bad or truncated record")
            yield payload
