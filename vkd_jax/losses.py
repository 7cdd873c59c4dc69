"""The maths of VKD as pure functions: sampling, KL, multi-label BCE and the ELBO loss.

Gaussians are diagonal and parameterised by mean and log-variance, `[..., D]`.
Losses are computed as (sum, count) pairs and normalised once, optionally after a `psum`
over a mapped axis, so that a sharded batch gives exactly the loss of the whole batch even
when label masks or padding differ between devices.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
from jax import lax


def sample_gaussian(rng: jax.Array, mu: jax.Array, logvar: jax.Array, num_samples: int) -> jax.Array:
    """Reparameterised samples `z_s = mu + sigma * eps_s`, `[S, *mu.shape]`.

    Each sample is an independent draw: no averaging over draws (the reference code averaged
    100 draws, which shrinks the sample's variance a hundredfold).
    """
    eps = jax.random.normal(rng, (num_samples, *mu.shape), mu.dtype)
    return reparameterize(mu, logvar, eps)


def reparameterize(mu: jax.Array, logvar: jax.Array, eps: jax.Array) -> jax.Array:
    """`mu + exp(logvar / 2) * eps` with `eps` broadcast from the left, `[S, *mu.shape]`."""
    return mu + jnp.exp(0.5 * logvar) * eps


def per_example_normal(rng: jax.Array, example_ids: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Standard normal noise `[S, B, *shape[1:]]` keyed by each example's global index.

    `shape` is `(S, D)`. Drawing per example (rather than one array per device) makes the
    noise a function of the example alone, so the same global batch gets the same noise on
    any number of devices while every example still gets its own draw.
    """
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(rng, example_ids)
    noise = jax.vmap(lambda k: jax.random.normal(k, shape))(keys)  # [B, S, D]
    return jnp.swapaxes(noise, 0, 1)


def kl_diag_gaussians(
    mu_q: jax.Array, logvar_q: jax.Array, mu_p: jax.Array, logvar_p: jax.Array
) -> jax.Array:
    """KL(q || p) between diagonal Gaussians, summed over the last axis: `[...]`.

    `0.5 * sum(logvar_p - logvar_q + (var_q + (mu_q - mu_p)^2) / var_p - 1)`. The direction
    is posterior-to-prior, which is what the ELBO asks for (the reference code had it
    reversed and passed log-variances where standard deviations belong).
    """
    return 0.5 * jnp.sum(
        logvar_p - logvar_q + (jnp.exp(logvar_q) + jnp.square(mu_q - mu_p)) * jnp.exp(-logvar_p) - 1.0,
        axis=-1,
    )


def bce_with_logits(
    logits: jax.Array,
    labels: jax.Array,
    pos_weight: jax.Array | None = None,
    mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Multi-label binary cross-entropy as `(sum, count)` over the unmasked entries.

    `logits` `[..., B, K]` (leading sample axes allowed), `labels` and `mask` `[B, K]`,
    `pos_weight` `[K]` multiplies the positive term as in `torch.nn.BCEWithLogitsLoss`.
    The count is that of the unmasked label entries times the number of leading samples,
    so `sum / count` is the mean loss per labelled entry and per sample.
    """
    logits = logits.astype(jnp.float32)
    log_p = jax.nn.log_sigmoid(logits)
    log_not_p = jax.nn.log_sigmoid(-logits)
    pos = labels * log_p
    if pos_weight is not None:
        pos = pos * pos_weight
    loss = -(pos + (1.0 - labels) * log_not_p)
    if mask is None:
        mask = jnp.ones(labels.shape, jnp.float32)
    mask = jnp.broadcast_to(mask, loss.shape)
    return jnp.sum(loss * mask), jnp.sum(mask)


def _ratio(total: jax.Array, count: jax.Array, axis_name: str | None) -> jax.Array:
    if axis_name is not None:
        total, count = lax.psum((total, count), axis_name)
    return total / jnp.maximum(count, 1.0)


def vkd_loss(
    outputs: Mapping[str, Any],
    labels: jax.Array,
    label_mask: jax.Array,
    example_mask: jax.Array,
    *,
    kl_weight: jax.Array | float,
    prior_weight: float = 0.0,
    pos_weight: jax.Array | None = None,
    axis_name: str | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The negative ELBO of VKD (to minimise) and its terms.

    `outputs` is what a `VKDModel` returns in training: `logits` `[S, B, K]` of the path
    trained by the data term (posterior samples for `vkd`), optionally `prior_logits`
    `[S, B, K]` (classifier on prior samples, weighted by `prior_weight`) and `posterior`
    / `prior`, each a `(mu, logvar)` pair `[B, D]`, for the KL term. `example_mask` `[B]`
    is 0 on padding rows. With `axis_name`, sums and counts are reduced over that mapped
    axis first, so every device returns the loss of the global batch.

    loss = BCE(logits) + kl_weight * mean_b KL(q || p) + prior_weight * BCE(prior_logits)
    """
    mask = label_mask * example_mask[:, None]
    terms = {"bce": _ratio(*bce_with_logits(outputs["logits"], labels, pos_weight, mask), axis_name)}
    loss = terms["bce"]
    if outputs.get("prior") is not None and outputs.get("posterior") is not None:
        kl = kl_diag_gaussians(*outputs["posterior"], *outputs["prior"])
        terms["kl"] = _ratio(jnp.sum(kl * example_mask), jnp.sum(example_mask), axis_name)
        loss = loss + kl_weight * terms["kl"]
    if prior_weight and outputs.get("prior_logits") is not None:
        terms["bce_prior"] = _ratio(
            *bce_with_logits(outputs["prior_logits"], labels, pos_weight, mask), axis_name
        )
        loss = loss + prior_weight * terms["bce_prior"]
    terms["loss"] = loss
    return loss, terms
