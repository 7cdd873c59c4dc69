"""The PyTorch anchor's VKD train step and ours, at the same shapes and batch, in one command.

    # GPU (CUDA): paper shapes, batch 64, bf16 (anchor: autocast + channels_last, as in its results)
    python -m benchmarks.side_by_side --size=paper --out_dir=$OUT
    # CPU: the same comparison, small (DenseNet-121 at 64 px, 2-layer 128-wide BERT, 64 tokens, batch 8, fp32)
    python -m benchmarks.side_by_side --size=small

From the repository root. The anchor is shared/anchors/torch_vkd_bench.py, read from
`--anchor`, else `.anchors/` in the checkout (git-ignored: copy it there, the GPU machine
gets only the checkout), else a `shared/` beside or inside the checkout. Our side is
`benchmarks/train_step.py --config=configs/anchor.py:<size>`, the anchor's model and step at
the sizes of `configs/anchor.py` (`SIZES`), which the anchor's side takes from that config too.

On a GPU the anchor's own `bench` runs first (CUDA events over back-to-back steps, its peak
memory), then our step in a subprocess (JAX then has the device to itself). On CPU both run
in this process, one step of each in turn (a shared machine's load changes faster than a
run), the anchor's step in a plain loop (`torch.set_num_threads`, all cores by default);
`--jax_subprocess` takes the GPU path instead. Without a working torchvision (as with a
CPU-only torch beside PyPI's torchvision) the anchor's DenseNet-121 is built by
`torch_densenet_module`, torchvision's architecture in plain torch, and the output says so.

Anchor runs: `frozen` (the anchor as published; its frozen BERT stays in train mode, so
dropout still runs in it), `finetune`, and `frozen_eval` (its frozen BERT in eval mode: no
dropout, the computation our frozen step does). A frozen JAX run gets a ratio against both.

Prints a table and writes JSON lines (torch runs, JAX runs, ratios) to
`<out_dir>/side_by_side.jsonl` (`--out_dir`, default $OUT when set). A ratio is JAX
samples/s over PyTorch samples/s at the same variant and precision: on a GPU both
back-to-back (pipelined) throughputs, on CPU both medians of per-step times.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
import types

from configs import anchor as anchor_config

# Before torch loads libgomp: its default active spin-wait makes a 2-thread torch CPU step
# 10-100x slower whenever other processes share the cores (measured here: 20 ms steps
# became 2-3 s); passive waiting costs nothing on an idle machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANCHOR_PLACES = (
    ".anchors/torch_vkd_bench.py",
    "shared/anchors/torch_vkd_bench.py",
    "../shared/anchors/torch_vkd_bench.py",
)

# The shapes both sides are built at, read from a configs/anchor.py config.
Shapes = collections.namedtuple(
    "Shapes", "image_size block_sizes text_layers text_hidden text_heads text_intermediate max_length batch"
)
# Anchor runs -> its VKD's `bert_trainable`. `frozen` is the anchor as published: its BERT,
# though frozen, is in train mode, so dropout still draws masks in it; `frozen_eval` puts that
# BERT in eval mode (no dropout), which is what our frozen step computes (a frozen encoder is
# a deterministic feature extractor, the same features as the text-feature cache).
TORCH_VARIANTS = {"frozen": False, "finetune": True, "frozen_eval": False}
# Each JAX variant is compared with these anchor runs (those that were run).
BASELINE = {
    "frozen": ("frozen", "frozen_eval"),
    "finetune": ("finetune",),
    "finetune_attn0": ("finetune",),
    "frozen_cached": ("frozen", "frozen_eval"),
    "image_only": ("frozen", "frozen_eval"),
}


def log(msg: str) -> None:
    print(f"[side_by_side] {msg}", file=sys.stderr, flush=True)


def size_config(size: str, batch: int = 0):
    """configs/anchor.py at `size` (of its `SIZES`), at `batch` (0: the size's)."""
    config = anchor_config.get_config(size)
    if batch:
        config.train.batch_size = batch
    return config


def shapes(config) -> Shapes:
    txt = config.model.text_encoder
    return Shapes(
        config.data.image_size,
        tuple(config.model.image_encoder.block_sizes),
        txt.num_layers,
        txt.hidden_size,
        txt.num_heads,
        txt.intermediate_size,
        txt.max_length,
        config.train.batch_size,
    )


# ----------------------------------------------------------------------------
# The PyTorch side.


def find_anchor(path: str | None) -> str | None:
    for p in [path] if path else [os.path.join(ROOT, a) for a in ANCHOR_PLACES]:
        if p and os.path.isfile(p):
            return os.path.abspath(p)
    return None


def torch_densenet_module():
    """A `torchvision`-like namespace whose `models.densenet121` / `models.DenseNet` are
    torchvision's DenseNet in plain torch (same modules, order and shapes)."""
    import torch
    from torch import nn

    class DenseLayer(nn.Module):
        def __init__(self, cin, growth_rate, bn_size):
            super().__init__()
            self.norm1, self.relu1 = nn.BatchNorm2d(cin), nn.ReLU(inplace=True)
            self.conv1 = nn.Conv2d(cin, bn_size * growth_rate, 1, bias=False)
            self.norm2, self.relu2 = nn.BatchNorm2d(bn_size * growth_rate), nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)

        def forward(self, features):
            x = self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))
            return self.conv2(self.relu2(self.norm2(x)))

    class DenseBlock(nn.ModuleDict):
        def __init__(self, num_layers, cin, growth_rate, bn_size):
            super().__init__()
            for i in range(num_layers):
                self.add_module(f"denselayer{i + 1}", DenseLayer(cin + i * growth_rate, growth_rate, bn_size))

        def forward(self, x):
            features = [x]
            for layer in self.values():
                features.append(layer(features))
            return torch.cat(features, 1)

    class TorchDenseNet(nn.Module):
        def __init__(self, growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64, bn_size=4):
            super().__init__()
            layers = collections.OrderedDict(
                conv0=nn.Conv2d(3, num_init_features, 7, stride=2, padding=3, bias=False),
                norm0=nn.BatchNorm2d(num_init_features),
                relu0=nn.ReLU(inplace=True),
                pool0=nn.MaxPool2d(3, stride=2, padding=1),
            )
            c = num_init_features
            for i, n in enumerate(block_config):
                layers[f"denseblock{i + 1}"] = DenseBlock(n, c, growth_rate, bn_size)
                c += n * growth_rate
                if i != len(block_config) - 1:
                    layers[f"transition{i + 1}"] = nn.Sequential(
                        collections.OrderedDict(
                            norm=nn.BatchNorm2d(c),
                            relu=nn.ReLU(inplace=True),
                            conv=nn.Conv2d(c, c // 2, 1, bias=False),
                            pool=nn.AvgPool2d(2, stride=2),
                        )
                    )
                    c //= 2
            layers["norm5"] = nn.BatchNorm2d(c)
            self.features = nn.Sequential(layers)

    def densenet121(weights=None):
        assert weights is None
        return TorchDenseNet()

    return types.SimpleNamespace(
        __version__="plain-torch copy of torchvision's DenseNet",
        models=types.SimpleNamespace(densenet121=densenet121, DenseNet=TorchDenseNet),
    )


def load_anchor(path: str, block_sizes: tuple[int, ...]):
    """Imports the anchor module; returns (module, torchvision version or description)."""
    import transformers  # noqa: F401 - before any stand-in: it probes for torchvision on import

    shim = None
    try:
        import torchvision

        tv, tv_version = torchvision, torchvision.__version__
    except Exception as e:  # noqa: BLE001 - missing, or PyPI's build beside a CPU-only torch
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        log(f"torchvision unusable ({type(e).__name__}: {str(e)[:120]}); DenseNet-121 from the plain-torch copy")
        tv = shim = torch_densenet_module()
        tv_version = tv.__version__
    spec = importlib.util.spec_from_file_location("torch_vkd_bench", path)
    anchor = importlib.util.module_from_spec(spec)
    if shim is not None:
        sys.modules["torchvision"] = shim  # for the anchor's `import torchvision` only
    try:
        spec.loader.exec_module(anchor)
    finally:
        if shim is not None:
            del sys.modules["torchvision"]
    if tuple(block_sizes) != (6, 12, 24, 16):
        # Smoke sizes: the same blocks as our side, then a 1x1 conv to the 1024 features
        # that the anchor's heads expect.
        import torch

        def densenet(weights=None):
            net = tv.models.DenseNet(growth_rate=32, block_config=tuple(block_sizes), num_init_features=64)
            channels = net.features.norm5.num_features
            net.features.add_module("to1024", torch.nn.Conv2d(channels, 1024, 1, bias=False))
            return net

        anchor.torchvision = types.SimpleNamespace(models=types.SimpleNamespace(densenet121=densenet))
    return anchor, tv_version


def bert_config(size: Shapes):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=30522,
        hidden_size=size.text_hidden,
        num_hidden_layers=size.text_layers,
        num_attention_heads=size.text_heads,
        intermediate_size=size.text_intermediate,
    )


