"""What kind of op a profiled op is, for `profile_step.py`: one of `KINDS`, for an instruction of
our compiled step's HLO (`parse_hlo`: a fusion is classed by what it contains) or an aten op of
the PyTorch anchor (`torch_kind`); and which part of our model an HLO op belongs to, forward or
backward (`part_of`, from its `op_name` metadata)."""

from __future__ import annotations

import collections
import re

KINDS = ("convolution", "matmul", "attention", "normalisation+elementwise", "concatenate/copy", "collective", "other")


# ----------------------------------------------------------------------------
# Our step: the compiled HLO tells what each traced op is.

_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")
_COMP = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")  # computations start at column 0
_OPCODE = re.compile(r"(?:^|\s)([a-z][a-z0-9\-]*)\(")  # the first `word(` after the type
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_CUSTOM_TARGET = re.compile(r'custom_call_target="([^"]*)"')
# Ops that only hold others (their bodies' ops are traced themselves).
CONTAINERS = {"while", "conditional", "call", "async-start", "async-done", "async-update"}
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


# ----------------------------------------------------------------------------
# The PyTorch anchor: an aten op's name tells what it is.


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
