"""The VKD model: image encoder, text encoder, latent prior and posterior, classifier.

Five variants share the parts (`kind`):
- `vkd`: the paper. Training classifies `[z ; h(x)]` with `z ~ q(z|x,t)` and pulls the
  image-only prior `p(z|x)` towards the posterior through the KL term; test time samples
  `z ~ p(z|x)` and needs no report.
- `image_only`: the same CNN and classifier MLP on `h(x)` alone (the baseline).
- `multimodal`: `[z ; h(x)]` with `z ~ q(z|x,t)` at training and test time (an upper bound
  that needs the report at test time).
- `text_only`: the posterior path alone, `z ~ q(z|t)`, classified from `z`.
- `distill`: generalized distillation (Lopez-Paz et al., 2016): the image path of
  `image_only`, trained on a mix of the labels and the soft predictions of a report
  classifier (the teacher, trained on the labels alongside it); image only at test time.

Any kind with an image encoder can also predict the report's words from `h(x)` (an
auxiliary task; `report_vocab_size > 0`), and `posterior_inputs='none'` feeds the posterior
a constant: VKD's stochastic bottleneck and prior-path loss with no report (the control).

Report details (`details_from`, `num_details > 0`; the facts a report states, such as a
finding's side or severity, parsed from its text) are predicted in training only, by an MLP
(`details_head`): from `h(x)` (`'image'`, an auxiliary task, the positive control) or from
the posterior's samples `z ~ q(z|x,t)` (`'posterior'`, a decoder: the ELBO's likelihood then
covers the details, so the posterior must keep them and the KL teaches the prior them).

Noise is an input (`noise`, standard normal `[S, B, D]`) rather than drawn inside, so the
module is a pure function of its inputs and the train step decides how noise is keyed.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vkd_jax.losses import kl_diag_gaussians, reparameterize

KINDS = ("vkd", "image_only", "multimodal", "text_only", "distill")
# Kinds whose test-time prediction reads the image alone.
IMAGE_ONLY_AT_TEST = ("vkd", "image_only", "distill")
POSTERIOR_INPUTS = ("text", "image_text", "none")
DETAILS_FROM = ("none", "image", "posterior")
TEXT_POOLING = ("cls", "mean")


def reads_report(kind: str, posterior_inputs: str) -> bool:
    """Whether a model of this kind reads the report in training (builds a text encoder)."""
    if kind == "image_only":
        return False
    return kind == "distill" or posterior_inputs != "none"


def has_posterior(kind: str) -> bool:
    """Whether a model of this kind has the latent posterior q(z|...) (and samples it in training)."""
    return kind not in ("image_only", "distill")


class MLP(nn.Module):
    """Dense -> LeakyReLU -> Dropout -> Dense, as the reference's heads."""

    hidden_dim: int
    out_dim: int
    dropout_rate: float
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = nn.Dense(self.hidden_dim, dtype=self.dtype, name="hidden")(x)
        x = nn.leaky_relu(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.out_dim, dtype=self.dtype, name="out")(x)


class GaussianHead(nn.Module):
    """Features `[B, F]` -> `(mu, logvar)`, each float32 `[B, D]`."""

    latent_dim: int
    hidden_dim: int
    dropout_rate: float
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        out = MLP(self.hidden_dim, 2 * self.latent_dim, self.dropout_rate, self.dtype, name="mlp")(x, train=train)
        mu, logvar = jnp.split(out.astype(jnp.float32), 2, axis=-1)
        # Bounded log-variance keeps exp() finite early in training; |logvar| <= 10 still
        # spans standard deviations from 0.007 to 150.
        return mu, 10.0 * jnp.tanh(logvar / 10.0)


