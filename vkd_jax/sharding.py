"""The device layer: one `('data',)` mesh, batches sharded over it, results brought back.

Parameters, optimiser state and RNG are replicated (`P()`); a batch is sharded over `'data'`
(`P('data')`). Training, evaluation, the Predictor and the export all place data through here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "data"
# Keys of a batch that go to the device; anything else (ids) stays on the host.
DEVICE_KEYS = (
    "image",
    "input_ids",
    "attention_mask",
    "labels",
    "label_mask",
    "mask",
    "text_features",
    "report_details",
    "report_details_mask",
)


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A one-axis `('data',)` mesh over the first `num_devices` devices (all by default)."""
    devices = jax.devices()
    n = num_devices or len(devices)
    if n > len(devices):
        raise ValueError(f"asked for {n} devices, only {len(devices)} are visible")
    return Mesh(np.asarray(devices[:n]), (AXIS,))


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Places this process's part of the global batch on the mesh, sharded over `'data'`."""
    sharding = NamedSharding(mesh, P(AXIS))
    return {k: jax.make_array_from_process_local_data(sharding, batch[k]) for k in DEVICE_KEYS if k in batch}


def example_ids(local_batch: int) -> jax.Array:
    """Global indices of this device's examples within the global batch (inside `shard_map`)."""
    return lax.axis_index(AXIS) * local_batch + jnp.arange(local_batch)


def to_host(x: jax.Array) -> np.ndarray:
    """The whole (global) array on every process's host."""
    if jax.process_count() == 1:
        return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
