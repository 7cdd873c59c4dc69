"""The training log's ETA (its timing is the training loop's; this is the arithmetic and the text), and
the progress lines of the long phases."""

import pytest

from vkd_jax.runs import log


@pytest.mark.parametrize(
    "steps_left, steps_per_s, text",
    [
        (0, 5.0, "0s"),
        (100, 4.0, "25s"),
        (750, 1.0, "12m30s"),
        (3599, 1.0, "59m59s"),
        (3600, 1.0, "1h00m"),
        (3900, 1.0, "1h05m"),
        (100_000, 1.0, "1d04h"),
        (10, 0.0, "?"),
        (10, float("inf"), "?"),
        (10, float("nan"), "?"),
        (-3, 1.0, "0s"),
    ],
)
def test_eta(steps_left, steps_per_s, text):
    assert log.eta(steps_left, steps_per_s) == text


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_lines_are_periodic_plain_and_end_once():
    lines, clock = [], _Clock()
    progress = log.progress_lib.Progress("encoding", 100, "reports", every_s=10, emit=lines.append, clock=clock)
    for _ in range(4):  # 25 units every 5 s: a line each 10 s, and one at the total
        clock.now += 5
        progress.update(25)
    progress.update(0)  # past the total: nothing more
    assert lines == ["encoding: 50/100 reports, 5/s, eta 10s", "encoding: 100 reports in 20.0s"]
    assert not any("\x1b" in line or "\r" in line for line in lines)


def test_progress_goes_to_the_absl_log(caplog):
    caplog.set_level("INFO")
    progress = log.progress("bootstrap", 2, "resamples", every_s=0)
    progress.update()
    progress.update()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and messages[0].startswith("bootstrap: 1/2 resamples, ")
    assert messages[1].startswith("bootstrap: 2 resamples in ")
