"""Classification metrics on the host (numpy), tested against scikit-learn.

A class whose evaluated labels take a single value has no defined AUROC: it is reported as
`None` and left out of the macro average (the reference code counted it as 0).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of `x`, ties sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # Boundaries of runs of equal values.
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    avg = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def binary_auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U / (n_pos * n_neg)); None if undefined."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, np.float64)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(scores)
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def auroc_summary(labels: np.ndarray, scores: np.ndarray, class_names: Sequence[str],
                  mask: np.ndarray | None = None) -> dict:
    """Per-class, macro and micro AUROC of `scores` `[N, K]` against binary `labels` `[N, K]`.

    Entries where `mask` is 0 (labels ignored by the uncertainty policy) are left out.
    Returns `per_class_auc` (name -> AUROC or None), `macro_auc` (mean over defined classes,
    None if none is), `micro_auc` (all unmasked entries pooled) and `undefined_classes`.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores)
    mask = np.ones(labels.shape, bool) if mask is None else np.asarray(mask).astype(bool)
    per_class = {
        name: binary_auroc(labels[mask[:, k], k], scores[mask[:, k], k])
        for k, name in enumerate(class_names)
    }
    defined = [v for v in per_class.values() if v is not None]
    return {
        "macro_auc": float(np.mean(defined)) if defined else None,
        "micro_auc": binary_auroc(labels[mask], scores[mask]),
        "per_class_auc": per_class,
        "undefined_classes": [k for k, v in per_class.items() if v is None],
    }
