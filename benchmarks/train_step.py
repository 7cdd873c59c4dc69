"""Throughput of the real VKD train step on synthetic in-memory batches (no input pipeline).

    python benchmarks/train_step.py --config=configs/mimic.py --preset=anchor --batch=64 \
        --variants=frozen,finetune,frozen_cached,image_only --dtypes=bfloat16,float32 --warmup=3 --steps=10

    # CPU, small (DenseNet-121 at 64 px, 2-layer 128-wide BERT, 64 tokens):
    python benchmarks/train_step.py --preset=anchor --batch=8 --image_size=64 --text_layers=2 \
        --text_hidden=128 --text_heads=2 --text_intermediate=512 --max_length=64

It builds the model, optimiser and step exactly as training does (`create_model`,
`vkd_jax.optim`, `create_train_state`, `make_train_step`: jit over shard_map, state
donated), compiles the step once ahead of time and times that executable. Prints one JSON
line per run (variant x dtype x attention) on stdout; progress goes to stderr.

Variants: `frozen` (BERT frozen, run forward in the step), `finetune` (BERT trained),
`finetune_attn0` (finetune with attention dropout 0, so the fused attention path applies
in training), `frozen_cached` (frozen, batches carry `text_features` [B, H] as
`vkd_jax.text_cache` gives them: no BERT in the step), `image_only` (the image side alone).

`--preset=anchor` sets the shapes of the PyTorch anchor (shared/anchors/torch_vkd_bench.py):
DenseNet-121 at 224 px with 3 channels, BERT-base with 256 tokens and vocabulary 30522,
latent 256, hidden 512, posterior on [image, text CLS], one sample, BCE on posterior and
prior samples + 1e-3 KL, Adam at a constant 1e-4 without clipping, no dropout in the heads.
The size flags and `--set path=value` apply on top of it.

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
shrinks), xla_alias_bytes (outputs written into the donated state: what donation saves), loss, warmup, steps; or `error` / `skipped` in place of
the measurements.

No TensorFlow is imported (nor the input pipeline); the config files need ml_collections.
"""

from __future__ import annotations

import argparse
import ast
import gc
import importlib.util
import json
import os
import statistics
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # `configs` and `vkd_jax` from the checkout, installed or not

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from vkd_jax import losses, optim, schedules, train  # noqa: E402
from vkd_jax.models import bert as bert_lib  # noqa: E402
from vkd_jax.models import create_model  # noqa: E402

VARIANTS = ("frozen", "finetune", "finetune_attn0", "frozen_cached", "image_only")
DTYPES = ("float32", "bfloat16", "float16")
NUM_CLASSES = 14
ANCHOR_VOCAB = 30522  # transformers.BertConfig() default, as the anchor's BertModel


