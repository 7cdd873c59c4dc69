"""Checkpoints with orbax: the latest one for resuming, the best one by validation AUROC.

Both live in one `CheckpointManager` under `<workdir>/checkpoints`. Each save made after a
validation carries its metrics; orbax's `best_fn` reads them back from disk, so which
checkpoint is best survives restarts. Resuming needs nothing but the state: the RNG is in it
and the data position is derived from its step.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

BEST_METRIC = "val_macro_auc"


def _best_fn(metrics: dict) -> float:
    value = metrics.get(BEST_METRIC)
    # A validation with no defined AUROC ranks below any real one.
    return float("-inf") if value is None else float(value)


def create_manager(workdir: str, *, keep_latest: int = 1, keep_best: int = 1) -> ocp.CheckpointManager:
    policy = ocp.checkpoint_managers.AnyPreservationPolicy([
        ocp.checkpoint_managers.LatestN(n=keep_latest),
        ocp.checkpoint_managers.BestN(get_metric_fn=_best_fn, reverse=False, n=keep_best,
                                      keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(best_fn=_best_fn, best_mode="max", preservation_policy=policy)
    return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")), options=options)


def save(manager: ocp.CheckpointManager, state: Any, metrics: dict | None = None, *, force: bool = False) -> bool:
    """Saves `state` at its step (asynchronously); `metrics` mark it for the best-N ranking."""
    step = int(jax.device_get(state.step))
    return manager.save(step, args=ocp.args.StandardSave(state), metrics=metrics, force=force)


def restore(manager: ocp.CheckpointManager, target: Any, step: int) -> Any:
    """Restores step `step` into the structure and shardings of `target` (a live state)."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    return manager.restore(step, args=ocp.args.StandardRestore(abstract))
