"""Checkpoints of a workdir: atomic Orbax saves, an identity check, fallback past corrupt ones.

Each checkpoint holds the train state and a JSON record of the config that made it, the code
version, and the model's *identity* (the fields that decide the parameter tree). Restoring into a
workdir whose checkpoints came from another model raises a ValueError naming the differences
before anything is compiled, instead of a shape error deep inside Orbax.

Orbax writes each checkpoint to a temporary directory and renames it when complete, so a process
killed while saving leaves the previous checkpoints intact; leftover temporary directories are
removed when the manager opens. A checkpoint that is unreadable (truncated on disk, say) is
skipped with a warning for the next older one.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

import preact
from preact import configuration

log = logging.getLogger(__name__)

# Orbax writes a checkpoint under "<step>.orbax-checkpoint-tmp-<timestamp>" and renames it when
# it is complete; a directory with this marker is a save that never finished.
_TMP_MARKER = ".orbax-checkpoint-tmp"

# Model fields that do not change the parameter tree: a checkpoint restores across them.
_LAYOUT_FREE_MODEL_FIELDS = ("remat",)


def model_identity(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """What a checkpoint's parameters depend on: the model section and the number of classes."""
    model = {k: v for k, v in config.model.to_dict().items() if k not in _LAYOUT_FREE_MODEL_FIELDS}
    model = {k: list(v) if isinstance(v, tuple) else v for k, v in model.items()}
    return {"model": model, "num_classes": configuration.dataset_info(config).num_classes}


@functools.cache
def code_version() -> str:
    """The package version and git commit of the code this process imported (computed once, so a
    long run records the code it started with, not whatever HEAD is when it saves)."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=os.path.dirname(os.path.abspath(__file__)),
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{preact.__version__}+{sha}" if sha else preact.__version__


def identity_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    diffs = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += [f"{key}.{d}" for d in identity_differences(a, b)]
        elif a != b:
            diffs.append(f"{key}: checkpoint {a!r}, config {b!r}")
    return diffs


class Checkpointer:
    """The checkpoints of one workdir (``<workdir>/checkpoints/<step>``)."""

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
        code_version()  # fix the version now, while the checkout matches the imported code
        if read_only and not os.path.isdir(self.directory):
            raise FileNotFoundError(
                f"no checkpoint in workdir {workdir!r} (expected {self.directory}/<step>); "
                "train first with train.py --workdir=..."
            )
        if read_only:
            options = ocp.CheckpointManagerOptions(
                read_only=True, create=False, save_interval_steps=0, max_to_keep=None
            )
        else:
            options = ocp.CheckpointManagerOptions(
                max_to_keep=config.get("keep_checkpoints", 3),
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
        if jax.process_index() != 0 or not os.path.isdir(self.directory):
            return
        for name in os.listdir(self.directory):
            if _TMP_MARKER in name:
                log.warning("removing partial checkpoint %s", os.path.join(self.directory, name))
                shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps(), reverse=True)

    def _meta(self, step: int) -> dict[str, Any]:
        restored = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored["meta"])

    def check_identity(self) -> None:
        """Raise ValueError if the newest readable checkpoint is of another model."""
        for step in self.steps():
            try:
                meta = self._meta(step)
            except Exception as e:  # noqa: BLE001 - a corrupt checkpoint is skipped, not fatal
                log.warning("checkpoint %d in %s is unreadable (%s); trying an older one",
                            step, self.directory, e)  # fmt: skip
                continue
            diffs = identity_differences(meta.get("identity", {}), self.identity)
            if diffs:
                raise ValueError(
                    f"workdir checkpoint {self.directory}/{step} was made by another model "
                    f"(experiment {meta.get('config', {}).get('experiment')!r}): "
                    + "; ".join(diffs)
                    + ". Use another --workdir, or the config that made it."
                )
            return

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, int] | None:
        """The newest readable checkpoint (or the one at ``step``) as (state, step), or None if
        there is none.

        An unreadable checkpoint is skipped with a warning naming it and the one used instead.
        """
        skipped = []
        for candidate in self.steps() if step is None else [step]:
            try:
                restored = self.manager.restore(
                    candidate,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract_state),
                        meta=ocp.args.JsonRestore(),
                    ),
                )
            except Exception as e:  # noqa: BLE001
                log.warning("checkpoint %s/%d is unreadable: %s", self.directory, candidate, e)
                skipped.append(candidate)
                continue
            if skipped:
                log.warning("restored checkpoint %s/%d instead of the corrupt %s",
                            self.directory, candidate, skipped)  # fmt: skip
            return restored["state"], candidate
        if skipped:
            raise ValueError(f"every checkpoint in {self.directory} is unreadable: {skipped}")
        return None

    def save(self, step: int, state: Any) -> str:
        meta = {
            "identity": self.identity,
            "config": self.config.to_dict(),
            "code_version": code_version(),
            "step": int(step),
        }
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(_jsonable(meta))
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
