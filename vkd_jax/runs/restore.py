"""The model of a workdir: its best checkpoint (the latest if none was validated) restored
into the model its config and `model_info.json` describe. Evaluation, predict mode, the
Predictor and the export start here; it needs no dataset and no TensorFlow."""

from __future__ import annotations

import os

import jax
from absl import logging

from vkd_jax import errors, train
from vkd_jax.runs import checkpoint, workdir as wd


def restore_best(config, workdir: str, info: wd.ModelInfo, mesh: jax.sharding.Mesh):
    """(model, state, eval_rng, manager): the best checkpoint of `workdir` (the latest if
    none was validated), restored into the model that `config` and `info` describe. Needs
    no dataset and no TensorFlow (evaluation, predict mode and `vkd_jax.Predictor` use it)."""
    model, _, state, eval_rng = train.build_state(  # schedule_steps: shapes only, the schedule never runs
        config,
        mesh,
        num_classes=len(info.class_names),
        vocab_size=info.vocab_size,
        text_config=info.text_config,
        schedule_steps=1,
    )
    manager = checkpoint.create_manager(workdir)
    step = checkpoint.best_or_latest_step(manager)
    if step is None:
        manager.close()
        raise FileNotFoundError(
            f"no checkpoint in {os.path.join(workdir, wd.CHECKPOINTS)}: train first "
            f"(python run.py --config=... --workdir={workdir})"
        )
    try:
        state = checkpoint.restore(manager, state, step)
    except errors.RestoreError:
        manager.close()
        raise
    logging.info("restored the checkpoint of step %d from %s", step, workdir)
    return model, state, eval_rng, manager
