"""Worked examples of using vkd-jax: run each as `python -m examples.<name>` from the repository root."""
