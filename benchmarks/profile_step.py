"""Where a train step's time goes: ours (XLA's profile) and the PyTorch anchor's (torch.profiler).

    # CPU, the side-by-side comparison's small size (DenseNet-121 at 64 px, 2-layer BERT):
    python -m benchmarks.profile_step --size=small
    # CPU, the paper's shapes at a batch the CPU allows:
    python -m benchmarks.profile_step --size=paper --batch=4 --steps=3

From the repository root. Both steps run the same model at the same shapes as
`benchmarks/side_by_side.py` (configs/anchor.py at `--size`; ours through
`benchmarks/step_measure.py`'s `PreparedStep`, the anchor's `VKD` with Adam through
`benchmarks/anchor_side.py`). Each is warmed up, then a few steps are profiled, each blocked
on (what an op is: `benchmarks/op_kinds.py`):

- ours with `jax.profiler.trace(create_perfetto_trace=True)`: every event named after an
  instruction of the compiled step's HLO is one op's time. The HLO says what the op is
  (a fusion is classed by what it contains: a convolution, a dot, a concatenation, else
  elementwise/normalisation work) and, through its `op_name` metadata, which part of the
  model it belongs to (image encoder, text encoder, the heads and loss, the optimiser) and
  whether it is forward (`jvp`) or backward (`transpose`);
- the anchor's with `torch.profiler`: each op's self time, classed by its aten name, and its
  phase (forward, backward, optimiser) from ranges around them.

Prints, per framework and variant, milliseconds per step and the share of op time by kind of
op, the JAX step also by part of the model, and the ten costliest ops; writes the figures as
JSON lines to `<out_dir>/profile.jsonl` (`--out_dir`, default $OUT when set). Op times are
summed over threads, so with several threads working at once their sum can exceed the wall
time; the shares are what to read. Profiling adds overhead: the wall times here are not the
benchmark's (`side_by_side.py` gives those). Measured on the CPU only: the anchor is profiled
on the CPU (on a GPU machine, pass `--skip_torch`), and reading our step's GPU trace (kernel
events matched to HLO ops through their `hlo_op` field) has not run on a GPU yet.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import shutil
import sys
import tempfile
import time

import jax

from benchmarks import (
    anchor_side,  # sets OMP_WAIT_POLICY before torch loads
    train_step as ts,
)
from benchmarks.op_kinds import CONTAINERS, KINDS, parse_hlo, part_of, torch_kind
from benchmarks.step_measure import PreparedStep
from configs import anchor as anchor_config
from vkd_jax import sharding


def log(msg: str) -> None:
    print(f"[profile_step] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------
# Our step: each traced op's time, read from the trace and placed by the HLO.


def read_perfetto(trace_dir: str) -> list[dict]:
    paths = sorted(glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True))
    if not paths:
        raise FileNotFoundError(f"no perfetto_trace.json.gz under {trace_dir}")
    with gzip.open(paths[-1], "rt") as f:
        data = json.load(f)
    return data["traceEvents"] if isinstance(data, dict) else data


def jax_op_times(events: list[dict], index: dict[str, dict]) -> dict[str, float]:
    """Microseconds per HLO instruction over the traced steps (container ops left out: their
    bodies' ops are traced themselves)."""
    times: dict[str, float] = collections.defaultdict(float)
    for e in events:
        if e.get("ph") != "X":
            continue
        name = (e.get("args") or {}).get("hlo_op") or e.get("name", "")
        info = index.get(name)
        if info is None or info["opcode"] in CONTAINERS:
            continue
        times[name] += float(e.get("dur", 0.0))
    return times


def profile_jax(cfg, variant: str, steps: int, warmup: int) -> dict:
    mesh = sharding.make_mesh(1)
    prepared = PreparedStep(cfg, variant=variant, mesh=mesh, vocab=ts.ANCHOR_VOCAB)
    log(f"jax {variant}: compiled in {prepared.compile_s:.1f} s")
    for _ in range(warmup):
        prepared.step()
    prepared.block()
    index = parse_hlo(prepared.compiled.as_text())
    trace_dir = tempfile.mkdtemp(prefix="vkd-profile-")
    try:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            t = time.perf_counter()
            for _ in range(steps):
                prepared.timed_step()
            wall = (time.perf_counter() - t) / steps
        times = jax_op_times(read_perfetto(trace_dir), index)
    finally:
        shutil.rmtree(trace_dir, ignore_errors=True)
    if not times:
        raise RuntimeError("the trace holds no event named after an HLO instruction of the step")
    by_kind, by_part, by_part_phase = (collections.defaultdict(float) for _ in range(3))
    for name, us in times.items():
        info = index[name]
        part, phase = part_of(info["op_name"])
        by_kind[info["kind"]] += us
        by_part[part] += us
        by_part_phase[f"{part}/{phase}"] += us
    top = sorted(times.items(), key=lambda kv: -kv[1])[:10]
    return dict(
        wall_ms_per_step=wall * 1e3,
        op_ms_per_step=sum(times.values()) / steps / 1e3,
        by_kind=_per_step(by_kind, steps),
        by_part=_per_step(by_part, steps),
        by_part_phase=_per_step(by_part_phase, steps),
        top=[
            dict(op=n, kind=index[n]["kind"], ms_per_step=round(us / steps / 1e3, 3), where=_short(index[n]["op_name"]))
            for n, us in top
        ],
    )


def _short(op_name: str) -> str:
    return re.sub(r"^jit\([^)]*\)/", "", op_name)[-90:]


def _per_step(d: dict, steps: int) -> dict:
    return {k: round(v / steps / 1e3, 3) for k, v in sorted(d.items(), key=lambda kv: -kv[1])}


# ----------------------------------------------------------------------------
# The PyTorch side.


def profile_torch(anchor, size: anchor_side.Shapes, variant: str, steps: int, warmup: int) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    # Its phases are the profiler ranges vkd::forward / vkd::backward / vkd::optimiser.
    step = anchor_side.torch_stepper(
        anchor_side.torch_model(anchor, variant, size), anchor_side.torch_inputs(size, size.batch, "cpu")
    )
    for _ in range(warmup):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        for _ in range(steps):
            step()
        wall = (time.perf_counter() - t) / steps
    by_kind, by_phase, by_op = (collections.defaultdict(float) for _ in range(3))
    for e in prof.events():
        if e.name.startswith("vkd::") or e.name.startswith("ProfilerStep"):
            continue
        us = float(e.self_cpu_time_total)
        if us <= 0:
            continue
        phase, parent = "other", e.cpu_parent
        while parent is not None:
            if parent.name.startswith("vkd::"):
                phase = parent.name[5:]
                break
            parent = parent.cpu_parent
        by_kind[torch_kind(e.name)] += us
        by_phase[phase] += us
        by_op[e.name] += us
    top = sorted(by_op.items(), key=lambda kv: -kv[1])[:10]
    return dict(
        wall_ms_per_step=wall * 1e3,
        op_ms_per_step=sum(by_op.values()) / steps / 1e3,
        threads=torch.get_num_threads(),
        by_kind=_per_step(by_kind, steps),
        by_phase=_per_step(by_phase, steps),
        top=[dict(op=n, kind=torch_kind(n), ms_per_step=round(us / steps / 1e3, 3)) for n, us in top],
    )


# ----------------------------------------------------------------------------


def share_table(rows: list[dict]) -> str:
    """Markdown: one column per run, op-time share by kind (and ms per step)."""
    head = "| kind of op | " + " | ".join(f"{r['side']} {r['variant']}" for r in rows) + " |"
    lines = [head, "|---" * (len(rows) + 1) + "|"]
    for kind in KINDS:
        cells = []
        for r in rows:
            ms = r["by_kind"].get(kind, 0.0)
            cells.append(f"{100 * ms / r['op_ms_per_step']:.1f}% ({ms:.1f} ms)")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines.append("| op time, ms/step | " + " | ".join(f"{r['op_ms_per_step']:.1f}" for r in rows) + " |")
    lines.append("| wall, ms/step (profiled) | " + " | ".join(f"{r['wall_ms_per_step']:.1f}" for r in rows) + " |")
    return "\n".join(lines)


def part_table(rows: list[dict]) -> str:
    jax_rows = [r for r in rows if r["side"] == "jax"]
    if not jax_rows:
        return ""
    keys = sorted({k for r in jax_rows for k in r["by_part_phase"]})
    lines = [
        "| JAX: part/phase | " + " | ".join(r["variant"] for r in jax_rows) + " |",
        "|---" * (len(jax_rows) + 1) + "|",
    ]
    for k in keys:
        lines.append(
            f"| {k} | "
            + " | ".join(f"{100 * r['by_part_phase'].get(k, 0.0) / r['op_ms_per_step']:.1f}%" for r in jax_rows)
            + " |"
        )
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--size", choices=tuple(anchor_config.SIZES), default="small", help="configs/anchor.py's")
    p.add_argument("--batch", type=int, default=0, help="0: the size's batch")
    p.add_argument("--variants", default="frozen,finetune", help="comma-separated: frozen, finetune")
    p.add_argument("--dtype", default="float32", choices=ts.DTYPES, help="JAX compute dtype (PyTorch: fp32)")
    p.add_argument("--steps", type=int, default=5, help="profiled steps")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--torch_threads", type=int, default=0, help="0: all cores")
    p.add_argument("--anchor", default=None, help="path of torch_vkd_bench.py (default: as side_by_side.py)")
    p.add_argument("--skip_torch", action="store_true")
    p.add_argument("--out_dir", default=os.environ.get("OUT", ""))
    args = p.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    for v in args.variants:
        if v not in ("frozen", "finetune"):
            p.error(f"unknown variant {v!r}; known: frozen, finetune")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    config = anchor_side.size_config(args.size, args.batch)
    ts.check_config(config, num_devices=1)
    size = anchor_side.shapes(config)
    anchor = None
    if not args.skip_torch:
        path = anchor_side.find_anchor(args.anchor)
        if path is None:
            log(
                "the PyTorch anchor was not found (--anchor, .anchors/torch_vkd_bench.py or shared/anchors/); "
                "profiling our step only"
            )
        else:
            import torch

            if torch.cuda.is_available():
                raise SystemExit(
                    "profile_step.py profiles the anchor on the CPU only; on a GPU machine pass "
                    "--skip_torch (our step's trace is read there through its `hlo_op` fields)"
                )
            if args.torch_threads:
                torch.set_num_threads(args.torch_threads)
            anchor, _ = anchor_side.load_anchor(path, size.block_sizes)
    rows = []
    for variant in args.variants:
        cfg, resolved = ts.run_config(config, variant, args.dtype, "auto")
        runs = [("jax", lambda: profile_jax(cfg, variant, args.steps, args.warmup))]
        if anchor is not None:
            runs.append(("torch", lambda: profile_torch(anchor, size, variant, args.steps, args.warmup)))
        for side, fn in runs:
            log(f"{side} {variant}: profiling {args.steps} steps")
            row = dict(
                side=side,
                variant=variant,
                size=args.size,
                batch=size.batch,
                device=jax.devices()[0].device_kind,
                dtype=args.dtype if side == "jax" else "float32",
                steps=args.steps,
                attention_impl=resolved if side == "jax" else None,
            )
            row.update(fn())
            rows.append(row)
            log(json.dumps(row))
            if args.out_dir:
                os.makedirs(args.out_dir, exist_ok=True)
                with open(os.path.join(args.out_dir, "profile.jsonl"), "a") as f:
                    f.write(json.dumps(row) + "\n")
    print(share_table(rows))
    print()
    print(part_table(rows))
    for r in rows:
        print(f"\n{r['side']} {r['variant']}: costliest ops (ms/step)")
        for t in r["top"]:
            print(f"  {t['ms_per_step']:9.2f}  {t['kind']:<26} {t['op']}  {t.get('where', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
