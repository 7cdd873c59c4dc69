"""Measuring our train step (`train_step.py`, `side_by_side.py`, `profile_step.py`): `PreparedStep`,
the step built as training builds it (`vkd_jax.train.build_state`, `build_train_step`: jit over
shard_map, state donated) on a synthetic batch already on the device, compiled once ahead of time,
with XLA's FLOP count and memory analysis of that executable; the device's bf16 matmul peak
(`matmul_peak_tflops`) and the achieved rates set against it (`add_rates`).

The schedules are built for `SCHEDULE_STEPS` and `STEPS_PER_EPOCH`, with no positive-class
weights (they need a dataset). No TensorFlow is imported (nor the input pipeline).
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from vkd_jax import sharding, train

NUM_CLASSES = 14
# What the learning-rate and KL schedules are built for (a step count and an epoch's steps).
SCHEDULE_STEPS, STEPS_PER_EPOCH = 10_000, 1000


def matmul_peak_tflops(dtype=jnp.bfloat16) -> float:
    """TFLOP/s of a large square `jnp.dot` (8192 on an accelerator, 1024 on CPU)."""
    n, reps = (8192, 10) if jax.default_backend() != "cpu" else (1024, 5)
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    dot = jax.jit(jnp.dot)
    for _ in range(3):
        out = dot(a, b)
    out.block_until_ready()
    t = time.perf_counter()
    for _ in range(reps):
        out = dot(a, b)
    out.block_until_ready()
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12


def synthetic_batch(
    batch: int,
    image_size: int,
    channels: int,
    max_length: int,
    vocab: int,
    text_hidden: int,
    cached: bool,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Random inputs shaped as the input pipeline's batches; full attention masks, as the anchor."""
    rng = np.random.default_rng(seed)
    out = {
        "image": rng.standard_normal((batch, image_size, image_size, channels), np.float32),
        "input_ids": rng.integers(0, min(vocab, 30000), (batch, max_length), dtype=np.int32),
        "attention_mask": np.ones((batch, max_length), np.int32),
        "labels": (rng.random((batch, NUM_CLASSES)) < 0.2).astype(np.float32),
        "label_mask": np.ones((batch, NUM_CLASSES), np.float32),
        "mask": np.ones((batch,), np.float32),
    }
    if cached:
        out["text_features"] = rng.standard_normal((batch, text_hidden), np.float32)
    return out


def _cost_flops(cost) -> float | None:
    if cost is None:
        return None
    if isinstance(cost, (list, tuple)):  # older jax: one dict per program
        return sum(float(c.get("flops", 0.0)) for c in cost if c) or None
    return float(cost.get("flops", 0.0)) or None


def _try_flops(stage) -> float | None:
    """FLOPs of a `Lowered` or `Compiled` stage (None where the API or backend has none)."""
    try:
        return _cost_flops(stage.cost_analysis())
    except Exception:  # noqa: BLE001
        return None


def _xla_memory(compiled) -> dict:
    """XLA's memory analysis of the executable: the peak (arguments + outputs - aliased +
    temporaries), the temporaries (activations kept for the backward pass and scratch) and
    the aliased bytes (outputs written into donated inputs: what donation saves); None
    where the backend does not report it."""
    try:
        m = compiled.memory_analysis()
        return dict(
            xla_peak_bytes=int(
                m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes
            ),
            xla_temp_bytes=int(m.temp_size_in_bytes),
            xla_alias_bytes=int(m.alias_size_in_bytes),
        )
    except Exception:  # noqa: BLE001 - not every backend reports it
        return dict(xla_peak_bytes=None, xla_temp_bytes=None, xla_alias_bytes=None)


def _peak_bytes_in_use() -> int | None:
    stats = jax.devices()[0].memory_stats()
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


class PreparedStep:
    """The compiled train step of one config with its state and a synthetic batch of
    `config.train.batch_size` on the device, built as training builds them; `step()` runs
    one step (state donated and replaced), `block()` waits for it."""

    def __init__(self, config, *, variant: str, mesh, vocab: int):
        txt, batch = config.model.text_encoder, config.train.batch_size
        model, lr_fn, self.state, _ = train.build_state(
            config, mesh, num_classes=NUM_CLASSES, vocab_size=vocab, schedule_steps=SCHEDULE_STEPS
        )
        step_fn = train.build_train_step(config, model, mesh, lr_fn, steps_per_epoch=STEPS_PER_EPOCH)
        host_batch = synthetic_batch(
            batch,
            config.data.image_size,
            config.data.channels,
            txt.max_length,
            vocab,
            txt.hidden_size,
            cached=variant == "frozen_cached",
            seed=config.seed,
        )
        self.batch = sharding.shard_batch(host_batch, mesh)
        self.batch_size = batch
        t = time.perf_counter()
        lowered = step_fn.lower(self.state, self.batch)
        self.compiled = lowered.compile()
        self.compile_s = time.perf_counter() - t
        self.flops = _try_flops(lowered)
        self.flops_compiled = _try_flops(self.compiled)
        self.xla_memory = _xla_memory(self.compiled)
        self.metrics = None

    def step(self) -> None:
        self.state, self.metrics = self.compiled(self.state, self.batch)

    def block(self) -> None:
        jax.block_until_ready((self.state, self.metrics))

    def timed_step(self) -> float:
        """Seconds of one step, blocked on."""
        t = time.perf_counter()
        self.step()
        self.block()
        return time.perf_counter() - t

    def summary(self, times: list[float], pipelined: float | None) -> dict:
        """The JSON fields of a run from per-step times and the back-to-back mean (seconds)."""
        median = statistics.median(times)
        out = dict(
            compile_s=round(self.compile_s, 2),
            step_ms_median=round(median * 1e3, 3),
            samples_per_s=round(self.batch_size / median, 2),
            gflop_per_sample=None if self.flops is None else round(self.flops / self.batch_size / 1e9, 3),
            gflop_per_sample_compiled=None
            if self.flops_compiled is None
            else round(self.flops_compiled / self.batch_size / 1e9, 3),
            peak_bytes_in_use=_peak_bytes_in_use(),
            **self.xla_memory,
            loss=float(self.metrics["loss"]),
        )
        if pipelined is not None:
            out.update(
                step_ms_pipelined=round(pipelined * 1e3, 3),
                samples_per_s_pipelined=round(self.batch_size / pipelined, 2),
            )
        return out


def add_rates(line: dict, peak: float) -> None:
    """Achieved TFLOP/s and its fraction of the bf16 matmul peak."""
    if line.get("gflop_per_sample") is None or "samples_per_s" not in line:
        return
    line["tflops_achieved"] = round(line["gflop_per_sample"] * line["samples_per_s"] / 1e3, 4)
    line["frac_of_bf16_peak"] = round(line["tflops_achieved"] / peak, 4)
    if "samples_per_s_pipelined" in line:
        line["tflops_achieved_pipelined"] = round(line["gflop_per_sample"] * line["samples_per_s_pipelined"] / 1e3, 4)
