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
`anchor_side.torch_densenet_module`, torchvision's architecture in plain torch, and the output
says so.

Anchor runs: `frozen` (the anchor as published; its frozen BERT stays in train mode, so
dropout still runs in it), `finetune`, and `frozen_eval` (its frozen BERT in eval mode: no
dropout, the computation our frozen step does). A frozen JAX run gets a ratio against both.

Prints a table and writes JSON lines (torch runs, JAX runs, ratios) to
`<out_dir>/side_by_side.jsonl` (`--out_dir`, default $OUT when set). A ratio is JAX
samples/s over PyTorch samples/s at the same variant and precision: on a GPU both
back-to-back (pipelined) throughputs, on CPU both medians of per-step times.

The anchor's side is `benchmarks/anchor_side.py`, the ratios and the table
`benchmarks/side_by_side_report.py`; our side is run from here.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import subprocess
import sys
import threading
import time

from benchmarks.anchor_side import (  # first: sets OMP_WAIT_POLICY before torch loads
    ANCHOR_PLACES,
    ROOT,
    TORCH_VARIANTS,
    find_anchor,
    load_anchor,
    run_torch,
    shapes,
    size_config,
    torch_cpu_line,
    torch_gflop_per_sample,
    torch_inputs,
    torch_model,
    torch_stepper,
)
from benchmarks.side_by_side_report import BASELINE, ratios, table
from configs import anchor as anchor_config


def log(msg: str) -> None:
    print(f"[side_by_side] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------
# Our side: a subprocess (GPU, or `--jax_subprocess`: JAX is imported only there), or
# interleaved with the anchor's step in this process (CPU).


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
    from benchmarks.step_measure import PreparedStep, add_rates, matmul_peak_tflops
    from vkd_jax import sharding

    options = ts.Options(runs=ts.parse_runs(args.jax_runs.split(",")), steps=args.steps, warmup=args.warmup)
    ts.check_config(config, num_devices=1)
    mesh = sharding.make_mesh(1)
    peak = matmul_peak_tflops()
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
            prepared = PreparedStep(cfg, variant=variant, mesh=mesh, vocab=options.vocab)
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
            add_rates(jline, peak)
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
