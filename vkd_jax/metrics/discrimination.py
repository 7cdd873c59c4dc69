"""AUROC, ROC and precision-recall, thresholds, label ranking and the bootstrap intervals of
AUROC (the conventions are the package's: `vkd_jax.metrics`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


def auroc_summary(
    labels: np.ndarray, scores: np.ndarray, class_names: Sequence[str], mask: np.ndarray | None = None
) -> dict:
    """Per-class, macro and micro AUROC of `scores` `[N, K]` against binary `labels` `[N, K]`.

    Entries where `mask` is 0 (labels ignored by the uncertainty policy) are left out.
    Returns `per_class_auc` (name -> AUROC or None), `macro_auc` (mean over defined classes,
    None if none is), `micro_auc` (all unmasked entries pooled) and `undefined_classes`.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores)
    mask = np.ones(labels.shape, bool) if mask is None else np.asarray(mask).astype(bool)
    per_class = {name: binary_auroc(labels[mask[:, k], k], scores[mask[:, k], k]) for k, name in enumerate(class_names)}
    defined = [v for v in per_class.values() if v is not None]
    return {
        "macro_auc": float(np.mean(defined)) if defined else None,
        "micro_auc": binary_auroc(labels[mask], scores[mask]),
        "per_class_auc": per_class,
        "undefined_classes": [k for k, v in per_class.items() if v is None],
    }


def as_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    return np.ones(shape, bool) if mask is None else np.asarray(mask).astype(bool)


def mean_or_none(x: Sequence[float] | np.ndarray) -> float | None:
    return float(np.mean(x)) if len(x) else None


def _div(a: float, b: float) -> float:
    """a / b, or 0 when b is 0 (scikit-learn's `zero_division=0`)."""
    return float(a / b) if b else 0.0


def _counts_at_thresholds(labels: np.ndarray, scores: np.ndarray):
    """True / false positive counts of `scores >= t` for each distinct score `t`, descending."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, np.float64)
    order = np.argsort(scores, kind="stable")[::-1]
    sorted_scores = scores[order]
    last = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1]  # end of each run
    tps = np.cumsum(labels[order], dtype=np.int64)[last]
    return tps, last + 1 - tps, sorted_scores[last]


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)` for one class.

    The first point is (0, 0) at threshold +inf; a rate without positives / negatives is NaN.
    """
    tps, fps, thresholds = _counts_at_thresholds(labels, scores)
    tps, fps = np.r_[0, tps].astype(np.float64), np.r_[0, fps].astype(np.float64)
    fpr = fps / fps[-1] if fps[-1] > 0 else np.full(len(fps), np.nan)
    tpr = tps / tps[-1] if tps[-1] > 0 else np.full(len(tps), np.nan)
    return fpr, tpr, np.r_[np.inf, thresholds]


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """`sklearn.metrics.average_precision_score`: sum of precision x recall increments over the
    distinct score thresholds (tied scores form one step); None without positives."""
    tps, fps, _ = _counts_at_thresholds(labels, scores)
    if len(tps) == 0 or tps[-1] == 0:
        return None
    recall = tps / tps[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * tps / (tps + fps)))


