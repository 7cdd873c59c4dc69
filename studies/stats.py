"""The statistics of a study's tables: paired differences over training seeds."""

from __future__ import annotations

import operator
from collections.abc import Callable

import numpy as np
from scipy import stats


def paired_interval(a, b, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the paired differences a - b: a t-interval over the pairs."""
    d = np.subtract(a, b, dtype=float)
    if len(d) < 2:
        return float(d.mean()), float("nan"), float("nan")
    half = stats.t.ppf(0.5 + confidence / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def paired(
    a: list[dict], b: list[dict], key: str | Callable[[dict], float] = "macro_auc"
) -> tuple[list[float], list[float]]:
    """`key` (a field, or a function of a run) of the runs of `a` and of `b` with the same
    training seed (runs without a "seed" are paired by position), in seed order: the pairs a
    paired difference is taken over."""
    value = key if callable(key) else operator.itemgetter(key)

    def by_seed(runs):
        return {r.get("seed", i): value(r) for i, r in enumerate(runs)}

    x, y = by_seed(a), by_seed(b)
    seeds = sorted(set(x) & set(y))
    return [x[s] for s in seeds], [y[s] for s in seeds]


def mean_sd(values) -> str:
    """`mean ± sd` over seeds (sample sd; 0 for one value), four decimals."""
    v = np.asarray(values, float)
    return f"{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.4f}"
