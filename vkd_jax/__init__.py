"""Variational Knowledge Distillation for chest X-ray classification in JAX/Flax."""

# The release, read by pyproject.toml (`[tool.setuptools.dynamic]`) and `vkd-jax --version`.
__version__ = "0.1.0"


def __getattr__(name: str):
    """`vkd_jax.Predictor` and `vkd_jax.Prediction`, imported on first use (so `import vkd_jax`
    stays light: no JAX until a model is wanted)."""
    if name in ("Predictor", "Prediction"):
        from vkd_jax.serving import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
