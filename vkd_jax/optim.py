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


def _depth_index(encoder: str, path: tuple[str, ...]) -> int | None:
    """Position of a parameter's module from the input: 0 for the stem/embeddings, i for
    dense block i (with the transition after it) or BERT layer i; None for DenseNet's
    final norm, which goes with the top block."""
    if encoder == "text_encoder":
        return int(path[2]) + 1 if path[:2] == ("encoder", "layer") else 0
    for prefix in ("denseblock", "transition"):
        if path[0].startswith(prefix):
            return int(path[0].removeprefix(prefix))
    return 0 if path[0] in ("conv0", "norm0") else None


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
            index = {p: _depth_index(name, p) for p in flat}
            top = max(i for i in index.values() if i is not None)
            index = {p: top if i is None else i for p, i in index.items()}
            group = {p: name if i > top - enc.train_last_k else "frozen" for p, i in index.items()}
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
        return optax.adamw(
            lr_fn, b1=optim_cfg.b1, b2=optim_cfg.b2, weight_decay=optim_cfg.weight_decay, mask=_decay_mask
        )
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
