"""Optimiser and learning-rate schedule from the `optim` config section (optax)."""

from __future__ import annotations

from typing import Any

import jax
import optax
from flax import traverse_util

OPTIMIZERS = ("adam", "adamw")
LR_SCHEDULES = ("cosine", "constant")
ENCODERS = ("image_encoder", "text_encoder")
TRAIN_MODES = ("full", "frozen", "last_k")


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


def _depth_index(encoder: str, path: tuple[str, ...]) -> int:
    """Position of a parameter's module from the input: 0 for the stem/embeddings, i for
    dense block i (with the transition after it; norm5 with the last block) or BERT layer i."""
    top = path[0]
    if encoder == "text_encoder":
        return int(path[2]) + 1 if path[:2] == ("encoder", "layer") else 0
    if top.startswith("denseblock"):
        return int(top.removeprefix("denseblock"))
    if top.startswith("transition"):
        return int(top.removeprefix("transition"))
    return 0 if top in ("conv0", "norm0") else 10**6  # norm5: always with the top block


def param_groups(params, model_cfg) -> Any:
    """Labels each parameter `head`, `image_encoder`, `text_encoder` or `frozen`, from each
    encoder's `train_mode` ('full', 'frozen', or 'last_k': only the top `train_last_k`
    dense blocks or transformer layers train)."""
    labels = {}
    for name, tree in params.items():
        if name not in ENCODERS:
            labels[name] = jax.tree.map(lambda _: "head", tree)
            continue
        enc = model_cfg[name]
        flat = traverse_util.flatten_dict(tree)
        if enc.train_mode == "last_k":
            depth = max(_depth_index(name, p) for p in flat if _depth_index(name, p) < 10**6)
            first = depth - enc.train_last_k + 1
            group = {p: name if _depth_index(name, p) >= first else "frozen" for p in flat}
        else:
            group = {p: name if enc.train_mode == "full" else "frozen" for p in flat}
        labels[name] = traverse_util.unflatten_dict(group)
    return labels


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


def create_optimizer(optim_cfg, model_cfg, lr_fn: optax.Schedule) -> optax.GradientTransformation:
    """Global-norm clipping, then one optimiser per parameter group (see `param_groups`,
    applied to the parameters the optimiser is initialised with).

    Frozen parameters get `set_to_zero`, so they have no optimiser state; an encoder's
    trainable ones get the schedule scaled by its `lr_multiplier` (pretrained encoders
    usually want a smaller rate than the freshly initialised heads).
    """
    transforms = {"head": _base_optimizer(optim_cfg, lr_fn), "frozen": optax.set_to_zero()}
    for name in ENCODERS:
        mult = model_cfg[name].lr_multiplier
        transforms[name] = _base_optimizer(optim_cfg, lambda step, m=mult: m * lr_fn(step))
    chain = [optax.multi_transform(transforms, lambda params: param_groups(params, model_cfg))]
    if optim_cfg.grad_clip_norm > 0:
        chain.insert(0, optax.clip_by_global_norm(optim_cfg.grad_clip_norm))
    return optax.chain(*chain)
