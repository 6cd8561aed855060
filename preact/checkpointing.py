"""Checkpoints of a workdir: atomic Orbax saves, verified restores, an identity check.

Each checkpoint holds the train state and a JSON record of the config that made it, the code
version, the software and devices that made it (``environment``: package versions, JAX backend
and device kind, git commit and whether the tree was dirty; see preact.provenance), the model's
*identity* (the fields that decide the parameter tree) and a SHA-256 of every array of the
state. Restoring into a workdir whose checkpoints came from another model raises a ValueError
naming the differences before anything is compiled, instead of a shape error deep inside Orbax.

The state is saved as host (numpy) arrays, copied once from the devices: the checksums are taken
of exactly the bytes Orbax writes, and on a multi-host run Orbax gets arrays every process holds
in full (process 0 writes them) rather than the per-host arrays ``pmap`` returns, which it cannot
serialize. Restoring reads them back on every process and checks every array against its
checksum; Orbax's own storage (zarr under TensorStore) checksums only the chunk index of its
zarr3 layout, not the data, so random bytes in a data file would otherwise restore silently.

Orbax writes each checkpoint to a temporary directory and renames it when complete, so a process
killed while saving leaves the previous checkpoints intact; leftover temporary directories are
removed when the manager opens. A checkpoint that is unreadable (truncated on disk, say) or
whose bytes do not match its checksums is skipped with a warning for the next older one.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import logging
import os
import shutil
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

import preact
from preact import optim, provenance
from preact.data.datasets import dataset_info

log = logging.getLogger(__name__)

# Orbax writes a checkpoint under "<step>.orbax-checkpoint-tmp-<timestamp>" and renames it when
# it is complete; a directory with this marker is a save that never finished.
_TMP_MARKER = ".orbax-checkpoint-tmp"


_BARRIERS = itertools.count()


class _ReadOnlyNotice(logging.Filter):
    """Orbax warns, for every read-only manager, that it will not save: reading is all that is
    asked of one (eval, the identity check before training), so the warning is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Given directory is read only" not in record.getMessage()


logging.getLogger("absl").addFilter(_ReadOnlyNotice())

# Model fields that do not change the parameter tree: a checkpoint restores across them (the
# fused BN-ReLU and the scanned convs' gradient have the variables of the plain layers).
_LAYOUT_FREE_MODEL_FIELDS = ("remat", "fused_bn_relu", "conv_grad")


