"""Logging set-up shared by the entry points (run.py, benchmarks), the training log's ETA and the
progress lines of the long phases."""

from __future__ import annotations

import logging as std_logging
import os

from absl import logging

from data_pipelines import progress as progress_lib

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


def progress(what: str, total: int, unit: str = "", every_s: float = progress_lib.EVERY_S) -> progress_lib.Progress:
    """A `data_pipelines.progress.Progress` whose lines go to absl's INFO log: what a command
    prints while it works through a long phase (the text-feature cache, evaluation, the
    bootstrap)."""
    return progress_lib.Progress(what, total, unit, every_s=every_s, emit=logging.info)


# The training log's ETA (`eta=1h05m`), the same arithmetic and text as every progress line's.
eta = progress_lib.eta
