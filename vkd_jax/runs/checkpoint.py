"""Checkpoints with orbax: the latest two for resuming, the best one by validation AUROC.

All live in one `CheckpointManager` under `<workdir>/checkpoints`. Each save made after a
validation carries its metrics; orbax's `best_fn` reads them back from disk, so which
checkpoint is best survives restarts. Resuming needs nothing but the state: the RNG is in it
and the data position is derived from its step. A checkpoint that cannot be restored
(truncated or missing files), or a directory named like a step that is no checkpoint at all,
is set aside in `checkpoints/damaged/`, with a warning, for the previous one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from vkd_jax.errors import RestoreError, StorageError
from vkd_jax.inference import ModelState
from vkd_jax.runs import workdir as wd

BEST_METRIC = "val_macro_auc"
KEEP_LATEST, KEEP_BEST = 2, 1


def _best_fn(metrics: dict) -> float:
    value = metrics.get(BEST_METRIC)
    # A validation with no defined AUROC ranks below any real one.
    return float("-inf") if value is None else float(value)


def create_manager(
    workdir: str, *, keep_latest: int = KEEP_LATEST, keep_best: int = KEEP_BEST
) -> ocp.CheckpointManager:
    policy = ocp.checkpoint_managers.AnyPreservationPolicy(
        [
            ocp.checkpoint_managers.LatestN(n=keep_latest),
            ocp.checkpoint_managers.BestN(
                get_metric_fn=_best_fn, reverse=False, n=keep_best, keep_checkpoints_without_metrics=False
            ),
        ]
    )
    options = ocp.CheckpointManagerOptions(best_fn=_best_fn, best_mode="max", preservation_policy=policy)
    return ocp.CheckpointManager(os.path.abspath(wd.path(workdir, wd.CHECKPOINTS)), options=options)


def has_checkpoints(workdir: str) -> bool:
    """Whether `workdir` holds a step directory of the manager's (a run to resume)."""
    directory = wd.path(workdir, wd.CHECKPOINTS)
    return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))


def best_or_latest_step(manager: ocp.CheckpointManager) -> int | None:
    """The step to evaluate: the best validated checkpoint, else the latest (None: none)."""
    best = manager.best_step()
    return best if best is not None else manager.latest_step()


def save(manager: ocp.CheckpointManager, state: Any, metrics: dict | None = None, *, force: bool = False) -> bool:
    """Saves `state` at its step (asynchronously); `metrics` mark it for the best-N ranking."""
    step = int(jax.device_get(state.step))
    return manager.save(step, args=ocp.args.StandardSave(state), metrics=metrics, force=force)


def restore(manager: ocp.CheckpointManager, target: Any, step: int) -> Any:
    """Restores step `step` into the structure and shardings of `target` (a live state, or
    its `jax.ShapeDtypeStruct`s); `RestoreError`, naming the step's directory, if it cannot.

    A `train.TrainState` is restored whole; an `inference.ModelState` reads only its fields
    (step, params, batch_stats; for image-only prediction only the prior path's parameters)
    from the saved TrainState: orbax's partial restore (`PyTreeRestore(partial_restore=True)`),
    which leaves the rest on disk."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    try:
        if isinstance(target, ModelState):
            item = {"step": abstract.step, "params": abstract.params, "batch_stats": abstract.batch_stats}
            args = ocp.args.PyTreeRestore(
                item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item), partial_restore=True
            )
            return ModelState(**manager.restore(step, args=args))
        return manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # noqa: BLE001 - orbax and tensorstore raise many kinds
        raise RestoreError(
            f"the checkpoint {os.path.join(str(manager.directory), str(step))} cannot be restored into the model of "
            f"this config ({type(e).__name__}: {str(e)[:300]}). It is damaged (truncated or missing files) or was "
            "written with another config: train again, or evaluate with the config it was written with"
        ) from e


def restore_latest_good(manager: ocp.CheckpointManager, target: Any) -> tuple[Any, int | None]:
    """(state, step) of the newest checkpoint that restores; `(target, None)` if there is
    none. Newer ones that fail (truncated or missing files) are moved to
    `checkpoints/damaged/` with a warning, so their steps can be saved again. If none
    restores, nothing is moved and `RestoreError` is raised: that is a config that no
    longer matches the checkpoints (e.g. another model or optimiser), not damage."""
    for step in manager.all_steps():
        if not _looks_complete(manager, step):
            logging.warning(
                "the directory of step %d, %s, is not a checkpoint (no readable %s or no %s/); set aside in damaged/",
                step,
                _step_dir(manager, step),
                _METADATA,
                _ITEM,
            )
            _set_aside(manager, step)
    failed = []
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            state = restore(manager, target, step)
        except RestoreError as e:
            failed.append((step, f"{type(e.__cause__).__name__}: {str(e.__cause__)[:300]}"))
            continue
        for bad, reason in failed:
            logging.warning(
                "the checkpoint of step %d in %s cannot be restored (%s); set aside in damaged/, resuming from step %d",
                bad,
                manager.directory,
                reason,
                step,
            )
            _set_aside(manager, bad)
        return state, step
    if failed:
        raise RestoreError(
            f"no checkpoint in {manager.directory} restores into the model and optimiser of this "
            f"config (steps {[s for s, _ in failed]}; newest: {failed[0][1]}). Use the config they "
            "were written with, or another --workdir"
        )
    return target, None


_METADATA, _ITEM = "_CHECKPOINT_METADATA", "default"


def _step_dir(manager: ocp.CheckpointManager, step: int) -> str:
    return os.path.join(str(manager.directory), str(step))


def _looks_complete(manager: ocp.CheckpointManager, step: int) -> bool:
    """Whether the directory of `step` has what every checkpoint `save` writes has: the
    manager's metadata file (valid JSON) and the state's item directory. A stray directory
    named like a step (empty, or junk) is not restorable, and trying it leaves the manager
    unable to restore the good ones."""
    directory = _step_dir(manager, step)
    try:
        with open(os.path.join(directory, _METADATA)) as f:
            json.load(f)
    except (OSError, ValueError):
        return False
    return os.path.isdir(os.path.join(directory, _ITEM))


def _set_aside(manager: ocp.CheckpointManager, step: int) -> None:
    if jax.process_index() == 0:
        src = _step_dir(manager, step)
        dst = os.path.join(str(manager.directory), "damaged", f"{step}-{int(time.time())}")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.move(src, dst)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"checkpoint {step} set aside")
    manager.reload()


def check_writable(workdir: str) -> None:
    """Raises `StorageError` if `workdir` cannot be created or written (before any work)."""
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write-test-{jax.process_index()}")
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
        os.remove(probe)
    except OSError as e:
        raise StorageError(f"workdir {workdir} is not writable ({e.strerror or e}); choose another --workdir") from None


def check_space(workdir: str, state: Any) -> None:
    """Raises `StorageError` if `workdir` has less free space than the checkpoints of `state`
    kept at once need (plus one being written)."""
    state_bytes = sum(x.nbytes for x in jax.tree.leaves(state) if hasattr(x, "nbytes"))
    needed = state_bytes * (KEEP_LATEST + KEEP_BEST + 1)
    free = shutil.disk_usage(workdir).free
    if free < needed:
        raise StorageError(
            f"workdir {workdir} has {free / 2**30:.2f} GiB free; checkpoints of this model need about "
            f"{needed / 2**30:.2f} GiB ({KEEP_LATEST} latest + {KEEP_BEST} best + 1 being written, "
            f"{state_bytes / 2**20:.0f} MiB each)"
        )