def torch_model(anchor, variant: str, size: Shapes):
    """The anchor's VKD for one of TORCH_VARIANTS."""
    model = anchor.VKD(TORCH_VARIANTS[variant], 256, bert_cfg=bert_config(size))
    if variant == "frozen_eval":
        model.bert.eval()  # the anchor's `bench` never calls .train(), so this holds
    return model


def torch_inputs(size: Shapes, batch, device):
    import torch

    image, length = size.image_size, size.max_length
    return [
        torch.randn(batch, 3, image, image, device=device),
        torch.randint(0, 30000, (batch, length), device=device),
        torch.ones(batch, length, dtype=torch.long, device=device),
        (torch.rand(batch, 14, device=device) < 0.2).float(),
    ]


def torch_stepper(model, inputs):
    """The anchor's `bench` step (Adam on the trainable parameters, lr 1e-4, fp32) as a
    function returning the seconds it took and the loss; CPU only (synchronous). Its phases
    are `torch.profiler` ranges `vkd::forward`, `vkd::backward`, `vkd::optimiser` (for
    `profile_step.py`; outside a profiler they cost next to nothing)."""
    import torch
    from torch.profiler import record_function

    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        t = time.perf_counter()
        with record_function("vkd::forward"):
            loss = model(*inputs)
        opt.zero_grad(set_to_none=True)
        with record_function("vkd::backward"):
            loss.backward()
        with record_function("vkd::optimiser"):
            opt.step()
        return time.perf_counter() - t, float(loss.detach())

    return step


