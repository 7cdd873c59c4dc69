"""Test session set-up: 8 fake CPU devices, so multi-device code is tested without hardware,
and torchvision importable beside a CPU-only torch.

Both must happen before anything imports JAX's backends or torchvision, hence here and not
in a test module.
"""

import importlib.util
import os

import jax

jax.config.update("jax_num_cpu_devices", 8)


def _torchvision_without_its_ops():
    """PyPI's torchvision is a CUDA build: beside a CPU-only torch its C ops (`_C.so`, linked to
    libtorch_cuda) do not load, and `import torchvision` then fails registering a fake kernel
    for `torchvision::nms`, an op that does not exist; so do torchxrayvision and transformers'
    `BertModel`, which import it. No test uses torchvision's ops: where they do not load, the
    two ops it registers fakes for are declared, and it imports. Returns the library holding
    the declarations (None where nothing was needed)."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or importlib.util.find_spec("torch") is None:
        return None
    import torch

    try:
        torch.ops.load_library(os.path.join(os.path.dirname(spec.origin), "_C.so"))
        return None
    except OSError:
        if hasattr(torch.ops.torchvision, "nms"):  # declared already (this file imported twice)
            return None
        lib = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        return lib


_TORCHVISION_DECLARATIONS = _torchvision_without_its_ops()  # kept alive for the session


import pytest  # noqa: E402

from tests import e2e  # noqa: E402


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A data directory the end-to-end runs share (synthetic_cxr is generated on first use)."""
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="session")
def trained(data_dir, tmp_path_factory):
    """One small training run (`e2e.TRAINED_ARGS`, 1 process x 8 devices), shared by the tests
    of what it leaves behind."""
    workdir = tmp_path_factory.mktemp("trained")
    proc = e2e.run_py(e2e.TRAINED_ARGS, data_dir, workdir, devices=8)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return workdir, out
