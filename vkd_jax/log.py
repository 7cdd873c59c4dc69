"""Logging set-up shared by the entry points (run.py, benchmarks)."""

from __future__ import annotations

import logging as std_logging
import os

from absl import logging

_NOISY = (f"{os.sep}orbax{os.sep}", f"{os.sep}tensorflow_datasets{os.sep}", f"{os.sep}jax{os.sep}")


class _LibraryInfoFilter(std_logging.Filter):
    """Keeps the libraries' warnings but drops their INFO lines (orbax logs ~30 per save)."""

    def filter(self, record):
        if "Using custom data configuration" in str(record.msg):  # tfds, once per split read
            return False
        return record.levelno >= std_logging.WARNING or not any(s in record.pathname for s in _NOISY)


def quiet_library_logs() -> None:
    """Call after absl has parsed flags (inside `main`)."""
    logging.get_absl_handler().addFilter(_LibraryInfoFilter())
