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

import importlib.util
import os

_LIBRARY = None  # The declarations live as long as this object.


def declare_missing_ops() -> bool:
    """Declares `torchvision::nms` and `qnms` where torchvision is installed but its C ops do
    not load; returns whether it did. Call before anything imports torchvision."""
    global _LIBRARY
    spec = importlib.util.find_spec("torchvision")
    if spec is None or importlib.util.find_spec("torch") is None:
        return False
    import torch

    try:
        torch.ops.load_library(os.path.join(os.path.dirname(spec.origin), "_C.so"))
        return False
    except OSError:
        if _LIBRARY is not None or hasattr(torch.ops.torchvision, "nms"):
            return False
        _LIBRARY = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            _LIBRARY.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        return True
