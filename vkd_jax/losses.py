"""The maths of VKD as pure functions: sampling, KL, multi-label BCE and the ELBO loss.

Gaussians are diagonal and parameterised by mean and log-variance, `[..., D]`.
Losses are computed as (sum, count) pairs and normalised once, optionally after a `psum`
over a mapped axis, so that a sharded batch gives exactly the loss of the whole batch even
when label masks or padding differ between devices.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax


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


def kl_diag_gaussians_per_dim(mu_q: jax.Array, logvar_q: jax.Array, mu_p: jax.Array, logvar_p: jax.Array) -> jax.Array:
    """KL(q || p) of each dimension of two diagonal Gaussians, `[..., D]` (see below)."""
    return 0.5 * (logvar_p - logvar_q + (jnp.exp(logvar_q) + jnp.square(mu_q - mu_p)) * jnp.exp(-logvar_p) - 1.0)


def kl_diag_gaussians(mu_q: jax.Array, logvar_q: jax.Array, mu_p: jax.Array, logvar_p: jax.Array) -> jax.Array:
    """KL(q || p) between diagonal Gaussians, summed over the last axis: `[...]`.

    `0.5 * sum(logvar_p - logvar_q + (var_q + (mu_q - mu_p)^2) / var_p - 1)`. The direction
    is posterior-to-prior, which is what the ELBO asks for (the reference code had it
    reversed and passed log-variances where standard deviations belong).
    """
    return jnp.sum(kl_diag_gaussians_per_dim(mu_q, logvar_q, mu_p, logvar_p), axis=-1)


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


@dataclasses.dataclass(frozen=True)
class Objective:
    """The weights of the training objective (see `vkd_loss`); built from the `train` config.

    `beta` is the KL weight in ELBO units: with `beta = 1` and nothing else switched on,
    `K * loss` is the negative ELBO of one example (K labels) averaged over the batch.
    `kl_balance` (alpha, DreamerV2) splits the KL's gradient: `alpha` of it trains the prior,
    `1 - alpha` the posterior; None is the plain KL (the whole gradient to both, which equals
    the balanced KL at alpha = 0.5 with twice the beta). `free_bits` (nats, 0: off) is a floor
    under the batch-mean KL, in total or per latent dimension: below it the KL costs nothing
    and gets no gradient.
    """

    beta: float = 1.0
    kl_balance: float | None = None
    free_bits: float = 0.0
    free_bits_per_dim: bool = False
    prior_weight: float = 0.0
    distill_weight: float = 0.0
    distill_temperature: float = 1.0
    distill_keep_positives: bool = False
    report_aux_weight: float = 0.0
    details_weight: float = 0.0

    @classmethod
    def from_config(cls, train_cfg) -> Objective:
        """From the `train` config section (its fields of the same names)."""
        return cls(**{f.name: train_cfg[f.name] for f in dataclasses.fields(cls)})


def _batch_mean(x: jax.Array, example_mask: jax.Array, axis_name: str | None) -> jax.Array:
    """Mean over the (global) batch of `x` `[B, ...]`, padding rows left out."""
    m = example_mask.reshape(example_mask.shape + (1,) * (x.ndim - 1))
    return _ratio(jnp.sum(x * m, axis=0), jnp.sum(example_mask), axis_name)


def kl_term(
    posterior, prior, example_mask: jax.Array, objective: Objective, axis_name: str | None = None
) -> tuple[jax.Array, jax.Array]:
    """(the KL as the loss uses it, before `beta`; the plain batch-mean KL in nats).

    Both are batch means of KL(q || p) summed over dimensions; the first has the balancing
    and the free-bits floor of `objective` applied (equal in value to the second above the
    floor, but with its gradient routed as `kl_balance` says).
    """

    def floored(q, p):
        per_dim = _batch_mean(kl_diag_gaussians_per_dim(*q, *p), example_mask, axis_name)  # [D]
        if objective.free_bits_per_dim:
            return jnp.sum(jnp.maximum(per_dim, objective.free_bits))
        return jnp.maximum(jnp.sum(per_dim), objective.free_bits)

    sg = lambda pair: tuple(lax.stop_gradient(x) for x in pair)
    if objective.kl_balance is None:
        used = floored(posterior, prior)
    else:
        alpha = objective.kl_balance
        used = alpha * floored(sg(posterior), prior) + (1.0 - alpha) * floored(posterior, sg(prior))
    plain = _batch_mean(kl_diag_gaussians(*posterior, *prior), example_mask, axis_name)
    return used, plain


def report_words(input_ids: jax.Array, attention_mask: jax.Array, num_buckets: int) -> jax.Array:
    """Bag of the report's tokens: `[B, num_buckets]`, 1 where a token with id = v modulo
    `num_buckets` occurs (padding left out). With at least as many buckets as the vocabulary
    each token has its own; a large vocabulary is hashed (a report uses a few hundred words)."""
    b = input_ids.shape[0]
    rows = jnp.broadcast_to(jnp.arange(b)[:, None], input_ids.shape)
    bag = jnp.zeros((b, num_buckets), jnp.float32)
    return bag.at[rows, input_ids % num_buckets].max(attention_mask.astype(jnp.float32))


def vkd_loss(
    outputs: Mapping[str, Any],
    labels: jax.Array,
    label_mask: jax.Array,
    example_mask: jax.Array,
    objective: Objective,
    *,
    kl_scale: jax.Array | float = 1.0,
    pos_weight: jax.Array | None = None,
    axis_name: str | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The training loss of every model kind (to minimise) and its terms, per label slot.

    `outputs` is what a `VKDModel` returns in training: `logits` `[S, B, K]` of the path
    trained by the data term (posterior samples for `vkd`), and where the kind has them
    `prior_logits` `[S, B, K]` (classifier on prior samples, weighted by `prior_weight`),
    `posterior` / `prior` `(mu, logvar)` pairs `[B, D]` (the KL term), `teacher_logits`
    `[B, K]` (`distill`: a report classifier, trained on the labels, whose tempered
    predictions are the image path's soft targets), `report_logits` `[B, V]` (the
    auxiliary task: the image predicts the report's words) and `details_logits` `[S, B, D]`
    (the report's details, from the image or decoded from posterior samples, with their
    targets `report_details` and `report_details_mask` `[B, D]`). `example_mask` `[B]` is 0 on
    padding rows. With `axis_name`, sums and counts are reduced over that mapped axis first,
    so every device returns the loss of the global batch.

    Every term is a sum over an example's K label slots (masked ones count 0), averaged
    over examples and samples, and divided by K, so that with `beta = 1`:

        K * loss = -E_q[log p(y | x, z)] + KL(q || p)   (the negative ELBO per example)
        loss = (NLL + beta * kl_scale * KL + prior_weight * NLL_prior + ...) / K

    `kl_scale` is the KL schedule's factor at this step (warm-up or cyclical annealing).
    The details term, `details_weight * E[-log p(d | .)]`, is likewise the masked BCE summed
    over an example's stated detail bits (unstated ones count 0), averaged over examples and
    samples, and divided by K (the labels, not D): a weight of 1 makes a stated detail bit
    cost what a label does, and with `details_from='posterior'` and beta = 1, K * loss is the
    negative ELBO of the labels and the details together.
    """
    k = labels.shape[-1]
    num_examples = jnp.sum(example_mask)
    if axis_name is not None:
        num_examples = lax.psum(num_examples, axis_name)
    num_examples = jnp.maximum(num_examples, 1.0)
    mask = label_mask * example_mask[:, None]

    def per_slot(logits, targets):  # sum over slots per example, mean over examples and samples, / K
        total, _ = bce_with_logits(logits, targets, pos_weight, mask)
        samples = logits.shape[0] if logits.ndim == 3 else 1
        if axis_name is not None:
            total = lax.psum(total, axis_name)
        return total / (num_examples * samples * k)

    terms = {"bce": per_slot(outputs["logits"], labels)}
    loss = terms["bce"]
    if outputs.get("prior") is not None and outputs.get("posterior") is not None:
        used, terms["kl"] = kl_term(outputs["posterior"], outputs["prior"], example_mask, objective, axis_name)
        loss = loss + objective.beta * kl_scale * used / k
    if objective.prior_weight and outputs.get("prior_logits") is not None:
        terms["bce_prior"] = per_slot(outputs["prior_logits"], labels)
        loss = loss + objective.prior_weight * terms["bce_prior"]
    if outputs.get("teacher_logits") is not None:
        teacher = outputs["teacher_logits"]
        terms["bce_teacher"] = per_slot(teacher, labels)
        soft = jax.nn.sigmoid(lax.stop_gradient(teacher) / objective.distill_temperature)
        if objective.distill_keep_positives:
            # The teacher learns the labels from the report they were read from, so it has no
            # evidence against a positive label: it may raise a 0 label's target (an uncertain
            # or unlabelled mention), never lower a positive's (docs/study.md, "Why distill lost").
            soft = jnp.maximum(soft, labels)
        terms["bce_soft"] = per_slot(outputs["logits"], soft)
        lam = objective.distill_weight
        # The image path: (1 - lambda) on the labels, lambda on the teacher's soft labels.
        loss = terms["bce_teacher"] + (1.0 - lam) * terms["bce"] + lam * terms["bce_soft"]
    if outputs.get("report_logits") is not None:
        words = outputs["report_logits"]
        total, _ = bce_with_logits(words, outputs["report_words"], mask=example_mask[:, None])
        if axis_name is not None:
            total = lax.psum(total, axis_name)
        terms["bce_report"] = total / (num_examples * k)  # summed over the vocabulary, per label slot
        loss = loss + objective.report_aux_weight * terms["bce_report"]
    if outputs.get("details_logits") is not None:
        details = outputs["details_logits"]
        details_mask = outputs["report_details_mask"] * example_mask[:, None]
        total, _ = bce_with_logits(details, outputs["report_details"], mask=details_mask)
        if axis_name is not None:
            total = lax.psum(total, axis_name)
        terms["bce_details"] = total / (num_examples * details.shape[0] * k)
        loss = loss + objective.details_weight * terms["bce_details"]
    terms["loss"] = loss
    return loss, terms
