"""What a run's numbers depend on besides its config: the library versions, the CPU and the
JAX devices. `describe()` goes into results.json (`environment`) and from there into every
record of the study (`studies.prereg.summary`); it is never part of a record's fingerprint.

No host or user names: a record is meant to be committed.
"""

from __future__ import annotations

import hashlib
import os
import platform
from importlib import metadata

# The distributions whose versions are recorded; where one is published under several names
# (TensorFlow's CPU build on x86_64), the first installed of them.
PACKAGES = {
    "jax": ("jax",),
    "jaxlib": ("jaxlib",),
    "flax": ("flax",),
    "optax": ("optax",),
    "orbax-checkpoint": ("orbax-checkpoint",),
    "chex": ("chex",),
    "numpy": ("numpy",),
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "tensorflow-datasets": ("tensorflow-datasets",),
    "transformers": ("transformers",),
    "ml-collections": ("ml-collections",),
}
# The lockfile of the test and benchmark environment, in a checkout (README, "Install").
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOCKFILE = os.path.join(_CHECKOUT, "requirements", "lock.txt")
# The x86 instruction-set extensions XLA's CPU code generation may use (`--xla_cpu_max_isa` caps them).
_ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


def _version(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _cpuinfo() -> tuple[str | None, list[str]]:
    """The first processor's model name and its instruction-set extensions of `_ISA_FLAGS`
    (Linux's /proc/cpuinfo; (None, []) elsewhere)."""
    model, flags = None, []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model is None:
                    model = value.strip()
                elif key == "flags" and not flags:
                    have = set(value.split())
                    flags = [flag for flag in _ISA_FLAGS if flag in have]
                if model is not None and flags:
                    break
    except OSError:
        pass
    return model, flags


def _usable_cpus() -> int | None:
    """The CPUs this process may run on (one instead of two changes a run's numbers:
    docs/study.md, "Reproducibility")."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count()


def _lockfile_sha256() -> str | None:
    try:
        with open(LOCKFILE, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()[:16]
    except OSError:
        return None


def describe() -> dict:
    """The environment of this process, as JSON: Python, the versions of `PACKAGES` (None where
    not installed), the checkout's lockfile hash (None outside a checkout), the OS, the CPU
    (model, logical count, the count usable here, instruction-set extensions), `XLA_FLAGS` and the JAX devices."""
    import jax

    model, isa = _cpuinfo()
    devices = jax.devices()
    return {
        "python": platform.python_version(),
        "packages": {key: _version(names) for key, names in PACKAGES.items()},
        "lockfile_sha256": _lockfile_sha256(),
        "platform": platform.platform(),
        "cpu": {
            "model": model or platform.processor() or None,
            "count": os.cpu_count(),
            "usable": _usable_cpus(),
            "isa": isa,
        },
        "xla_flags": os.environ.get("XLA_FLAGS"),
        "devices": {
            "backend": jax.default_backend(),
            "kinds": sorted({d.device_kind for d in devices}),
            "count": len(devices),
        },
    }
