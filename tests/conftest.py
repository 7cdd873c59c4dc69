"""Test session set-up: 8 fake CPU devices, so multi-device code is tested without hardware,
XLA compiling fast (`e2e.FAST_XLA`), and torchvision importable beside a CPU-only torch
(`vkd_jax/pretrained/torchvision_ops.py`).

All three must happen before anything imports JAX's backends or torchvision, hence here and not
in a test module.
"""

import os
import tempfile

import jax

from tests import e2e
from vkd_jax.pretrained import torchvision_ops

jax.config.update("jax_num_cpu_devices", 8)
# Read when the CPU backend starts, which no import above does.
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {e2e.FAST_XLA}".strip()
torchvision_ops.declare_missing_ops()
# The machine's caches (the text-feature cache's default place) stay out of the user's home;
# subprocesses inherit it.
os.environ["VKD_JAX_CACHE"] = tempfile.mkdtemp(prefix="vkd-jax-cache-")


import pytest  # noqa: E402


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