def model_identity(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """What a checkpoint's state depends on: the model section, the number of classes, and what
    shapes the optimizer state (its name and arguments)."""
    model = {k: v for k, v in config.model.to_dict().items() if k not in _LAYOUT_FREE_MODEL_FIELDS}
    model = {k: list(v) if isinstance(v, tuple) else v for k, v in model.items()}
    return {
        "model": model,
        "num_classes": dataset_info(config).num_classes,
        "optimizer": optim.optimizer_identity(config),
    }


def code_version() -> str:
    """The package version and short git commit of the code this process imported (the commit
    as :func:`preact.provenance.git_state` found it, once per process, so a long run records the
    code it started with, not whatever HEAD is when it saves)."""
    commit = provenance.git_state()["git_commit"]
    return f"{preact.__version__}+{commit[:7]}" if commit else preact.__version__


def identity_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The fields that differ. Only fields both record are compared: one the checkpoint lacks was
    added to the identity after it was written, one the config lacks has left it (it no longer
    changes the state); Orbax still checks every array's shape on restore."""
    diffs = []
    for key in sorted(set(saved) | set(current)):
        if saved and current and (key not in saved or key not in current):
            continue
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += [f"{key}.{d}" for d in identity_differences(a, b)]
        elif a != b:
            diffs.append(f"{key}: checkpoint {a!r}, config {b!r}")
    return diffs


CHECKSUM = "sha256 of each array's dtype, shape and bytes"


class CorruptCheckpoint(ValueError):
    """A checkpoint whose arrays do not match the checksums recorded when it was saved."""


def check_options(config: ml_collections.ConfigDict) -> None:
    """Raise ValueError for checkpoint settings that would lose the run."""
    keep = config.get("keep_checkpoints", 3)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(
            f"keep_checkpoints={keep!r} must be an integer of at least 1 (with 0 every checkpoint, "
            "the one to resume from included, would be deleted)"
        )


def checksums(tree: Any) -> dict[str, str]:
    """The SHA-256 of every array of ``tree`` (dtype, shape and bytes), keyed by its path.

    About 0.05 s for PreAct-1001's state (20.8M float32 values, 83 MB) on one CPU core."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        array = np.ascontiguousarray(leaf)
        digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.reshape(-1).view(np.uint8))
        out[jax.tree_util.keystr(path)] = digest.hexdigest()
    return out


def checksum_mismatches(tree: Any, recorded: dict[str, str]) -> list[str]:
    """Paths of the arrays of ``tree`` that differ from ``recorded`` (or are missing from it)."""
    actual = checksums(tree)
    return sorted(k for k in set(actual) | set(recorded) if actual.get(k) != recorded.get(k))


def check_workdir_identity(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Raise ValueError if ``workdir`` holds checkpoints of another model; reads, never writes."""
    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
        return
    checkpoints = Checkpointer(workdir, config, read_only=True)
    try:
        checkpoints.check_identity()
    finally:
        checkpoints.close()


def _keep_latest(n: int) -> dict[str, Any]:
    """Orbax's option for keeping the ``n`` newest checkpoints: ``preservation_policy`` where the
    installed Orbax has it (``max_to_keep`` is deprecated there), ``max_to_keep`` on the older
    releases this project still supports (requirements-floors.txt)."""
    fields = inspect.signature(ocp.CheckpointManagerOptions).parameters
    if "preservation_policy" in fields:
        from orbax.checkpoint import checkpoint_managers

        return {"preservation_policy": checkpoint_managers.LatestN(n=n)}
    return {"max_to_keep": n}


class Checkpointer:
    """The checkpoints of one workdir (``<workdir>/checkpoints/<step>``).

    Every process of a multi-host run makes one and calls ``save`` and ``restore`` at the same
    steps; process 0 writes, every process reads.
    """

    def __init__(
        self,
        workdir: str,
        config: ml_collections.ConfigDict,
        *,
        read_only: bool = False,
    ) -> None:
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        self.identity = model_identity(config)
        self.config = config
        provenance.environment()  # fixed now, while the checkout matches the imported code
        if read_only and not os.path.isdir(self.directory):
            raise FileNotFoundError(
                f"no checkpoint in workdir {workdir!r} (expected {self.directory}/<step>); "
                "train first with train.py --workdir=..."
            )
        if read_only:
            options = ocp.CheckpointManagerOptions(
                read_only=True, create=False, save_interval_steps=0
            )
        else:
            check_options(config)
            options = ocp.CheckpointManagerOptions(
                **_keep_latest(config.get("keep_checkpoints", 3)),
                cleanup_tmp_directories=False,  # done by _remove_partial_saves, see below
                # Synchronous saves: a save returns only once the checkpoint is complete on disk,
                # so "checkpoint written" in the log is true even if the process dies right after.
                enable_async_checkpointing=False,
            )
        if not read_only:
            # Before the manager exists: removing them later races with a new save of the same
            # step, which reuses the temporary name.
            self._remove_partial_saves()
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def _remove_partial_saves(self) -> None:
        """Delete what a process killed mid-save left: Orbax's unfinished temporary dirs."""
        if jax.process_index() == 0 and os.path.isdir(self.directory):
            for name in os.listdir(self.directory):
                if _TMP_MARKER in name:
                    path = os.path.join(self.directory, name)
                    log.warning("removing partial checkpoint %s", path)
                    shutil.rmtree(path, ignore_errors=True)
        # The other processes open their managers only once the directory is clean. A barrier's
        # name may serve once; every process makes its Checkpointers in the same order.
        ocp.multihost.sync_global_processes(f"preact_partial_saves_removed_{next(_BARRIERS)}")

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps(), reverse=True)

    def meta(self, step: int) -> dict[str, Any]:
        """The JSON record saved with checkpoint ``step``: ``identity``, ``config``,
        ``code_version``, ``environment`` (preact.provenance; absent from older checkpoints),
        ``step`` and the ``checksums`` of its arrays."""
        restored = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored["meta"])

    def check_identity(self) -> None:
        """Raise ValueError if the newest readable checkpoint is of another model."""
        for step in self.steps():
            try:
                meta = self.meta(step)
            except Exception as e:  # noqa: BLE001 - a corrupt checkpoint is skipped, not fatal
                log.warning("checkpoint %d in %s is unreadable (%s); trying an older one",
                            step, self.directory, e)  # fmt: skip
                continue
            diffs = identity_differences(meta.get("identity", {}), self.identity)
            if diffs:
                raise ValueError(
                    f"workdir checkpoint {self.directory}/{step} was made by another model or "
                    "optimizer "
                    f"(experiment {meta.get('config', {}).get('experiment')!r}): "
                    + "; ".join(diffs)
                    + ". Use another --workdir, or the config that made it."
                )
            return

    def _restore_verified(self, target: Any, step: int) -> Any:
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
            ),
        )
        state, recorded = restored["state"], restored["meta"].get("checksums")
        if recorded is None:
            log.warning("checkpoint %s/%d has no checksums (saved by an older version); "
                        "restored without verification", self.directory, step)  # fmt: skip
            return state
        bad = checksum_mismatches(state, recorded)
        if bad:
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            raise CorruptCheckpoint(
                f"the bytes of {', '.join(bad[:3])}{more} do not match the checksums recorded "
                "when it was saved"
            )
        return state

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, int] | None:
        """The newest readable checkpoint (or the one at ``step``) as (state, step), or None if
        there is none. The state's arrays are numpy arrays whose checksums were verified.

        An unreadable or corrupt checkpoint is skipped with a warning naming it, and another
        naming the one restored instead; ValueError if none is readable.
        """
        target = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), abstract_state)
        skipped: list[str] = []
        found = None
        for candidate in self.steps() if step is None else [step]:
            path = os.path.join(self.directory, str(candidate))
            try:
                found = self._restore_verified(target, candidate), candidate
                break
            except Exception as e:  # noqa: BLE001 - any failure to read makes it unusable
                log.warning("checkpoint %s is unreadable or corrupt: %s", path, e)
                skipped.append(path)
        if jax.process_count() > 1:
            # Every process read the checkpoint itself; a step they disagree on would desync them.
            multihost_utils.assert_equal(
                np.int32(-1 if found is None else found[1]),
                "processes restored different checkpoint steps",
            )
        if found is None and skipped:
            raise ValueError(
                f"no usable checkpoint: {', '.join(skipped)} unreadable or corrupt (see the "
                "warnings above); move it away to start over"
            )
        if found is not None and skipped:
            log.warning("restored checkpoint %s/%d instead of the unreadable or corrupt %s",
                        self.directory, found[1], ", ".join(skipped))  # fmt: skip
        return found

    def save(self, step: int, state: Any) -> str:
        """Write ``state`` (on the devices: replicated, or as ``pmap`` returns it) at ``step``."""
        host_state = jax.device_get(state)
        meta = {
            "identity": self.identity,
            "config": self.config.to_dict(),
            "code_version": code_version(),
            "environment": provenance.environment(),
            "step": int(step),
            "checksum": CHECKSUM,
            "checksums": checksums(host_state),
        }
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(host_state), meta=ocp.args.JsonSave(_jsonable(meta))
            ),
            force=True,
        )
        self.manager.wait_until_finished()
        return os.path.join(self.directory, str(step))

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _jsonable(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {str(k): _jsonable(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_jsonable(v) for v in tree]
    if isinstance(tree, (str, int, float, bool)) or tree is None:
        return tree
    return str(tree)