def log(msg: str) -> None:
    print(f"[train_step] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------
# Config.

def load_config(path: str):
    """`get_config()` of a config file (they import `configs.default`: ml_collections)."""
    try:
        import ml_collections  # noqa: F401
    except ImportError:
        sys.exit("benchmarks/train_step.py: the config files need ml_collections; install it, e.g. from a carried "
                 "wheel: pip install --no-deps --no-index .whl/ml_collections-*.whl")
    spec = importlib.util.spec_from_file_location("_bench_config", os.path.join(ROOT, path)
                                                  if not os.path.isabs(path) else path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def apply_anchor_preset(config) -> None:
    """The PyTorch anchor's model and step (module docstring)."""
    data, model, txt, img = config.data, config.model, config.model.text_encoder, config.model.image_encoder
    data.image_size, data.channels, data.build_size = 224, 3, None
    model.kind, model.latent_dim, model.hidden_dim = "vkd", 256, 512
    model.posterior_inputs, model.text_pooling, model.num_samples = "image_text", "cls", 1
    model.dropout = 0.0  # the anchor's heads have none
    img.block_sizes, img.growth_rate, img.bn_size, img.num_init_features = (6, 12, 24, 16), 32, 4, 64
    img.remat, img.init_from, img.train_mode = False, "", "full"
    txt.init_from, txt.tokenizer = "", "synthetic"
    txt.hidden_size, txt.num_layers, txt.num_heads, txt.intermediate_size = 768, 12, 12, 3072
    txt.dropout = txt.attention_dropout = 0.1  # BertConfig() defaults, as the anchor's BERT
    txt.max_position_embeddings, txt.max_length, txt.remat = 512, 256, False
    config.optim.name, config.optim.learning_rate, config.optim.schedule = "adam", 1e-4, "constant"
    config.optim.warmup_steps, config.optim.grad_clip_norm = 0, 0.0
    config.train.kl_schedule, config.train.beta, config.train.prior_weight = "constant", 0.014, 1.0
    config.train.pos_weight = "none"


def set_path(config, path: str, value) -> None:
    *parents, leaf = path.split(".")
    node = config
    for p in parents:
        node = node[p]
    node[leaf] = value


def parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare string


def apply_variant(config, variant: str, dtype: str, attention: str) -> None:
    model, txt = config.model, config.model.text_encoder
    model.dtype = dtype
    txt.attention_impl = attention
    if variant == "image_only":
        model.kind = "image_only"
    txt.train_mode = "frozen" if variant in ("frozen", "frozen_cached") else "full"
    if variant == "finetune_attn0":
        txt.attention_dropout = 0.0


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


def synthetic_batch(batch: int, image_size: int, channels: int, max_length: int, vocab: int, text_hidden: int,
                    cached: bool, seed: int = 0) -> dict[str, np.ndarray]:
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
        return dict(xla_peak_bytes=int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
                                       + m.temp_size_in_bytes),
                    xla_temp_bytes=int(m.temp_size_in_bytes), xla_alias_bytes=int(m.alias_size_in_bytes))
    except Exception:  # noqa: BLE001 - not every backend reports it
        return dict(xla_peak_bytes=None, xla_temp_bytes=None, xla_alias_bytes=None)


def _peak_bytes_in_use() -> int | None:
    stats = jax.devices()[0].memory_stats()
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


class PreparedStep:
    """The compiled train step of one config with its state and a synthetic batch on the
    device; `step()` runs one step (state donated and replaced), `block()` waits for it."""

    def __init__(self, config, *, variant: str, batch: int, mesh, vocab: int):
        txt, model_cfg = config.model.text_encoder, config.model
        image_size, channels, max_length = config.data.image_size, config.data.channels, txt.max_length
        model = create_model(model_cfg, num_classes=NUM_CLASSES, vocab_size=vocab, axis_name=train.AXIS)
        lr_fn = optim.create_learning_rate_fn(config.optim, 10_000)
        tx = optim.create_optimizer(config.optim, model_cfg, lr_fn)
        self.state = train.create_train_state(model, tx, jax.random.key(config.seed), mesh, image_size=image_size,
                                              max_length=max_length, channels=channels)
        step_fn = train.make_train_step(model, mesh, lr_fn=lr_fn,
                                        kl_schedule=schedules.create_kl_schedule(config.train, 1000),
                                        num_samples=model_cfg.num_samples,
                                        objective=losses.Objective.from_config(config.train),
                                        pos_weight=None)
        host_batch = synthetic_batch(batch, image_size, channels, max_length, vocab, txt.hidden_size,
                                     cached=variant == "frozen_cached", seed=config.seed)
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
            gflop_per_sample_compiled=None if self.flops_compiled is None
            else round(self.flops_compiled / self.batch_size / 1e9, 3),
            peak_bytes_in_use=_peak_bytes_in_use(),
            **self.xla_memory,
            loss=float(self.metrics["loss"]),
        )
        if pipelined is not None:
            out.update(step_ms_pipelined=round(pipelined * 1e3, 3),
                       samples_per_s_pipelined=round(self.batch_size / pipelined, 2))
        return out


def run_one(config, *, variant: str, batch: int, steps: int, warmup: int, mesh, vocab: int) -> dict:
    """Builds, compiles and times one train step; returns the measured fields."""
    prepared = PreparedStep(config, variant=variant, batch=batch, mesh=mesh, vocab=vocab)
    for _ in range(warmup):
        prepared.step()
    prepared.block()
    times = [prepared.timed_step() for _ in range(steps)]
    t = time.perf_counter()
    for _ in range(steps):
        prepared.step()
    prepared.block()
    pipelined = (time.perf_counter() - t) / steps
    return prepared.summary(times, pipelined)


