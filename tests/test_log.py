"""The training log's ETA (its timing is the training loop's; this is the arithmetic and the text)."""

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
