"""Test session set-up: 8 fake CPU devices, so multi-device code is tested without hardware.

This must run before JAX initialises its backends, hence here and not in a test module.
"""

import jax

jax.config.update("jax_num_cpu_devices", 8)