def run_config(config, variant: str, dtype: str, attention: str):
    """A copy of `config` for one run, and the attention kernel it resolves to (None
    without BERT in the step)."""
    cfg = config.copy_and_resolve_references()
    apply_variant(cfg, variant, dtype, attention)
    txt = cfg.model.text_encoder
    if variant in ("image_only", "frozen_cached"):
        return cfg, None
    return cfg, bert_lib.resolve_attention_impl(attention, dtype, txt.hidden_size // txt.num_heads)


def base_line(cfg, variant: str, dtype: str, resolved, attention: str, args, peak: float) -> dict:
    device, txt = jax.devices()[0], cfg.model.text_encoder
    return dict(device_kind=device.device_kind, platform=jax.default_backend(), jax_version=jax.__version__,
                variant=variant, dtype=dtype, attention_impl=resolved, attention_requested=attention,
                batch=args.batch, image_size=cfg.data.image_size, max_length=txt.max_length,
                text_layers=txt.num_layers, text_hidden=txt.hidden_size, bf16_matmul_tflops=round(peak, 3),
                warmup=args.warmup, steps=args.steps)


def add_rates(line: dict, peak: float) -> None:
    """Achieved TFLOP/s and its fraction of the bf16 matmul peak."""
    if line.get("gflop_per_sample") is None or "samples_per_s" not in line:
        return
    line["tflops_achieved"] = round(line["gflop_per_sample"] * line["samples_per_s"] / 1e3, 4)
    line["frac_of_bf16_peak"] = round(line["tflops_achieved"] / peak, 4)
    if "samples_per_s_pipelined" in line:
        line["tflops_achieved_pipelined"] = round(line["gflop_per_sample"] * line["samples_per_s_pipelined"] / 1e3, 4)


def run_all(config, args) -> list[dict]:
    mesh = train.make_mesh(args.num_devices)
    device = jax.devices()[0]
    peak = matmul_peak_tflops()
    log(f"{device.device_kind} ({jax.default_backend()}), jax {jax.__version__}: bf16 matmul {peak:.3g} TFLOP/s")
    start, slowest, results, seen = time.perf_counter(), 0.0, [], set()
    for variant, dtype, attention in args.runs:
        cfg, resolved = run_config(config, variant, dtype, attention)
        if (variant, dtype, resolved) in seen:  # e.g. 'auto' and 'xla' are the same program on CPU
            continue
        seen.add((variant, dtype, resolved))
        line = base_line(cfg, variant, dtype, resolved, attention, args, peak)
        elapsed = time.perf_counter() - start
        if args.deadline_s and results and elapsed + slowest > args.deadline_s:
            line["skipped"] = f"deadline: {elapsed:.0f} s spent, a run takes up to {slowest:.0f} s"
            emit(line, args)
            results.append(line)
            continue
        log(f"{variant} {dtype} attention={resolved}: compiling")
        t = time.perf_counter()
        try:
            line.update(run_one(cfg, variant=variant, batch=args.batch, steps=args.steps, warmup=args.warmup,
                                mesh=mesh, vocab=args.vocab))
            add_rates(line, peak)
        except Exception as e:  # noqa: BLE001 - report and go on with the next run
            traceback.print_exc(file=sys.stderr)
            line["error"] = f"{type(e).__name__}: {str(e)[:400]}"
        slowest = max(slowest, time.perf_counter() - t)
        gc.collect()
        emit(line, args)
        results.append(line)
    return results


def run_interleaved(config, args) -> list[dict]:
    """`--interleave`: compiles every run first, then times them in turn, one step each per
    round, so that all see the same background load (a shared machine); per-step medians,
    no pipelined figure."""
    mesh = train.make_mesh(args.num_devices)
    peak = matmul_peak_tflops()
    prepared, lines, seen = [], [], set()
    for variant, dtype, attention in args.runs:
        cfg, resolved = run_config(config, variant, dtype, attention)
        if (variant, dtype, resolved) in seen:
            continue
        seen.add((variant, dtype, resolved))
        line = base_line(cfg, variant, dtype, resolved, attention, args, peak)
        log(f"{variant} {dtype} attention={resolved}: compiling")
        try:
            step = PreparedStep(cfg, variant=variant, batch=args.batch, mesh=mesh, vocab=args.vocab)
            for _ in range(args.warmup):
                step.step()
            step.block()
            prepared.append((line, step))
        except Exception as e:  # noqa: BLE001
            traceback.print_exc(file=sys.stderr)
            line["error"] = f"{type(e).__name__}: {str(e)[:400]}"
            lines.append(line)
    times = [[] for _ in prepared]
    for _ in range(args.steps):
        for i, (_, step) in enumerate(prepared):
            times[i].append(step.timed_step())
    for (line, step), t in zip(prepared, times, strict=True):
        line.update(step.summary(t, None), interleaved=True)
        add_rates(line, peak)
        lines.append(line)
    for line in lines:
        emit(line, args)
    return lines


def emit(line: dict, args) -> None:
    text = json.dumps(line)
    print(text, flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")


def build_config(args):
    config = load_config(args.config)
    if args.preset == "anchor":
        apply_anchor_preset(config)
    txt = config.model.text_encoder
    sizes = {"data.image_size": args.image_size, "model.text_encoder.num_layers": args.text_layers,
             "model.text_encoder.hidden_size": args.text_hidden, "model.text_encoder.num_heads": args.text_heads,
             "model.text_encoder.intermediate_size": args.text_intermediate,
             "model.text_encoder.max_length": args.max_length}
    for path, value in sizes.items():
        if value is not None:
            set_path(config, path, value)
    for item in args.set:
        path, _, value = item.partition("=")
        set_path(config, path, parse_value(value))
    if not txt.tokenizer and not txt.init_from:
        txt.tokenizer = "synthetic"  # the step needs none; config_checks wants one named
    config.train.batch_size = config.train.eval_batch_size = args.batch
    from vkd_jax import config_checks  # numpy only
    config_checks.validate(config, num_devices=args.num_devices)
    return config


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/mimic.py", help="config file (repository-relative or absolute)")
    p.add_argument("--preset", choices=("anchor", "none"), default="anchor",
                   help="'anchor': the PyTorch anchor's model and step; 'none': the config file as it is")
    p.add_argument("--batch", type=int, default=64, help="global batch")
    p.add_argument("--variants", default="frozen,finetune,frozen_cached,image_only",
                   help=f"comma-separated, of {VARIANTS}")
    p.add_argument("--dtypes", default="float32,bfloat16", help="compute dtypes (model.dtype), comma-separated")
    p.add_argument("--attention", default="auto", help="attention_impl values to try, comma-separated "
                   "(auto,xla,cudnn); runs that resolve to the same kernel are done once")
    p.add_argument("--runs", default="", help="explicit runs instead of the product of the three above: "
                   "comma-separated variant:dtype[:attention], in order, e.g. frozen:bfloat16,frozen:float32:xla")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps after compiling")
    p.add_argument("--image_size", type=int)
    p.add_argument("--text_layers", type=int)
    p.add_argument("--text_hidden", type=int)
    p.add_argument("--text_heads", type=int)
    p.add_argument("--text_intermediate", type=int)
    p.add_argument("--max_length", type=int)
    p.add_argument("--vocab", type=int, default=ANCHOR_VOCAB, help="vocabulary size of the BERT")
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                   help="any config field, e.g. --set model.text_encoder.remat=True (repeatable)")
    p.add_argument("--num_devices", type=int, default=1, help="devices of the ('data',) mesh")
    p.add_argument("--deadline_s", type=float, default=0.0,
                   help="skip the remaining runs once this many seconds would be exceeded (0: never)")
    p.add_argument("--interleave", action="store_true",
                   help="compile all runs, then time them in turn, one step each per round (noisy, shared machines)")
    p.add_argument("--out", default="", help="also append the JSON lines to this file")
    args = p.parse_args(argv)
    if args.runs:
        runs = []
        for item in args.runs.split(","):
            parts = item.split(":")
            if not 2 <= len(parts) <= 3:
                p.error(f"--runs item {item!r} is not variant:dtype[:attention]")
            runs.append((parts[0], parts[1], parts[2] if len(parts) == 3 else "auto"))
    else:
        runs = [(v, d, a) for v in args.variants.split(",") if v for d in args.dtypes.split(",") if d
                for a in args.attention.split(",") if a]
    for v, d, a in runs:
        if v not in VARIANTS:
            p.error(f"unknown variant {v!r}; known: {VARIANTS}")
        if d not in DTYPES:
            p.error(f"unknown dtype {d!r}; known: {DTYPES}")
        if a not in bert_lib.ATTENTION_IMPLS:
            p.error(f"unknown attention {a!r}; known: {bert_lib.ATTENTION_IMPLS}")
    args.runs = runs
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    config = build_config(args)
    results = (run_interleaved if args.interleave else run_all)(config, args)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
