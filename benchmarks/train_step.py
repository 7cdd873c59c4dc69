r"""Throughput of the real VKD train step on synthetic in-memory batches (no input pipeline).

    # GPU: the PyTorch anchor's model and step at its shapes (configs/anchor.py), batch 64
    python -m benchmarks.train_step --config=configs/anchor.py \
        --variants=frozen,finetune,frozen_cached,image_only --dtypes=bfloat16,float32 --warmup=3 --steps=10

    # CPU, small (DenseNet-121 at 64 px, 2-layer 128-wide BERT, 64 tokens, batch 8):
    python -m benchmarks.train_step --config=configs/anchor.py:small

From the repository root. `--config`: a config file (default configs/anchor.py: its
docstring gives the settings and sizes), any field overridable as `--config.a.b=value`, e.g.
`--config.train.batch_size=16` (the global batch) or `--config.model.text_encoder.remat=True`.

The state and step are built as training builds them, on a synthetic batch already on the
device, and compiled once ahead of time (`benchmarks/step_measure.py`'s `PreparedStep`); that
executable is timed. Prints one JSON line per run (variant x dtype x attention) on stdout;
progress goes to stderr.

Variants: `frozen` (BERT frozen, run forward in the step), `finetune` (BERT trained),
`finetune_attn0` (finetune with attention dropout 0, so the fused attention path applies
in training), `frozen_cached` (frozen, batches carry `text_features` [B, H] as
`vkd_jax.runs.text_cache` gives them: no BERT in the step), `image_only` (the image side alone).

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
profile_step.py import its runs and configs (`parse_runs`, `run_config`, `check_config`). No
TensorFlow is imported (nor the input pipeline).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import sys
import time
import traceback
from collections.abc import Sequence

import jax
from absl import app, flags
from ml_collections import config_flags

from benchmarks.step_measure import PreparedStep, add_rates, matmul_peak_tflops
from vkd_jax import sharding
from vkd_jax.models import bert as bert_lib
from vkd_jax.runs import config_checks

VARIANTS = ("frozen", "finetune", "finetune_attn0", "frozen_cached", "image_only")
DTYPES = ("float32", "bfloat16", "float16")
ANCHOR_VOCAB = 30522  # transformers.BertConfig() default, as the anchor's BertModel


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
# Runs.


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
    mesh = sharding.make_mesh(options.num_devices)
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
    mesh = sharding.make_mesh(options.num_devices)
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