def threshold_metrics(
    labels: np.ndarray,
    probs: np.ndarray,
    thresholds: np.ndarray,
    class_names: Sequence[str],
    mask: np.ndarray | None = None,
) -> dict:
    """Accuracy, precision, recall, F1 and support of `probs >= thresholds[k]` per class.

    Each class is evaluated on its own unmasked rows; `micro` pools all unmasked entries and
    `macro` is the mean of the per-class values. An undefined precision / recall / F1 counts as
    0 (scikit-learn's `zero_division=0`, also in the macro mean); a class without unmasked
    entries has accuracy None, left out of the macro accuracy.
    """
    labels = np.asarray(labels).astype(bool)
    mask = as_mask(mask, labels.shape)
    thresholds = np.asarray(thresholds, np.float64)
    pred = np.asarray(probs) >= thresholds
    tp, fp, fn = ((pred & labels & mask).sum(0), (pred & ~labels & mask).sum(0), (~pred & labels & mask).sum(0))
    n = mask.sum(0)
    tn = n - tp - fp - fn

    def rates(tp: int, fp: int, fn: int, tn: int, n: int) -> dict:
        return {
            "accuracy": float((tp + tn) / n) if n else None,
            "precision": _div(tp, tp + fp),
            "recall": _div(tp, tp + fn),
            "f1": _div(2 * tp, 2 * tp + fp + fn),
        }

    per_class = {
        name: {**rates(tp[k], fp[k], fn[k], tn[k], n[k]), "support": int(tp[k] + fn[k])}
        for k, name in enumerate(class_names)
    }
    macro = {
        key: mean_or_none([c[key] for c in per_class.values() if c[key] is not None])
        for key in ("accuracy", "precision", "recall", "f1")
    }
    return {
        "thresholds": {name: float(t) for name, t in zip(class_names, thresholds)},
        "per_class": per_class,
        "macro": macro,
        "micro": rates(tp.sum(), fp.sum(), fn.sum(), tn.sum(), n.sum()),
    }


def choose_thresholds(
    labels: np.ndarray, probs: np.ndarray, mask: np.ndarray | None = None, method: str = "youden"
) -> np.ndarray:
    """Per-class decision thresholds `[K]` (predict `probs >= t`), chosen on validation data.

    Candidates are the distinct unmasked scores of the class. "youden" maximises TPR - FPR,
    "f1" maximises F1; among tied maxima the largest threshold wins. A class whose unmasked
    labels take a single value gets 0.5.
    """
    if method not in ("youden", "f1"):
        raise ValueError(f"Unknown threshold method {method!r}; expected 'youden' or 'f1'.")
    labels = np.asarray(labels).astype(bool)
    probs = np.asarray(probs, np.float64)
    mask = as_mask(mask, labels.shape)
    out = np.full(labels.shape[1], 0.5)
    for k in range(labels.shape[1]):
        y, p = labels[mask[:, k], k], probs[mask[:, k], k]
        n_pos, n_neg = int(y.sum()), int((~y).sum())
        if n_pos == 0 or n_neg == 0:
            continue
        tps, fps, thresholds = _counts_at_thresholds(y, p)
        if method == "youden":  # (TPR - FPR) * n_pos * n_neg, exact in integers
            objective = tps * n_neg - fps * n_pos
        else:
            objective = 2 * tps / (tps + fps + n_pos)
        out[k] = thresholds[np.argmax(objective)]  # thresholds descend: first max = largest
    return out


def _ranking_inputs(labels: np.ndarray, scores: np.ndarray, mask: np.ndarray | None):
    """Masked entries become irrelevant labels with score -inf: ranked below every other."""
    labels = np.asarray(labels).astype(bool)
    mask = as_mask(mask, labels.shape)
    return labels & mask, np.where(mask, np.asarray(scores, np.float64), -np.inf)


def coverage_error(labels: np.ndarray, scores: np.ndarray, mask: np.ndarray | None = None) -> float:
    """`sklearn.metrics.coverage_error`: mean number of top-ranked labels (ties counted at their
    worst rank) needed to cover all positives of a row; 0 for a row without positives.
    Masked entries are removed from the ranking."""
    labels, scores = _ranking_inputs(labels, scores, mask)
    min_relevant = np.where(labels, scores, np.inf).min(1, keepdims=True)
    return float(np.mean(np.where(labels.any(1), (scores >= min_relevant).sum(1), 0)))


