"""Variational Knowledge Distillation for chest X-ray classification in JAX/Flax."""

# The release, read by pyproject.toml (`[tool.setuptools.dynamic]`) and `vkd-jax --version`.
__version__ = "0.1.0"
