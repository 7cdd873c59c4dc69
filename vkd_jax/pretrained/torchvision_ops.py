"""torchvision importable beside a CPU-only torch, for torchxrayvision (`vkd-jax convert-xrv`,
unpickling its checkpoints) and the torch-side oracles (the tests' parity references, the
PyTorch anchor of the step benchmarks).

PyPI's torchvision is a CUDA build: beside the CPU-only torch the test extra pins, its C ops
(`_C.so`, linked to libtorch_cuda) do not load, and `import torchvision` then fails when it
registers a fake kernel for `torchvision::nms`, an op that does not exist; so do
torchxrayvision and transformers' torch `BertModel`, which import it. None of them uses
torchvision's ops: where they do not load, `declare_missing_ops` declares the two it registers
fakes for, and it imports. vkd-jax itself never imports torchvision; this module imports torch
only when torch and torchvision are both installed.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import subprocess
import sys

_LIBRARY = None  # The declarations live as long as this object.


def declare_missing_ops() -> bool:
    """Declares `torchvision::nms` and `qnms` where torchvision is installed but its C ops do
    not load; returns whether it did. Call before anything imports torchvision."""
    global _LIBRARY
    spec = importlib.util.find_spec("torchvision")
    if spec is None or importlib.util.find_spec("torch") is None or _ops_load(spec.origin):
        return False
    import torch

    if _LIBRARY is not None or hasattr(torch.ops.torchvision, "nms"):
        return False
    _LIBRARY = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        _LIBRARY.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    return True


def _ops_load(torchvision_init: str) -> bool:
    """Whether torchvision's C ops (`_C.so`; `_C_stable.so` from 0.29) load beside this torch.
    Tried in a child process: loading them here would register the ops, and `import
    torchvision` registering them again would abort the process."""
    folder = os.path.dirname(torchvision_init)
    libraries = sorted(glob.glob(os.path.join(folder, "_C*.so")))
    if not libraries:
        return True  # nothing to load, nothing to stand in for
    code = f"import torch; torch.ops.load_library({libraries[0]!r})"
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