def torch_gflop_per_sample(model, inputs, batch: int) -> float | None:
    """FLOPs of one forward and backward by torch's FlopCounterMode (matmuls and
    convolutions), per example, as the anchor's `flops_per_sample`."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            model(*inputs).backward()
        model.zero_grad(set_to_none=True)
        return round(counter.get_total_flops() / batch / 1e9, 3)
    except Exception as e:  # noqa: BLE001 - a count is a nicety
        log(f"torch FLOP count failed: {type(e).__name__}: {e}")
        return None


def torch_cpu_line(variant: str, batch: int, times: list[float], loss: float, args) -> dict:
    import torch

    median = statistics.median(times)
    return dict(
        side="torch",
        variant=variant,
        precision="fp32",
        batch=batch,
        torch=torch.__version__,
        torchvision=args.torchvision_version,
        ms_per_step=round(median * 1e3, 2),
        ms_mean=round(statistics.mean(times) * 1e3, 2),
        samples_per_s=round(batch / median, 2),
        loss=loss,
        threads=torch.get_num_threads(),
        omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"),
        timing="median of per-step times",
        peak_mem_gib=None,
        host_peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )


def run_torch(anchor, size: Shapes, args, cuda: bool) -> list[dict]:
    import torch

    batch = size.batch
    results = []
    precisions = ["bf16"] + (["fp32"] if "float32" in args.jax_dtypes_for("frozen") else []) if cuda else ["fp32"]
    for variant in args.torch_variants:
        for precision in precisions:
            if precision == "fp32" and cuda and variant != "frozen":
                continue  # fp32 only for frozen on the GPU, as the issue asks
            torch.manual_seed(0)
            line = dict(
                side="torch",
                variant=variant,
                precision=precision,
                batch=batch,
                torch=torch.__version__,
                torchvision=args.torchvision_version,
            )
            try:
                model = torch_model(anchor, variant, size)
                inputs = torch_inputs(size, batch, "cuda" if cuda else "cpu")
                if cuda and precision == "bf16":  # fp32 eager at batch 8, as the anchor counts
                    gflop = torch_gflop_per_sample(
                        torch_model(anchor, variant, size).to("cuda"), torch_inputs(size, 8, "cuda"), 8
                    )
                    torch.cuda.empty_cache()
                elif not cuda:
                    gflop = torch_gflop_per_sample(model, inputs, batch)
                else:
                    gflop = None
                if cuda:
                    amp = precision == "bf16"
                    r = anchor.bench(
                        f"vkd_{variant}", model, inputs, batch, amp, False, amp, steps=args.steps, warm=args.warmup
                    )
                    line.update(
                        amp=amp,
                        channels_last=amp,
                        ms_per_step=r["ms_per_step"],
                        samples_per_s=r["samples_per_s"],
                        peak_mem_gib=r["peak_mem_gib"],
                        loss=r["loss"],
                        timing="cuda events, back to back",
                    )
                else:
                    step = torch_stepper(model, inputs)
                    for _ in range(args.warmup):
                        step()
                    times, losses = zip(*[step() for _ in range(args.steps)], strict=True)
                    line = torch_cpu_line(variant, batch, list(times), losses[-1], args)
                line["gflop_per_sample"] = gflop
                del model, inputs
            except Exception as e:  # noqa: BLE001 - report, go on
                line["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            if cuda:
                torch.cuda.empty_cache()
            log(json.dumps(line))
            if args.out_dir:  # each line as it comes, should this command be cut short
                os.makedirs(args.out_dir, exist_ok=True)
                with open(os.path.join(args.out_dir, "torch.jsonl"), "a") as f:
                    f.write(json.dumps(line) + "\n")
            results.append(line)
    return results


# ----------------------------------------------------------------------------
# The JAX side (a subprocess).


def train_step_flags(size_name: str, args) -> list[str]:
    """`benchmarks/train_step.py` flags for configs/anchor.py at `size_name` (and `--batch`)."""
    flags = [
        f"--config=configs/anchor.py:{size_name}",
        f"--runs={args.jax_runs}",
        f"--steps={args.steps}",
        f"--warmup={args.warmup}",
    ]
    return flags + ([f"--config.train.batch_size={args.batch}"] if args.batch else [])


def run_jax(size_name: str, args, deadline_s: float) -> list[dict]:
    cmd = [sys.executable, "-m", "benchmarks.train_step", *train_step_flags(size_name, args)]
    if deadline_s:
        cmd.append(f"--deadline_s={max(deadline_s - 20, 1):.0f}")
    if args.out_dir:  # each line as it comes, should this command be cut short
        os.makedirs(args.out_dir, exist_ok=True)
        cmd.append(f"--out={os.path.join(args.out_dir, 'jax.jsonl')}")
    log("JAX: " + " ".join(cmd))
    env = dict(os.environ)
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # torch may still hold its context
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    timer = threading.Timer(deadline_s, proc.kill) if deadline_s else None
    if timer:
        timer.start()
    lines = []
    for raw in proc.stdout:  # streamed: what finished before a kill is kept
        if raw.startswith("{"):
            line = json.loads(raw)
            line["side"] = "jax"
            lines.append(line)
    proc.wait()
    if timer:
        timer.cancel()
    if proc.returncode not in (0, 1):
        lines.append(dict(side="jax", error=f"train_step.py exited with {proc.returncode} (killed at the deadline?)"))
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    for line in lines:
        line.setdefault("host_peak_rss_mib", round(rss, 1))
    return lines


def run_interleaved(anchor, config, args) -> tuple[list[dict], list[dict]]:
    """CPU: each JAX run (of `config`, a configs/anchor.py config) and its PyTorch twin in
    this process, one step of each in turn, so that both see the same background load;
    medians of the per-step times."""
    import gc

    import torch

    from benchmarks import train_step as ts

    options = ts.Options(runs=ts.parse_runs(args.jax_runs.split(",")), steps=args.steps, warmup=args.warmup)
    ts.check_config(config, num_devices=1)
    mesh = ts.train.make_mesh(1)
    peak = ts.matmul_peak_tflops()
    size = shapes(config)
    batch = size.batch
    torch_lines, jax_lines = [], []
    for variant, dtype, attention in options.runs:
        cfg, resolved = ts.run_config(config, variant, dtype, attention)
        jline = ts.base_line(cfg, variant, dtype, resolved, attention, options, peak)
        jline["side"] = "jax"
        # The anchor runs this JAX run is compared with and that have not run yet: interleaved with it.
        twins = [
            t
            for t in BASELINE.get(variant, ())
            if t in args.torch_variants
            and dtype == "float32"
            and anchor is not None
            and not any(line["variant"] == t for line in torch_lines)
        ]
        log(
            f"{variant} {dtype} attention={resolved}: compiling"
            + (f", with torch {'+'.join(twins)} interleaved" if twins else "")
        )
        try:
            prepared = ts.PreparedStep(cfg, variant=variant, mesh=mesh, vocab=options.vocab)
            torch_steps, torch_gflops = {}, {}
            for twin in twins:
                torch.manual_seed(0)
                model, inputs = torch_model(anchor, twin, size), torch_inputs(size, batch, "cpu")
                torch_gflops[twin] = torch_gflop_per_sample(model, inputs, batch)
                torch_steps[twin] = torch_stepper(model, inputs)
            for _ in range(args.warmup):
                prepared.step()
                for torch_step in torch_steps.values():
                    torch_step()
            prepared.block()
            jax_times, torch_times, losses = [], collections.defaultdict(list), {}
            for _ in range(args.steps):
                for twin, torch_step in torch_steps.items():
                    dt, losses[twin] = torch_step()
                    torch_times[twin].append(dt)
                jax_times.append(prepared.timed_step())
            jline.update(prepared.summary(jax_times, None), interleaved_with_torch="+".join(twins) or None)
            ts.add_rates(jline, peak)
            for twin in torch_steps:
                torch_lines.append(
                    dict(
                        torch_cpu_line(twin, batch, torch_times[twin], losses[twin], args),
                        gflop_per_sample=torch_gflops[twin],
                    )
                )
            del prepared, torch_steps
        except Exception as e:  # noqa: BLE001 - report, go on
            import traceback

            traceback.print_exc(file=sys.stderr)
            jline["error"] = f"{type(e).__name__}: {str(e)[:300]}"
        jline["host_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        gc.collect()
        log(json.dumps(jline))
        jax_lines.append(jline)
    return torch_lines, jax_lines


# ----------------------------------------------------------------------------


def ratios(torch_lines, jax_lines, cuda: bool) -> list[dict]:
    out = []
    for j in jax_lines:
        if "samples_per_s" not in j:
            continue
        precision = "bf16" if j["dtype"] in ("bfloat16", "float16") else "fp32"
        for base in BASELINE[j["variant"]]:
            t = next(
                (
                    t
                    for t in torch_lines
                    if t["variant"] == base and t["precision"] == precision and "samples_per_s" in t
                ),
                None,
            )
            if t is None:
                continue
            jax_sps = j["samples_per_s_pipelined"] if cuda else j["samples_per_s"]
            out.append(
                dict(
                    side="ratio",
                    variant=j["variant"],
                    vs_torch=base,
                    precision=precision,
                    attention_impl=j.get("attention_impl"),
                    jax_samples_per_s=jax_sps,
                    torch_samples_per_s=t["samples_per_s"],
                    ratio=round(jax_sps / t["samples_per_s"], 3),
                    jax_peak_bytes_in_use=j.get("peak_bytes_in_use"),
                    jax_xla_peak_bytes=j.get("xla_peak_bytes"),
                    torch_peak_mem_gib=t.get("peak_mem_gib"),
                )
            )
    return out


def table(torch_lines, jax_lines, ratio_lines) -> str:
    def gib(b):
        return "-" if b is None else f"{b / 2**30:.2f}"

    def short(dtype):
        return {"bfloat16": "bf16", "float32": "fp32", "float16": "fp16"}.get(dtype, dtype)

    rows = [
        (
            f"{'side':6} {'variant':15} {'prec':5} {'attn':6} {'ms/step':>9} {'samples/s':>10} "
            f"{'GFLOP/smp':>9} {'TFLOP/s':>8} {'peak GiB':>9} {'xla GiB':>8} {'compile s':>9}"
        )
    ]
    for t in torch_lines:
        if "error" in t:
            rows.append(f"torch  {t['variant']:15} {t['precision']:5} error: {t['error'][:80]}")
            continue
        gflop = t.get("gflop_per_sample")
        gflop_text = "-" if gflop is None else f"{gflop:.2f}"
        tflops_text = "-" if gflop is None else f"{gflop * t['samples_per_s'] / 1e3:.3f}"
        rows.append(
            f"torch  {t['variant']:15} {t['precision']:5} {'-':6} {t['ms_per_step']:9.2f} "
            f"{t['samples_per_s']:10.1f} {gflop_text:>9} {tflops_text:>8} "
            f"{'-' if t.get('peak_mem_gib') is None else t['peak_mem_gib']:>9} {'-':>8} {'-':>9}"
        )
    for j in jax_lines:
        if "samples_per_s" not in j:
            why = j.get("error") or j.get("skipped")
            rows.append(f"jax    {j.get('variant', '?'):15} {short(j.get('dtype', '?')):5} {why}"[:160])
            continue
        rows.append(
            f"jax    {j['variant']:15} {short(j['dtype']):5} {j['attention_impl'] or '-':6} "
            f"{j['step_ms_median']:9.2f} {j['samples_per_s']:10.1f} {j['gflop_per_sample'] or 0:9.2f} "
            f"{j.get('tflops_achieved') or 0:8.3f} {gib(j['peak_bytes_in_use']):>9} "
            f"{gib(j['xla_peak_bytes']):>8} {j['compile_s']:9.1f}"
        )
    rows.append("")
    rows.append(f"{'ratio JAX/torch (samples/s)':28} {'variant':15} {'vs torch':11} {'prec':5} {'attn':6} {'ratio':>6}")
    for r in ratio_lines:
        rows.append(
            f"{'':28} {r['variant']:15} {r['vs_torch']:11} {r['precision']:5} "
            f"{r['attention_impl'] or '-':6} {r['ratio']:6.3f}"
        )
    return "\n".join(rows)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--size",
        choices=tuple(anchor_config.SIZES) + ("auto",),
        default="auto",
        help="configs/anchor.py's sizes; auto: paper on a CUDA GPU, small otherwise",
    )
    p.add_argument("--batch", type=int, default=0, help="0: the size's batch (paper 64, small 8)")
    p.add_argument(
        "--torch_variants",
        default="frozen,finetune,frozen_eval",
        help="anchor runs: frozen (as published: dropout on in its frozen BERT), finetune, frozen_eval "
        "(its frozen BERT in eval mode, no dropout: what our frozen step computes)",
    )
    p.add_argument(
        "--jax_runs",
        default="",
        help="train_step.py --runs (variant:dtype[:attention]); default: "
        "GPU frozen,finetune,frozen_cached,image_only in bf16 then frozen in float32; CPU frozen,finetune "
        "in float32",
    )
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--torch_threads", type=int, default=0, help="CPU: torch threads (0: all cores)")
    p.add_argument("--anchor", default=None, help="path of torch_vkd_bench.py")
    p.add_argument("--skip_torch", action="store_true")
    p.add_argument(
        "--jax_subprocess",
        action="store_true",
        help="CPU: PyTorch runs first, then JAX in a "
        "subprocess (the GPU path) instead of both interleaved in this process",
    )
    p.add_argument(
        "--deadline_s",
        type=float,
        default=0.0,
        help="stop starting JAX runs after this many seconds from the start (0: never)",
    )
    p.add_argument("--out_dir", default=os.environ.get("OUT", ""))
    args = p.parse_args(argv)
    args.torch_variants = [v for v in args.torch_variants.split(",") if v]
    for v in args.torch_variants:
        if v not in TORCH_VARIANTS:
            p.error(f"unknown --torch_variants item {v!r}; known: {tuple(TORCH_VARIANTS)}")
    return args


def main(argv=None) -> int:
    start = time.perf_counter()
    args = parse_args(argv)
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        torch, cuda = None, False
    size_name = args.size if args.size != "auto" else ("paper" if cuda else "small")
    config = size_config(size_name, args.batch)
    size = shapes(config)
    if not args.jax_runs:
        args.jax_runs = (
            "frozen:bfloat16,finetune:bfloat16,frozen_cached:bfloat16,image_only:bfloat16,frozen:float32"
            if cuda
            else "frozen:float32,finetune:float32"
        )
    jax_dtypes = {}
    for item in args.jax_runs.split(","):
        v, d = item.split(":")[:2]
        jax_dtypes.setdefault(v, []).append(d)
    args.jax_dtypes_for = lambda v: jax_dtypes.get(v, [])
    log(f"size {size_name} {size}, {'CUDA' if cuda else 'CPU'}")
    for name in ("torch.jsonl", "jax.jsonl"):  # appended to line by line below
        if args.out_dir and os.path.exists(os.path.join(args.out_dir, name)):
            os.remove(os.path.join(args.out_dir, name))

    torch_lines, args.torchvision_version, anchor = [], None, None
    if not args.skip_torch:
        path = find_anchor(args.anchor)
        if torch is None or path is None:
            log("no torch" if torch is None else f"anchor not found ({', '.join(ANCHOR_PLACES)}); JAX only")
        else:
            if not cuda:
                torch.set_num_threads(args.torch_threads or len(os.sched_getaffinity(0)))
            anchor, args.torchvision_version = load_anchor(path, size.block_sizes)
    if cuda or args.jax_subprocess:
        if anchor is not None:
            if cuda:
                peak = anchor.matmul_peak()
                torch_lines.append(
                    dict(side="torch", info=True, gpu=torch.cuda.get_device_name(), bf16_matmul_tflops=round(peak, 1))
                )
            torch_lines += run_torch(anchor, size, args, cuda)
            if cuda:
                torch.cuda.empty_cache()
        remaining = args.deadline_s - (time.perf_counter() - start) if args.deadline_s else 0.0
        jax_lines = run_jax(size_name, args, remaining)
    else:
        torch_lines, jax_lines = run_interleaved(anchor, config, args)
    runs = [t for t in torch_lines if not t.get("info")]
    ratio_lines = ratios(runs, jax_lines, cuda)
    text = table(runs, jax_lines, ratio_lines)
    print(text, flush=True)
    meta = dict(
        side="meta",
        size=size_name,
        shapes=size._asdict(),
        batch=size.batch,
        cuda=cuda,
        wall_s=round(time.perf_counter() - start, 1),
        date=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    everything = [meta, *torch_lines, *jax_lines, *ratio_lines]
    for line in everything:
        print(json.dumps(line), flush=True)
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        with open(os.path.join(args.out_dir, "side_by_side.jsonl"), "w") as f:
            f.writelines(json.dumps(line) + "\n" for line in everything)
        with open(os.path.join(args.out_dir, "side_by_side.txt"), "w") as f:
            f.write(text + "\n")
    return 0 if ratio_lines else 1


if __name__ == "__main__":
    sys.exit(main())
