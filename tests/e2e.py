"""Helpers of the end-to-end tests: run.py in subprocesses on a tiny synthetic set-up."""

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--config.data.image_size=32",
    "--config.data.synthetic.num_train=256",
    "--config.data.synthetic.num_validation=64",
    "--config.data.synthetic.num_test=96",
    "--config.model.image_encoder.block_sizes=(1,1,1,1)",
    "--config.model.image_encoder.growth_rate=4",
    "--config.model.image_encoder.num_init_features=8",
    "--config.model.image_encoder.stem_pool=True",  # the torchvision stem and pooling, whatever the config
    "--config.model.image_encoder.pool_grid=1",
    "--config.model.text_encoder.hidden_size=16",
    "--config.model.text_encoder.num_layers=1",
    "--config.model.text_encoder.intermediate_size=32",
    "--config.model.text_encoder.max_length=32",
    "--config.model.latent_dim=8",
    "--config.model.hidden_dim=16",
    "--config.train.batch_size=32",
    "--config.train.eval_batch_size=32",
    "--config.train.log_every_steps=4",
    "--config.optim.warmup_steps=2",
]
# The XLA flags of every test process (tests/conftest.py) and subprocess: the suite's programs
# are tiny, so compiling them, not running them, is most of its time, and LLVM's optimisation
# level changes how long compilation takes, not the programs (HLO) or what the tests check.
FAST_XLA = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
# One persistent XLA compilation cache for the test session's subprocesses: dozens of them
# compile the same tiny programs. (The pytest process itself keeps compiling afresh: its tests
# inspect compiled programs.)
_XLA_CACHE = tempfile.mkdtemp(prefix="vkd-jax-tests-xla-")
atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)


def subprocess_env(devices: int, **extra: str) -> dict[str, str]:
    """The environment of a subprocess on `devices` fake CPU devices (with the shared cache)."""
    return dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} {FAST_XLA}",
        JAX_COMPILATION_CACHE_DIR=_XLA_CACHE,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        # A size limit turns on the cache's file lock (filelock, a transformers dependency):
        # without it, concurrent subprocesses could read an entry still being written.
        JAX_COMPILATION_CACHE_MAX_SIZE=str(4 << 30),
        **extra,
    )


# The run every end-to-end test module shares (the `trained` fixture): 2 epochs of 8 steps.
TRAINED_ARGS = ["--config.train.num_epochs=2"]


def run_py(
    args, data_dir, workdir, *, devices: int = 2, config: str = "configs/demo_scratch.py", **kwargs
) -> subprocess.Popen:
    """`run.py --config=CONFIG` with the TINY overrides, on `devices` fake CPU devices."""
    env = subprocess_env(devices, PYTHONUNBUFFERED="1")
    cmd = [
        sys.executable,
        "run.py",
        f"--config={config}",
        f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}",
        *TINY,
        *args,
    ]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs
    )


# run.py, then (even on an error exit) a last stderr line saying whether TensorFlow was imported.
_RUN_PY_REPORTING_TF = """import runpy, sys
sys.argv = ["run.py", *sys.argv[1:]]
try:
    runpy.run_path("run.py", run_name="__main__")
finally:
    print(f"tensorflow imported: {'tensorflow' in sys.modules}", file=sys.stderr)
"""


def run_mode(
    args, *, devices: int = 2, timeout: int = 600, report_tensorflow: bool = False
) -> subprocess.CompletedProcess:
    """`run.py ARGS` (eval or predict: no config) on `devices` fake CPU devices; with
    `report_tensorflow`, stderr ends with `tensorflow imported: True|False`."""
    env = subprocess_env(devices)
    script = ["-c", _RUN_PY_REPORTING_TF] if report_tensorflow else ["run.py"]
    return subprocess.run(
        [sys.executable, *script, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def load_json(path):
    with open(path) as f:
        return json.load(f)
