"""A trained model for users: `Predictor` (Python), the predict command (CSV of own images), and
the export (a `jax.export` artifact with its own loader). No TensorFlow."""
