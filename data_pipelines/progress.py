"""Progress of a long loop as periodic plain lines (`what: 120/5481 reports, 35/s, eta 2m32s`).

Plain lines, never cursor codes, so a log file or a CI log reads as a terminal does. The one
progress mechanism of the project: the dataset builds print its lines to stderr, and
`vkd_jax.runs.log.progress` sends them to absl's log (data_pipelines imports no vkd_jax).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator

EVERY_S = 10.0  # seconds between two lines of one loop


def eta(units_left: float, units_per_s: float) -> str:
    """The time `units_left` take at `units_per_s` (`1h05m`): seconds under a minute,
    minutes and seconds under an hour, then hours and minutes, days and hours; `?` without
    a rate."""
    if not (units_per_s > 0 and math.isfinite(units_per_s)):
        return "?"
    s = round(max(units_left, 0) / units_per_s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    m = round(s / 60)
    if m < 24 * 60:
        return f"{m // 60}h{m % 60:02d}m"
    h = round(s / 3600)
    return f"{h // 24}d{h % 24:02d}h"


def to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Progress:
    """Counts `total` units of `what` and emits a line at most every `every_s` seconds, and
    one when the count reaches `total`: `what: done/total unit, rate/s, eta ...` (the last:
    `what: total unit in 12.3s`). `note()` adds a suffix to the lines (e.g. `3 unreadable`).

        progress = Progress("encoding", len(reports), "reports")
        for chunk in chunks:
            ...
            progress.update(len(chunk))
    """

    def __init__(
        self,
        what: str,
        total: int,
        unit: str = "",
        *,
        every_s: float = EVERY_S,
        emit: Callable[[str], None] = to_stderr,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.what, self.total, self.unit = what, int(total), f" {unit}" if unit else ""
        self.every_s, self.emit, self.clock = every_s, emit, clock
        self.done = 0
        self.start = self.last = clock()
        self._note = ""

    def note(self, text: str) -> None:
        self._note = text

    def update(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if self.done >= self.total:
            if self.done - n < self.total:  # once, on reaching the total
                self.emit(f"{self.what}: {self.done}{self.unit} in {now - self.start:.1f}s{self._suffix()}")
        elif now - self.last >= self.every_s:
            rate = self.done / max(now - self.start, 1e-9)
            self.emit(
                f"{self.what}: {self.done}/{self.total}{self.unit}, {rate:.3g}/s, "
                f"eta {eta(self.total - self.done, rate)}{self._suffix()}"
            )
        else:
            return
        self.last = now

    def _suffix(self) -> str:
        return f" ({self._note})" if self._note else ""


def track(items: Iterable, progress: Progress) -> Iterator:
    """`items`, counting each into `progress` once the consumer is done with it (asks for
    the next)."""
    for item in items:
        yield item
        progress.update()
