r"""Throughput of the real VKD train step on synthetic in-memory batches (no input pipeline).

    # GPU: the PyTorch anchor's model and step at its shapes (configs/anchor.py), batch 64
    python -m benchmarks.train_step --config=configs/anchor.py \
        --variants=frozen,finetune,frozen_cached,image_only --dtypes=bfloat16,float32 --warmup=3 --steps=10

    # CPU, small (DenseNet-121 at 64 px, 2-layer 128-wide BERT, 64 tokens, batch 8):
    python -m benchmarks.train_step --config=configs/anchor.py:small

From the repository root. `--config`: a config file (default configs/anchor.py: its
docstring gives the settings and sizes), any field overridable as `--config.a.b=value`, e.g.
`--config.train.batch_size=16` (the global batch) or `--config.model.text_encoder.remat=True`.

The state and step are built by the functions training uses (`vkd_jax.train.build_state`,
`build_train_step`: jit over shard_map, state donated), with schedules for `SCHEDULE_STEPS`
and `STEPS_PER_EPOCH` and no positive-class weights (they need a dataset), compiled once
ahead of time; that executable is timed. Prints one JSON line per run (variant x dtype x
attention) on stdout; progress goes to stderr.

Variants: `frozen` (BERT frozen, run forward in the step), `finetune` (BERT trained),
`finetune_attn0` (finetune with attention dropout 0, so the fused attention path applies
in training), `frozen_cached` (frozen, batches carry `text_features` [B, H] as
`vkd_jax.text_cache` gives them: no BERT in the step), `image_only` (the image side alone).

Keys of each line: device_kind, platform, jax_version, variant, dtype, attention_impl (the
kernel 'auto' resolved to; null without BERT in the step), attention_requested, batch,
image_size, max_length, text_layers, text_hidden, compile_s, step_ms_median (each timed
step blocked on), step_ms_pipelined (as many steps back to back, blocked once: how the
PyTorch anchor times with CUDA events), samples_per_s (from the median),
samples_per_s_pipelined, gflop_per_sample (XLA cost analysis of the lowered step, forward
and backward, per example), gflop_per_sample_compiled (of the optimised HLO; a backend may
not count library calls), tflops_achieved (gflop_per_sample x samples_per_s),
tflops_achieved_pipelined, bf16_matmul_tflops (a large bf16 jnp.dot timed in the same
process), frac_of_bf16_peak (tflops_achieved over it), peak_bytes_in_use (the device
allocator's peak in this process so far, so the largest run yet; null where the backend
keeps no statistics, e.g. CPU), xla_peak_bytes (arguments + outputs - aliased +
temporaries of this executable), xla_temp_bytes (its temporaries: what rematerialisation
shrinks), xla_alias_bytes (outputs written into the donated state: what donation saves), loss,
warmup, steps; or `error` / `skipped` in place of the measurements.

Flags are defined only when this runs as the program (`define_flags`): side_by_side.py and
profile_step.py import its functions. No TensorFlow is imported (nor the input pipeline).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import statistics
import sys
import time
import traceback
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from vkd_jax import config_checks, train
from vkd_jax.models import bert as bert_lib

VARIANTS = ("frozen", "finetune", "finetune_attn0", "frozen_cached", "image_only")
DTYPES = ("float32", "bfloat16", "float16")
NUM_CLASSES = 14
ANCHOR_VOCAB = 30522  # transformers.BertConfig() default, as the anchor's BertModel
# What the learning-rate and KL schedules are built for (a step count and an epoch's steps).
SCHEDULE_STEPS, STEPS_PER_EPOCH = 10_000, 1000


def log(msg: str) -> None:
    print(f"[train_step] {msg}", file=sys.stderr, flush=True)


@dataclasses.dataclass(frozen=True)
class Options:
    """What to run and how, besides the config (the flags of the same names)."""

    runs: tuple[tuple[str, str, str], ...]  # (variant, dtype, attention), in order
    steps: int = 10
    warmup: int = 3
    vocab: int = ANCHOR_VOCAB
    num_devices: int = 1
    deadline_s: float = 0.0
    out: str = ""


# ----------------------------------------------------------------------------
# Config.


def check_config(config, *, num_devices: int) -> None:
    """Names a tokenizer where the config has none (the step needs none; config_checks wants
    one named), then validates the config for `num_devices`."""
    txt = config.model.text_encoder
    if not txt.tokenizer and not txt.init_from:
        txt.tokenizer = "synthetic"
    config_checks.validate(config, num_devices=num_devices)


def parse_runs(
    runs: Sequence[str] = (),
    variants: Sequence[str] = (),
    dtypes: Sequence[str] = (),
    attention: Sequence[str] = ("auto",),
) -> tuple[tuple[str, str, str], ...]:
    """(variant, dtype, attention) triples: `runs` items `variant:dtype[:attention]` in
    order, else the product of the other three. ValueError on an unknown name."""
    out = []
    if any(runs):
        for item in (r for r in runs if r):
            parts = item.split(":")
            if not 2 <= len(parts) <= 3:
                raise ValueError(f"--runs item {item!r} is not variant:dtype[:attention]")
            out.append((parts[0], parts[1], parts[2] if len(parts) == 3 else "auto"))
    else:
        out = [(v, d, a) for v in variants if v for d in dtypes if d for a in attention if a]
    for v, d, a in out:
        if v not in VARIANTS:
            raise ValueError(f"unknown variant {v!r}; known: {VARIANTS}")
        if d not in DTYPES:
            raise ValueError(f"unknown dtype {d!r}; known: {DTYPES}")
        if a not in bert_lib.ATTENTION_IMPLS:
            raise ValueError(f"unknown attention {a!r}; known: {bert_lib.ATTENTION_IMPLS}")
    return tuple(out)


def apply_variant(config, variant: str, dtype: str, attention: str) -> None:
    model, txt = config.model, config.model.text_encoder
    model.dtype = dtype
    txt.attention_impl = attention
    if variant == "image_only":
        model.kind = "image_only"
    txt.train_mode = "frozen" if variant in ("frozen", "frozen_cached") else "full"
    if variant == "finetune_attn0":
        txt.attention_dropout = 0.0


def run_config(config, variant: str, dtype: str, attention: str):
    """A copy of `config` for one run, and the attention kernel it resolves to (None
    without BERT in the step)."""
    cfg = config.copy_and_resolve_references()
    apply_variant(cfg, variant, dtype, attention)
    txt = cfg.model.text_encoder
    if variant in ("image_only", "frozen_cached"):
        return cfg, None
    return cfg, bert_lib.resolve_attention_impl(attention, dtype, txt.hidden_size // txt.num_heads)


# ----------------------------------------------------------------------------
# Measurement.


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
        self.batch = train.shard_batch(host_batch, mesh)
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


def run_one(config, *, variant: str, options: Options, mesh) -> dict:
    """Builds, compiles and times one train step; returns the measured fields."""
    prepared = PreparedStep(config, variant=variant, mesh=mesh, vocab=options.vocab)
    for _ in range(options.warmup):
        prepared.step()
    prepared.block()
    times = [prepared.timed_step() for _ in range(options.steps)]
    t = time.perf_counter()
    for _ in range(options.steps):
        prepared.step()
    prepared.block()
    pipelined = (time.perf_counter() - t) / options.steps
    return prepared.summary(times, pipelined)


def base_line(cfg, variant: str, dtype: str, resolved, attention: str, options: Options, peak: float) -> dict:
    device, txt = jax.devices()[0], cfg.model.text_encoder
    return dict(
        device_kind=device.device_kind,
        platform=jax.default_backend(),
        jax_version=jax.__version__,
        variant=variant,
        dtype=dtype,
        attention_impl=resolved,
        attention_requested=attention,
        batch=cfg.train.batch_size,
        image_size=cfg.data.image_size,
        max_length=txt.max_length,
        text_layers=txt.num_layers,
        text_hidden=txt.hidden_size,
        bf16_matmul_tflops=round(peak, 3),
        warmup=options.warmup,
        steps=options.steps,
    )


def add_rates(line: dict, peak: float) -> None:
    """Achieved TFLOP/s and its fraction of the bf16 matmul peak."""
    if line.get("gflop_per_sample") is None or "samples_per_s" not in line:
        return
    line["tflops_achieved"] = round(line["gflop_per_sample"] * line["samples_per_s"] / 1e3, 4)
    line["frac_of_bf16_peak"] = round(line["tflops_achieved"] / peak, 4)
    if "samples_per_s_pipelined" in line:
        line["tflops_achieved_pipelined"] = round(line["gflop_per_sample"] * line["samples_per_s_pipelined"] / 1e3, 4)


def _distinct_runs(config, options: Options, peak: float):
    """(config, JSON line) of each run, once per variant, dtype and resolved kernel ('auto'
    and 'xla' are the same program on CPU)."""
    seen = set()
    for variant, dtype, attention in options.runs:
        cfg, resolved = run_config(config, variant, dtype, attention)
        if (variant, dtype, resolved) not in seen:
            seen.add((variant, dtype, resolved))
            yield cfg, base_line(cfg, variant, dtype, resolved, attention, options, peak)


def run_all(config, options: Options) -> list[dict]:
    mesh = train.make_mesh(options.num_devices)
    device = jax.devices()[0]
    peak = matmul_peak_tflops()
    log(f"{device.device_kind} ({jax.default_backend()}), jax {jax.__version__}: bf16 matmul {peak:.3g} TFLOP/s")
    start, slowest, results = time.perf_counter(), 0.0, []
    for cfg, line in _distinct_runs(config, options, peak):
        elapsed = time.perf_counter() - start
        if options.deadline_s and results and elapsed + slowest > options.deadline_s:
            line["skipped"] = f"deadline: {elapsed:.0f} s spent, a run takes up to {slowest:.0f} s"
            emit(line, options)
            results.append(line)
            continue
        log(f"{line['variant']} {line['dtype']} attention={line['attention_impl']}: compiling")
        t = time.perf_counter()
        try:
            line.update(run_one(cfg, variant=line["variant"], options=options, mesh=mesh))
            add_rates(line, peak)
        except Exception as e:  # noqa: BLE001 - report and go on with the next run
            traceback.print_exc(file=sys.stderr)
            line["error"] = f"{type(e).__name__}: {str(e)[:400]}"
        slowest = max(slowest, time.perf_counter() - t)
        gc.collect()
        emit(line, options)
        results.append(line)
    return results


def run_interleaved(config, options: Options) -> list[dict]:
    """`--interleave`: compiles every run first, then times them in turn, one step each per
    round, so that all see the same background load (a shared machine); per-step medians,
    no pipelined figure."""
    mesh = train.make_mesh(options.num_devices)
    peak = matmul_peak_tflops()
    prepared, lines = [], []
    for cfg, line in _distinct_runs(config, options, peak):
        log(f"{line['variant']} {line['dtype']} attention={line['attention_impl']}: compiling")
        try:
            step = PreparedStep(cfg, variant=line["variant"], mesh=mesh, vocab=options.vocab)
            for _ in range(options.warmup):
                step.step()
            step.block()
            prepared.append((line, step))
        except Exception as e:  # noqa: BLE001
            traceback.print_exc(file=sys.stderr)
            line["error"] = f"{type(e).__name__}: {str(e)[:400]}"
            lines.append(line)
    times = [[] for _ in prepared]
    for _ in range(options.steps):
        for i, (_, step) in enumerate(prepared):
            times[i].append(step.timed_step())
    for (line, step), t in zip(prepared, times, strict=True):
        line.update(step.summary(t, None), interleaved=True)
        add_rates(line, peak)
        lines.append(line)
    for line in lines:
        emit(line, options)
    return lines


def emit(line: dict, options: Options) -> None:
    text = json.dumps(line)
    print(text, flush=True)
    if options.out:
        with open(options.out, "a") as f:
            f.write(text + "\n")


# ----------------------------------------------------------------------------
# The program.

FLAGS = flags.FLAGS


def define_flags() -> None:
    """This program's flags (absl's are global: only the program defines them)."""
    config_flags.DEFINE_config_file(
        "config",
        "configs/anchor.py",
        "Config file; any field can be overridden as --config.a.b=value (the batch: --config.train.batch_size).",
        lock_config=True,
    )
    flags.DEFINE_list("variants", ["frozen", "finetune", "frozen_cached", "image_only"], f"Of {VARIANTS}.")
    flags.DEFINE_list("dtypes", ["float32", "bfloat16"], f"Compute dtypes (model.dtype), of {DTYPES}.")
    flags.DEFINE_list(
        "attention",
        ["auto"],
        "attention_impl values to try (auto, xla, cudnn); runs that resolve to the same kernel are done once.",
    )
    flags.DEFINE_list(
        "runs",
        [],
        "Explicit runs instead of the product of the three above, in order: "
        "variant:dtype[:attention], e.g. frozen:bfloat16,frozen:float32:xla.",
    )
    flags.DEFINE_integer("steps", 10, "Timed steps.")
    flags.DEFINE_integer("warmup", 3, "Untimed steps after compiling.")
    flags.DEFINE_integer("vocab", ANCHOR_VOCAB, "Vocabulary size of the BERT.")
    flags.DEFINE_integer("num_devices", 1, "Devices of the ('data',) mesh.")
    flags.DEFINE_float(
        "deadline_s", 0.0, "Skip the remaining runs once this many seconds would be exceeded (0: never)."
    )
    flags.DEFINE_bool(
        "interleave",
        False,
        "Compile all runs, then time them in turn, one step each per round (noisy, shared machines).",
    )
    flags.DEFINE_string("out", "", "Also append the JSON lines to this file.")


def main(argv) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        runs = parse_runs(FLAGS.runs, FLAGS.variants, FLAGS.dtypes, FLAGS.attention)
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    options = Options(
        runs=runs,
        steps=FLAGS.steps,
        warmup=FLAGS.warmup,
        vocab=FLAGS.vocab,
        num_devices=FLAGS.num_devices,
        deadline_s=FLAGS.deadline_s,
        out=FLAGS.out,
    )
    config = FLAGS.config
    check_config(config, num_devices=options.num_devices)
    results = (run_interleaved if FLAGS.interleave else run_all)(config, options)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
