"""Multi-label inputs shared by the metrics tests (test_discrimination.py, test_calibration.py,
test_metrics.py)."""

import numpy as np


def multilabel_case(seed: int, n: int = 90, k: int = 5, ties: bool = True):
    """Labels `[n, k]` (last two classes: no positives / all positives), scores and a mask."""
    r = np.random.default_rng(seed)
    y = (r.random((n, k)) < 0.3).astype(np.int64)
    y[:, -2], y[:, -1] = 0, 1
    p = np.clip(r.random((n, k)) * 0.8 + 0.2 * y, 0.0, 1.0)
    if ties:
        p = np.round(p * 8) / 8
    mask = r.random((n, k)) < 0.75
    return y, p, mask
