"""The model of a workdir: its best checkpoint (the latest if none was validated) restored
into the model its config and `model_info.json` describe. Evaluation, predict mode, the
Predictor and the export start here; it needs no dataset and no TensorFlow.

Nothing is initialised or compiled to have something to restore into: the variables'
shapes come from `jax.eval_shape` of the model's init, and orbax reads only those
(`inference.ModelState`: the step, the parameters and the BatchNorm statistics; never the
optimiser state). Image-only prediction (`image_only=True`) reads only the variables of
the prior path, those `VKDModel.predict` touches (the text encoder and the posterior stay
on disk). Training's resume restores the whole `train.TrainState` (`runs.sessions`).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from vkd_jax import errors, inference, train
from vkd_jax.models.vkd import VKDModel
from vkd_jax.runs import checkpoint, workdir as wd


def restore_best(config, workdir: str, info: wd.ModelInfo, mesh: jax.sharding.Mesh, *, image_only: bool = False):
    """(model, state, eval_rng, manager): the best checkpoint of `workdir` (the latest if
    none was validated) as an `inference.ModelState` replicated on `mesh`, for the model
    that `config` and `info` describe; with `image_only`, the prior path's variables alone.
    `eval_rng` is the one training evaluates with (`train.seed_rngs`)."""
    model = train.model_of(
        config, num_classes=len(info.class_names), vocab_size=info.vocab_size, text_config=info.text_config
    )
    _, eval_rng = train.seed_rngs(config.seed)
    logging.info("restoring the model of %s (%s)...", workdir, "the prior path" if image_only else "all parameters")
    manager = checkpoint.create_manager(workdir)
    step = checkpoint.best_or_latest_step(manager)
    if step is None:
        manager.close()
        raise FileNotFoundError(
            f"no checkpoint in {os.path.join(workdir, wd.CHECKPOINTS)}: train first "
            f"(python run.py --config=... --workdir={workdir})"
        )
    try:
        state = checkpoint.restore(manager, abstract_state(config, model, mesh, image_only=image_only), step)
    except errors.RestoreError:
        manager.close()
        raise
    logging.info("restored the checkpoint of step %d from %s", step, workdir)
    return model, state, eval_rng, manager


def abstract_state(config, model: VKDModel, mesh: jax.sharding.Mesh, *, image_only: bool) -> inference.ModelState:
    """`ModelState` of `jax.ShapeDtypeStruct`s replicated on `mesh`: the variables that
    `train.create_train_state` initialises (its dummy inputs, `train=False`), or with
    `image_only` those that `VKDModel.predict` reads. Traced, never compiled or run."""

    def init(rng):
        images, tokens, mask, noise = train.dummy_inputs(
            1, config.data.image_size, config.model.text_encoder.max_length, 1, model.latent_dim, config.data.channels
        )
        if image_only:
            return model.init({"params": rng}, images, None, None, noise, method=VKDModel.predict)
        return model.init({"params": rng}, images, tokens, mask, noise, train=False)

    variables = jax.eval_shape(init, jax.random.key(0))
    replicated = NamedSharding(mesh, P())
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
        inference.ModelState(
            step=jax.ShapeDtypeStruct((), jnp.int32),
            params=variables["params"],
            batch_stats=variables.get("batch_stats", {}),
        ),
    )
