"""Optimiser and learning-rate schedule from the `optim` config section (optax)."""

from __future__ import annotations

from typing import Any

import jax
import optax

OPTIMIZERS = ("adam", "adamw")
LR_SCHEDULES = ("cosine", "constant")
ENCODERS = ("image_encoder", "text_encoder")


def create_learning_rate_fn(optim_cfg, total_steps: int) -> optax.Schedule:
    """Linear warm-up to `learning_rate`, then cosine decay to `min_lr_ratio` or constant."""
    lr = optim_cfg.learning_rate
    warmup = min(optim_cfg.warmup_steps, max(total_steps - 1, 0))
    if optim_cfg.schedule == "constant":
        main = optax.constant_schedule(lr)
    elif optim_cfg.schedule == "cosine":
        main = optax.cosine_decay_schedule(lr, max(total_steps - warmup, 1), alpha=optim_cfg.min_lr_ratio)
    else:
        raise ValueError(f"optim.schedule must be one of {LR_SCHEDULES}, got {optim_cfg.schedule!r}")
    if warmup == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def param_groups(params) -> Any:
    """Labels each top-level parameter subtree: `image_encoder`, `text_encoder` or `head`."""
    return {k: jax.tree.map(lambda _: k if k in ENCODERS else "head", v) for k, v in params.items()}


def _decay_mask(params):
    # Decay matrices and convolution kernels only, not biases, norms or embeddings' gains.
    return jax.tree.map(lambda p: p.ndim > 1, params)


def _base_optimizer(optim_cfg, lr_fn) -> optax.GradientTransformation:
    if optim_cfg.name == "adam":
        return optax.adam(lr_fn, b1=optim_cfg.b1, b2=optim_cfg.b2)
    if optim_cfg.name == "adamw":
        return optax.adamw(lr_fn, b1=optim_cfg.b1, b2=optim_cfg.b2,
                           weight_decay=optim_cfg.weight_decay, mask=_decay_mask)
    raise ValueError(f"optim.name must be one of {OPTIMIZERS}, got {optim_cfg.name!r}")


def create_optimizer(optim_cfg, model_cfg, lr_fn: optax.Schedule, params) -> optax.GradientTransformation:
    """Global-norm clipping, then one optimiser per parameter group.

    A frozen encoder (`model.<encoder>.trainable=False`) gets `set_to_zero`, so it has no
    optimiser state; a trainable one gets the schedule scaled by its `lr_multiplier`
    (pretrained encoders usually want a smaller rate than the freshly initialised heads).
    """
    transforms = {"head": _base_optimizer(optim_cfg, lr_fn)}
    for name in ENCODERS:
        enc = model_cfg[name]
        if not enc.trainable:
            transforms[name] = optax.set_to_zero()
        else:
            mult = enc.lr_multiplier
            transforms[name] = _base_optimizer(optim_cfg, lambda step, m=mult: m * lr_fn(step))
    labels = param_groups(params)
    present = {leaf for leaf in jax.tree.leaves(labels)}
    transforms = {k: v for k, v in transforms.items() if k in present}
    chain = [optax.multi_transform(transforms, labels)]
    if optim_cfg.grad_clip_norm > 0:
        chain.insert(0, optax.clip_by_global_norm(optim_cfg.grad_clip_norm))
    return optax.chain(*chain)