def pool_text(hidden: jax.Array, attention_mask: jax.Array, pooling: str) -> jax.Array:
    """`[B, L, H]` -> `[B, H]`: the [CLS] vector, or the mean over real tokens."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask[..., None].astype(hidden.dtype)
    return jnp.sum(hidden * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)


def _broadcast_samples(features: jax.Array, num_samples: int) -> jax.Array:
    return jnp.broadcast_to(features, (num_samples, *features.shape))


class VKDModel(nn.Module):
    """See the module docstring. `image_encoder(x, train=)` returns `[B, C]`;
    `text_encoder(ids, mask, deterministic=)` returns `[B, L, H]`."""

    kind: str
    image_encoder: nn.Module | None
    text_encoder: nn.Module | None
    num_classes: int
    latent_dim: int
    hidden_dim: int
    dropout_rate: float = 0.5
    posterior_inputs: str = "text"
    text_pooling: str = "cls"
    freeze_image_encoder: bool = False
    freeze_text_encoder: bool = False
    report_vocab_size: int = 0
    details_from: str = "none"
    num_details: int = 0
    dtype: Any = jnp.float32

    def setup(self):
        if self.kind not in KINDS:
            raise ValueError(f"model.kind must be one of {KINDS}, got {self.kind!r}")
        head = dict(hidden_dim=self.hidden_dim, dropout_rate=self.dropout_rate, dtype=self.dtype)
        if self.kind == "vkd":
            self.prior = GaussianHead(self.latent_dim, **head)
        if self.has_latent:
            self.posterior = GaussianHead(self.latent_dim, **head)
        if self.kind == "distill":
            self.teacher = MLP(out_dim=self.num_classes, **head)
        if self.report_vocab_size:
            self.report_head = nn.Dense(self.report_vocab_size, dtype=self.dtype)
        if self.details_from != "none":
            self._check_details()
            self.details_head = MLP(out_dim=self.num_details, **head)
        self.classifier = MLP(out_dim=self.num_classes, **head)

    def _check_details(self):
        if self.details_from not in DETAILS_FROM:
            raise ValueError(f"model.details_from must be one of {DETAILS_FROM}, got {self.details_from!r}")
        if self.num_details <= 0:
            raise ValueError(f"model.details_from={self.details_from!r} needs num_details > 0, got {self.num_details}")
        if self.details_from == "image" and not self.uses_image:
            raise ValueError(f"model.details_from='image' needs a kind with an image encoder, got {self.kind!r}")
        if self.details_from == "posterior" and not self.has_latent:
            raise ValueError(f"model.details_from='posterior' needs a kind with a posterior, got {self.kind!r}")

    def _details(self, x, *, train):
        """Details logits float32 `[S, B, num_details]` of `x` `[S, B, F]` (training only)."""
        return self.details_head(x.astype(self.dtype), train=train).astype(jnp.float32)

    @property
    def has_latent(self) -> bool:
        return has_posterior(self.kind)

    @property
    def uses_image(self) -> bool:
        return self.kind != "text_only"

    @property
    def uses_text(self) -> bool:
        """Whether training reads the report (the control's posterior does not)."""
        return reads_report(self.kind, self.posterior_inputs)

    def encode_image(self, images, *, train: bool):
        h = self.image_encoder(images, train=train and not self.freeze_image_encoder)
        return jax.lax.stop_gradient(h) if self.freeze_image_encoder else h

    def encode_text(self, input_ids, attention_mask, *, train: bool, text_features=None):
        """Pooled report features `[B, H]`; `text_features` (a frozen encoder's cached
        output, see `vkd_jax.runs.text_cache`) skips the encoder."""
        if text_features is not None:
            return text_features
        hidden = self.text_encoder(input_ids, attention_mask, deterministic=not train or self.freeze_text_encoder)
        g = pool_text(hidden, attention_mask, self.text_pooling)
        return jax.lax.stop_gradient(g) if self.freeze_text_encoder else g

    def _report_features(self, images, input_ids, attention_mask, *, train: bool, text_features=None):
        """The posterior's report input `[B, H]`; for the control (`posterior_inputs='none'`)
        a constant `[B, 1]`, so that q(z) learns one Gaussian for every example."""
        if self.uses_text:
            return self.encode_text(input_ids, attention_mask, train=train, text_features=text_features)
        return jnp.zeros((images.shape[0], 1), self.dtype)

    def _posterior(self, h, g, *, train):
        inputs = g if self.posterior_inputs != "image_text" or h is None else jnp.concatenate([h, g], axis=-1)
        return self.posterior(inputs, train=train)

    def _classify(self, z, h, *, train):
        """`z` `[S, B, D]` or None, `h` `[B, C]` or None -> float32 logits `[S, B, K]`."""
        if z is None:
            x = h[None]
        elif h is None:
            x = z
        else:
            x = jnp.concatenate([z, _broadcast_samples(h, z.shape[0])], axis=-1)
        return self.classifier(x.astype(self.dtype), train=train).astype(jnp.float32)

    def __call__(self, images, input_ids, attention_mask, noise, *, train: bool = True, text_features=None):
        """Training forward pass.

        Args: `images` `[B, H, W, C]`, `input_ids` and `attention_mask` `[B, L]`, `noise`
        standard normal `[S, B, D]`, optional cached `text_features` `[B, H]`. Returns a dict
        for `losses.vkd_loss`: `logits`
        `[S, B, K]` (posterior path; the image path for `image_only`), and for `vkd` also
        `prior_logits` `[S, B, K]` (classifier on prior samples drawn with the same noise,
        common random numbers), `prior` and `posterior` `(mu, logvar)` pairs `[B, D]`; with
        `details_from`, `details_logits` `[S, B, num_details]` (S = 1 from the image).
        """
        h = self.encode_image(images, train=train) if self.uses_image else None
        out = {}
        if self.report_vocab_size:
            out["report_logits"] = self.report_head(h).astype(jnp.float32)
        if self.details_from == "image":
            out["details_logits"] = self._details(h[None], train=train)
        if not self.has_latent:
            out["logits"] = self._classify(None, h, train=train)
            if self.kind == "distill":
                g = self.encode_text(input_ids, attention_mask, train=train, text_features=text_features)
                out["teacher_logits"] = self.teacher(g.astype(self.dtype), train=train).astype(jnp.float32)
            return out
        g = self._report_features(images, input_ids, attention_mask, train=train, text_features=text_features)
        posterior = self._posterior(h, g, train=train)
        z_q = reparameterize(*posterior, noise)
        out.update(logits=self._classify(z_q, h, train=train), posterior=posterior)
        if self.details_from == "posterior":
            out["details_logits"] = self._details(z_q, train=train)
        if self.kind == "vkd":
            prior = self.prior(h, train=train)
            z_p = reparameterize(*prior, noise)
            out.update(prior=prior, prior_logits=self._classify(z_p, h, train=train))
        return out

    def predict(self, images, input_ids=None, attention_mask=None, noise=None, text_features=None):
        """Test-time logits `[S, B, K]` (S = 1 for `image_only` and `distill`).

        `vkd` samples the image-only prior and never touches the report; `multimodal` and
        `text_only` need `input_ids` and `attention_mask`.
        """
        h = self.encode_image(images, train=False) if self.uses_image else None
        if not self.has_latent:
            return self._classify(None, h, train=False)
        if self.kind == "vkd":
            dist = self.prior(h, train=False)
        else:
            g = self.encode_text(input_ids, attention_mask, train=False, text_features=text_features)
            dist = self._posterior(h, g, train=False)
        return self._classify(reparameterize(*dist, noise), h, train=False)

    def predict_with_kl(self, images, input_ids, attention_mask, noise, text_features=None):
        """`vkd` only: `predict`'s logits `[S, B, K]` and KL(q(z|x,t) || p(z|x)) per example
        `[B]` (how much the report still tells the latent beyond the image), from one pass
        of the image encoder."""
        h = self.encode_image(images, train=False)
        prior = self.prior(h, train=False)
        g = self._report_features(images, input_ids, attention_mask, train=False, text_features=text_features)
        kl = kl_diag_gaussians(*self._posterior(h, g, train=False), *prior)
        return self._classify(reparameterize(*prior, noise), h, train=False), kl
