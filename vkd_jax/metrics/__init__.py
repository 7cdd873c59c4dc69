"""Classification metrics on the host (numpy), tested against scikit-learn.

`labels` `[N, K]` are binary, `scores` / `probs` `[N, K]` floats, and an optional `mask` `[N, K]`
marks the evaluated entries: entries where it is 0 (labels ignored by the uncertainty policy)
are left out of every metric. Results are plain Python floats / ints / lists / dicts, and an
undefined value is None, never NaN. A class whose evaluated labels take a single value has no
defined AUROC or average precision: it is reported as `None` and left out of the macro average
(the reference code counted it as 0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from vkd_jax.metrics.calibration import (
    brier_score,
    expected_calibration_error,
    reliability_curve,
    uncertainty_summary,
)
from vkd_jax.metrics.discrimination import (
    as_mask,
    auroc_summary,
    average_precision,
    binary_auroc,
    bootstrap_auroc,
    choose_thresholds,
    coverage_error,
    label_ranking_average_precision,
    mean_or_none,
    roc_curve,
    threshold_metrics,
)

__all__ = [
    "as_mask",
    "auroc_summary",
    "average_precision",
    "binary_auroc",
    "bootstrap_auroc",
    "brier_score",
    "choose_thresholds",
    "classification_report",
    "coverage_error",
    "expected_calibration_error",
    "label_ranking_average_precision",
    "mean_or_none",
    "reliability_curve",
    "roc_curve",
    "threshold_metrics",
    "uncertainty_summary",
]


def classification_report(
    labels: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    *,
    mask: np.ndarray | None = None,
    spreads: np.ndarray | None = None,
    thresholds: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    num_bootstrap: int = 1000,
    seed: int = 0,
    num_bins: int = 15,
    refer_fraction: float = 0.1,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Every metric of this module in one JSON-serialisable dict (undefined values are None).

    `thresholds` `[K]` are validation-chosen (see `choose_thresholds`): they add the "chosen"
    thresholded metrics and are used by the uncertainty summary (0.5 otherwise), which is only
    computed when `spreads` is given (referring `refer_fraction`). `num_bootstrap=0` skips the
    AUROC intervals (None); `progress` is the bootstrap's (`bootstrap_auroc`).
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs, np.float64)
    mask = as_mask(mask, labels.shape)
    ap = {name: average_precision(labels[mask[:, k], k], probs[mask[:, k], k]) for k, name in enumerate(class_names)}
    brier = brier_score(labels, probs, mask, class_names=class_names)
    half = np.full(len(class_names), 0.5)
    thresholded = {"0.5": threshold_metrics(labels, probs, half, class_names, mask)}
    if thresholds is not None:
        thresholded["chosen"] = threshold_metrics(labels, probs, thresholds, class_names, mask)
    auc_ci = (
        bootstrap_auroc(labels, probs, class_names, mask, groups, num_bootstrap, seed, progress=progress)
        if num_bootstrap > 0
        else None
    )
    report = {
        **auroc_summary(labels, probs, class_names, mask),
        "auc_ci": auc_ci,
        "average_precision": {
            "per_class": ap,
            "macro": mean_or_none([v for v in ap.values() if v is not None]),
            "micro": average_precision(labels[mask], probs[mask]),
        },
        "thresholded": thresholded,
        "ranking": {
            "coverage_error": coverage_error(labels, probs, mask),
            "label_ranking_average_precision": label_ranking_average_precision(labels, probs, mask),
        },
        "calibration": {
            "ece": expected_calibration_error(labels, probs, mask, num_bins),
            "brier": brier["overall"],
            "per_class_brier": brier["per_class"],
            "num_bins": num_bins,
            "reliability": reliability_curve(labels, probs, mask, num_bins),
        },
        "num_examples": len(labels),
    }
    if spreads is not None:
        report["uncertainty"] = uncertainty_summary(
            labels, probs, spreads, half if thresholds is None else thresholds, mask, refer_fraction
        )
    return report
