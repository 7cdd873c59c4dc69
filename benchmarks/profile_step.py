"""Where a train step's time goes: ours (XLA's profile) and the PyTorch anchor's (torch.profiler).

    # CPU, the side-by-side comparison's small size (DenseNet-121 at 64 px, 2-layer BERT):
    python -m benchmarks.profile_step --size=small
    # CPU, the paper's shapes at a batch the CPU allows:
    python -m benchmarks.profile_step --size=paper --batch=4 --steps=3

From the repository root. Both steps run the same model at the same shapes as
`benchmarks/side_by_side.py` (configs/anchor.py at `--size`; ours through
`benchmarks/train_step.py`'s `PreparedStep`, the anchor's `VKD` with Adam). Each is warmed up,
then a few steps are profiled, each blocked on:

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

from benchmarks import (
    side_by_side as sbs,  # sets OMP_WAIT_POLICY before torch loads
    train_step as ts,
)

jax = ts.jax

KINDS = ("convolution", "matmul", "attention", "normalisation+elementwise", "concatenate/copy", "collective", "other")


def log(msg: str) -> None:
    print(f"[profile_step] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------
# The JAX side: the compiled HLO tells what each traced op is.

_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")
_COMP = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")  # computations start at column 0
_OPCODE = re.compile(r"(?:^|\s)([a-z][a-z0-9\-]*)\(")  # the first `word(` after the type
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_CUSTOM_TARGET = re.compile(r'custom_call_target="([^"]*)"')
_CONTAINERS = {"while", "conditional", "call", "async-start", "async-done", "async-update"}
_COLLECTIVES = {"all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute"}
_COPIES = {"concatenate", "copy", "transpose", "dynamic-update-slice", "pad", "slice"}
# What a fusion of copies may hold besides copies: no arithmetic.
_MOVES = _COPIES | {
    "bitcast",
    "parameter",
    "dynamic-slice",
    "reshape",
    "broadcast",
    "tuple",
    "get-tuple-element",
    "constant",
}


def parse_hlo(text: str) -> dict[str, dict]:
    """Instruction name -> {opcode, kind, op_name} for every instruction of an HLO module's
    text; a fusion's kind comes from the instructions of the computation it calls."""
    computations: dict[str, list[tuple[str, str, str]]] = {}
    current = None
    for line in text.splitlines():
        if line.strip() == "}":
            current = None
            continue
        m = _COMP.match(line)
        if m:
            current = computations.setdefault(m.group(1), [])
            continue
        m = _INSTR.match(line)
        if m and current is not None:
            rest = m.group(2)
            op = _OPCODE.search(rest)
            current.append((m.group(1), op.group(1) if op else "?", rest))

    def kind_of(opcode: str, rest: str, depth: int = 0) -> str:
        if opcode == "convolution":
            return "convolution"
        if opcode == "dot":
            return "matmul"
        if opcode == "custom-call":
            target = (_CUSTOM_TARGET.search(rest) or [None, ""])[1].lower()
            if "attn" in target or "fmha" in target:
                return "attention"
            if "conv" in target:
                return "convolution"
            if "gemm" in target or "matmul" in target or "blas" in target:
                return "matmul"
            return "other"
        if opcode in _COLLECTIVES:
            return "collective"
        if opcode in _COPIES:
            return "concatenate/copy"
        if opcode == "fusion" and depth < 3:
            called = _CALLS.search(rest)
            callee = computations.get(called.group(1), []) if called else []
            inner = {kind_of(o, r, depth + 1) for _, o, r in callee}
            for k in ("attention", "convolution", "matmul"):
                if k in inner:
                    return k
            ops = {o for _, o, _ in callee}
            if ops & _COPIES and ops <= _MOVES:
                return "concatenate/copy"
            return "normalisation+elementwise"
        if opcode in ("parameter", "constant", "tuple", "get-tuple-element", "bitcast"):
            return "other"
        return (
            "normalisation+elementwise"
            if opcode
            in (
                "add",
                "multiply",
                "subtract",
                "divide",
                "maximum",
                "reduce",
                "reduce-window",
                "select",
                "exponential",
                "rsqrt",
                "broadcast",
                "compare",
                "convert",
            )
            else "other"
        )

    def op_name_of(rest: str) -> str:
        """The instruction's own `op_name`, else (a fusion) the commonest in what it calls."""
        m = _OP_NAME.search(rest)
        if m:
            return m.group(1)
        called = _CALLS.search(rest)
        names = (
            collections.Counter(
                m.group(1) for _, _, r in computations.get(called.group(1), []) if (m := _OP_NAME.search(r))
            )
            if called
            else None
        )
        return names.most_common(1)[0][0] if names else ""

    index = {}
    for instructions in computations.values():
        for name, opcode, rest in instructions:
            index[name] = dict(opcode=opcode, kind=kind_of(opcode, rest), op_name=op_name_of(rest))
    return index


def part_of(op_name: str) -> tuple[str, str]:
    """(part of the model, phase) from an HLO op's `op_name` (JAX's name stack)."""
    phase = "backward" if "transpose(" in op_name else "forward" if "jvp(" in op_name else "other"
    if "image_encoder" in op_name:
        return "image_encoder", phase
    if "text_encoder" in op_name:
        return "text_encoder", phase
    if "VKDModel" in op_name or "loss" in op_name:
        return "heads+loss", phase
    if not op_name:
        return "unattributed", phase  # e.g. layout copies XLA added
    return "optimiser+rest", phase


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
        if info is None or info["opcode"] in _CONTAINERS:
            continue
        times[name] += float(e.get("dur", 0.0))
    return times


def profile_jax(cfg, variant: str, steps: int, warmup: int) -> dict:
    mesh = ts.train.make_mesh(1)
    prepared = ts.PreparedStep(cfg, variant=variant, mesh=mesh, vocab=ts.ANCHOR_VOCAB)
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


def torch_kind(name: str) -> str:
    n = name.lower()
    if "conv" in n:
        return "convolution"
    if "scaled_dot_product" in n or "attention" in n:
        return "attention"
    if re.search(r"aten::(addmm|mm|bmm|baddbmm|matmul|linear)\b", n):
        return "matmul"
    if re.search(
        r"aten::(cat|copy_|clone|contiguous|_to_copy|to|narrow|slice|t|transpose|permute|view|"
        r"reshape|expand|as_strided|split|chunk)\b",
        n,
    ):
        return "concatenate/copy"
    if n.startswith("aten::") or "foreach" in n or "optim" in n:
        return "normalisation+elementwise"
    return "other"


def profile_torch(anchor, size: sbs.Shapes, variant: str, steps: int, warmup: int) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    # Its phases are the profiler ranges vkd::forward / vkd::backward / vkd::optimiser.
    step = sbs.torch_stepper(sbs.torch_model(anchor, variant, size), sbs.torch_inputs(size, size.batch, "cpu"))
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
    p.add_argument("--size", choices=tuple(sbs.anchor_config.SIZES), default="small", help="configs/anchor.py's")
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
    config = sbs.size_config(args.size, args.batch)
    ts.check_config(config, num_devices=1)
    size = sbs.shapes(config)
    anchor = None
    if not args.skip_torch:
        path = sbs.find_anchor(args.anchor)
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
            anchor, _ = sbs.load_anchor(path, size.block_sizes)
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
