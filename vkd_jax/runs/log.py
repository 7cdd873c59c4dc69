"""Logging set-up shared by the entry points (run.py, benchmarks), and the training log's ETA."""

from __future__ import annotations

import logging as std_logging
import math
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


def eta(steps_left: int, steps_per_s: float) -> str:
    """The time `steps_left` training steps take at `steps_per_s`, as the training log shows it
    (`eta=1h05m`): seconds under a minute, minutes and seconds under an hour, then hours and
    minutes, days and hours; `?` without a rate."""
    if not (steps_per_s > 0 and math.isfinite(steps_per_s)):
        return "?"
    s = round(max(steps_left, 0) / steps_per_s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    m = round(s / 60)
    if m < 24 * 60:
        return f"{m // 60}h{m % 60:02d}m"
    h = round(s / 3600)
    return f"{h // 24}d{h % 24:02d}h"
