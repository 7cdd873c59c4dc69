"""KL-weight schedules: step -> weight, jit-friendly like optax schedules."""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

Schedule = Callable[[jnp.ndarray], jnp.ndarray]

KL_SCHEDULES = ("constant", "linear", "cyclical")


def constant(weight: float) -> Schedule:
    return lambda step: jnp.full((), weight, jnp.float32)


def linear_warmup(weight: float, warmup_steps: int) -> Schedule:
    """Rises linearly from 0 at step 0 to `weight` at `warmup_steps`, then stays there."""
    if warmup_steps <= 0:
        return constant(weight)
    return lambda step: weight * jnp.clip(jnp.asarray(step, jnp.float32) / warmup_steps, 0.0, 1.0)


def cyclical_linear(weight: float, period: float, ratio: float = 0.5) -> Schedule:
    """The cyclical annealing of Fu et al. (2019) that the reference code uses.

    Each cycle of `period` steps rises linearly from 0 to `weight` over its first
    `ratio * period` steps and stays at `weight` for the rest. The reference runs 4 cycles
    per epoch with ratio 0.5.
    """
    if period <= 0 or not 0 < ratio <= 1:
        raise ValueError(f"cyclical schedule needs period > 0 and 0 < ratio <= 1, got {period}, {ratio}")

    def schedule(step):
        phase = jnp.mod(jnp.asarray(step, jnp.float32), period) / period
        return weight * jnp.minimum(phase / ratio, 1.0)

    return schedule


def create_kl_schedule(cfg, steps_per_epoch: int) -> Schedule:
    """The factor on `train.beta` per step, from `cfg.kl_schedule` of the `train` section
    (1 once any warm-up or cycle phase is over)."""
    if cfg.kl_schedule == "constant":
        return constant(1.0)
    if cfg.kl_schedule == "linear":
        return linear_warmup(1.0, cfg.kl_warmup_steps)
    if cfg.kl_schedule == "cyclical":
        return cyclical_linear(1.0, steps_per_epoch / cfg.kl_cycles_per_epoch, cfg.kl_cycle_ratio)
    raise ValueError(f"train.kl_schedule must be one of {KL_SCHEDULES}, got {cfg.kl_schedule!r}")
