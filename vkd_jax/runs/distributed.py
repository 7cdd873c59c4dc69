"""Multi-process start-up: `jax.distributed.initialize`, before any JAX computation.

Called when the run is one of several processes: with explicit flags
(`--coordinator_address=HOST:PORT --num_processes=N --process_id=I`), or, without them, when
the environment is a TPU VM, a SLURM job step with several tasks or an Open MPI job with
several ranks; there JAX reads the layout from the environment itself. A single process on
one machine needs none of this.
"""

from __future__ import annotations

import glob
import importlib.util
import os

import jax
from absl import logging


def detect_cluster() -> str | None:
    """The multi-process environment this process runs in, if any (by its variables)."""
    env = os.environ
    if "SLURM_JOB_ID" in env and int(env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS", "1"))) > 1:
        return "SLURM"
    if int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
        return "Open MPI"
    tpu_chips = glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*")
    if (
        env.get("TPU_WORKER_HOSTNAMES")
        or env.get("TPU_PROCESS_ADDRESSES")
        or (tpu_chips and importlib.util.find_spec("libtpu") is not None)
    ):
        return "TPU VM"  # JAX reads the pod's layout from the TPU metadata (one host: one process)
    return None


def initialize(
    coordinator_address: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> bool:
    """Joins the job's processes (see the module docstring); returns whether it did.

    On CPU, cross-process collectives go through gloo. Processes other than 0 log warnings
    and errors only: the logs, summaries and results come from process 0.
    """
    explicit = (coordinator_address, num_processes, process_id)
    if any(x is not None for x in explicit):
        missing = [
            f"--{n}" for n, x in zip(("coordinator_address", "num_processes", "process_id"), explicit) if x is None
        ]
        if missing:
            raise ValueError(
                f"multi-process runs need all of --coordinator_address, --num_processes and "
                f"--process_id; missing {', '.join(missing)}"
            )
        if not 0 <= process_id < num_processes:
            raise ValueError(f"--process_id={process_id} must be in [0, --num_processes={num_processes})")
        source = f"flags, coordinator {coordinator_address}"
    else:
        source = detect_cluster()
        if source is None:
            return False
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
    if jax.process_index() != 0:
        logging.set_verbosity(logging.WARNING)
    logging.info(
        "process %d of %d (%s); %d local and %d global devices",
        jax.process_index(),
        jax.process_count(),
        source,
        jax.local_device_count(),
        jax.device_count(),
    )
    return True