def label_ranking_average_precision(labels: np.ndarray, scores: np.ndarray, mask: np.ndarray | None = None) -> float:
    """`sklearn.metrics.label_ranking_average_precision_score`: for each positive label, the
    fraction of positives among the labels scored at least as high, averaged per row, then
    over rows; a row without positives scores 1. Masked entries are removed from the ranking."""
    labels, scores = _ranking_inputs(labels, scores, mask)
    at_least = scores[:, None, :] >= scores[:, :, None]  # [n, j, l]: score l >= score j
    rank = at_least.sum(-1)
    rank_among_pos = (at_least & labels[:, None, :]).sum(-1)
    n_pos = labels.sum(1)
    per_row = np.where(labels, rank_among_pos / rank, 0.0).sum(1) / np.maximum(n_pos, 1)
    return float(np.mean(np.where(n_pos > 0, per_row, 1.0)))


def _weighted_aurocs(labels: np.ndarray, scores: np.ndarray, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of entries (`labels`, `scores`) under each replicate's row weights `[R, N]`
    (entry i has weight `weights[:, rows[i]]`); NaN where a replicate lacks either label."""
    if len(labels) == 0:
        return np.full(len(weights), np.nan)
    order = np.argsort(scores, kind="stable")
    y, s = labels[order], scores[order]
    w = weights[:, rows[order]]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # runs of tied scores
    pos = np.add.reduceat(w * y, starts, axis=1)
    neg = np.add.reduceat(w * ~y, starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (neg_below + 0.5 * neg)).sum(1) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def bootstrap_auroc(
    labels: np.ndarray,
    scores: np.ndarray,
    class_names: Sequence[str],
    mask: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    num_samples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Percentile bootstrap intervals `[lo, hi]` of per-class, macro and micro AUROC.

    The resampling unit is the group (`groups` `[N]`, e.g. study ids: all rows of a drawn group
    come together) or the row. Replicate r draws `rng.integers(0, num_units, num_units)` from
    `np.random.default_rng(seed)`, in order, and evaluates `auroc_summary` on the drawn rows
    (macro = mean over the classes defined in that replicate). A replicate where a statistic is
    undefined is skipped for it; `per_class_replicates` counts the replicates used per class.
    An interval is None when no replicate defines it. `progress`, if given, is called with the
    number of replicates each chunk of them finished.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, np.float64)
    mask = as_mask(mask, labels.shape)
    if groups is None:
        unit = np.arange(len(labels))
    else:
        unit = np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
    num_units = int(unit.max()) + 1 if len(unit) else 0
    rows, cols = np.nonzero(mask)  # the pooled (micro) entries
    rng = np.random.default_rng(seed)
    per_class = np.full((num_samples, len(class_names)), np.nan)
    micro = np.full(num_samples, np.nan)
    chunk = max(1, 2**22 // max(len(rows), 1))  # bounds the [chunk, entries] weight matrix
    for start in range(0, num_samples, chunk):
        stop = min(start + chunk, num_samples)
        counts = np.stack(
            [np.bincount(rng.integers(0, num_units, num_units), minlength=num_units) for _ in range(start, stop)]
        )
        weights = counts[:, unit].astype(np.float64)  # each row weighs its unit's draw count
        for k in range(len(class_names)):
            r = np.flatnonzero(mask[:, k])
            per_class[start:stop, k] = _weighted_aurocs(labels[r, k], scores[r, k], r, weights)
        micro[start:stop] = _weighted_aurocs(labels[rows, cols], scores[rows, cols], rows, weights)
        if progress is not None:
            progress(stop - start)
    defined = ~np.isnan(per_class)
    with np.errstate(invalid="ignore"):
        macro = np.where(defined, per_class, 0.0).sum(1) / defined.sum(1)

    def interval(values: np.ndarray) -> list[float] | None:
        values = values[~np.isnan(values)]
        if len(values) == 0:
            return None
        tail = 50.0 * (1.0 - confidence)
        return [float(v) for v in np.percentile(values, [tail, 100.0 - tail])]

    return {
        "per_class": {name: interval(per_class[:, k]) for k, name in enumerate(class_names)},
        "per_class_replicates": {name: int(defined[:, k].sum()) for k, name in enumerate(class_names)},
        "macro": interval(macro),
        "micro": interval(micro),
        "num_samples": num_samples,
        "confidence": confidence,
        "seed": seed,
        "unit": "example" if groups is None else "group",
    }
