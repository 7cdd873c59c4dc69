"""Prediction with a trained model: the eval step, the frozen text encoder's step, and the
image-only prior path that the export serialises. One definition of "predict" for all of them.

`sample_probabilities` is the model's prediction: probabilities averaged over S latent
samples (the prior's for `vkd`), their standard deviation over the samples (a per-finding
uncertainty), and optionally KL(q(z|x,t) || p(z|x)). Evaluation keys each example's noise by
its place in the global batch; predict mode, the Predictor and the export give every image the
same draw (`shared_noise_draw`, keyed by `noise_rng(seed)`), so a prediction depends on the
image alone. No TensorFlow, no orbax here.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.sharding import Mesh, PartitionSpec as P

from data_pipelines.preprocess import normaliser  # numpy only
from vkd_jax import losses
from vkd_jax.models.vkd import VKDModel
from vkd_jax.sharding import AXIS, example_ids

NOISE_FOLD = 1  # the prediction noise's key: fold_in(key(config.seed), NOISE_FOLD)


class ModelState(struct.PyTreeNode):
    """What prediction reads of a checkpoint: its step and the model's variables (all of
    them for evaluation, the prior path's alone for image-only prediction), without the
    optimiser state or the training RNG of `train.TrainState`. `make_eval_step` takes
    either."""

    step: jax.Array
    params: dict
    batch_stats: dict


def noise_rng(seed: int) -> jax.Array:
    """The key of the one latent draw every prediction shares (predict mode, the Predictor,
    the export)."""
    return jax.random.fold_in(jax.random.key(seed), NOISE_FOLD)


def shared_noise_draw(rng: jax.Array, num_samples: int, latent_dim: int) -> jax.Array:
    """`[S, 1, D]` standard normal: the one latent draw every example shares."""
    return jax.random.normal(rng, (num_samples, 1, latent_dim))


def sample_probabilities(
    model: VKDModel, variables, batch: dict, noise: jax.Array, *, with_kl: bool = False
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`(prob_mean, prob_std, kl)`: `[B, K]`, `[B, K]`, `[B]` for `noise` `[S, B, D]`.

    `kl` is KL(q(z|x,t) || p(z|x)) of each example with `with_kl` (a `vkd` model and a batch
    with the report), else zeros. `batch` needs `image` alone for image-only prediction."""
    out = model.apply(
        variables,
        batch["image"],
        batch.get("input_ids"),
        batch.get("attention_mask"),
        noise,
        text_features=batch.get("text_features"),
        method=VKDModel.predict_with_kl if with_kl else VKDModel.predict,
    )
    logits, kl = out if with_kl else (out, jnp.zeros((batch["image"].shape[0],), jnp.float32))
    probs = jax.nn.sigmoid(logits)
    return probs.mean(axis=0), probs.std(axis=0), kl


def make_eval_step(
    model: VKDModel, mesh: Mesh, *, num_samples: int, with_kl: bool = False, shared_noise: bool = False
) -> Callable:
    """Returns `eval_step(state, batch, rng) -> (prob_mean, prob_std, kl)`: `[B, K]`, `[B, K]`, `[B]`,
    jitted over the mesh (`sample_probabilities` of `state`'s parameters).

    The noise of the samples is keyed by each example's place in the global batch; with
    `shared_noise` every example gets the same `[S, D]` draw of `rng` instead (predict mode).
    `with_kl` computes the KL for `vkd` (it reads the report); other kinds return zeros."""

    def eval_fn(state, batch, rng):
        local_batch = batch["image"].shape[0]
        if shared_noise:
            draw = shared_noise_draw(rng, num_samples, model.latent_dim)
            noise = jnp.broadcast_to(draw, (num_samples, local_batch, model.latent_dim))
        else:
            noise = losses.per_example_normal(rng, example_ids(local_batch), (num_samples, model.latent_dim))
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        return sample_probabilities(model, variables, batch, noise, with_kl=with_kl and model.kind == "vkd")

    mapped = jax.shard_map(eval_fn, mesh=mesh, in_specs=(P(), P(AXIS), P()), out_specs=(P(AXIS), P(AXIS), P(AXIS)))
    return jax.jit(mapped)


def prior_path(config, model: VKDModel, variables) -> Callable:
    """`f(images [b, H, W, 1] in 0..255) -> (probs, spreads) [b, K]`: the eval step's shared-noise
    prediction (predict mode's) with the eval pipeline's channel repeat and normalisation in
    front; what the export serialises, with `variables` as constants."""
    mean, std = normaliser(config.data)
    channels = config.data.channels
    draw = np.asarray(shared_noise_draw(noise_rng(config.seed), config.model.eval_samples, model.latent_dim))

    def f(images):
        x = jnp.repeat(images, channels, axis=-1) if channels != 1 else images
        x = (x / 255.0 - mean) / std
        noise = jnp.broadcast_to(draw, (draw.shape[0], x.shape[0], draw.shape[2]))
        probs, spreads, _ = sample_probabilities(model, variables, {"image": x}, noise)
        return probs, spreads

    return f


def make_text_encode_step(model: VKDModel, mesh: Mesh) -> Callable:
    """Returns `encode(state, batch) -> [B, H]`: pooled report features of a frozen encoder."""

    def encode_fn(state, batch):
        return model.apply(
            {"params": state.params},
            batch["input_ids"],
            batch["attention_mask"],
            train=False,
            method=VKDModel.encode_text,
        )

    mapped = jax.shard_map(encode_fn, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=P(AXIS))
    return jax.jit(mapped)
