"""Calibration (Brier score, reliability curve, ECE) and whether the spread over latent
samples flags errors (the conventions are the package's: `vkd_jax.metrics`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vkd_jax.metrics.discrimination import as_mask, binary_auroc, mean_or_none


def brier_score(
    labels: np.ndarray, probs: np.ndarray, mask: np.ndarray | None = None, *, class_names: Sequence[str] | None = None
) -> dict:
    """Mean squared error of `probs` against `labels` over the unmasked entries (`overall`),
    and per class when `class_names` is given (None for a class without unmasked entries)."""
    labels = np.asarray(labels, np.float64)
    mask = as_mask(mask, labels.shape)
    sq = (labels - np.asarray(probs, np.float64)) ** 2
    out = {"overall": mean_or_none(sq[mask])}
    if class_names is not None:
        out["per_class"] = {name: mean_or_none(sq[mask[:, k], k]) for k, name in enumerate(class_names)}
    return out


def reliability_curve(
    labels: np.ndarray, probs: np.ndarray, mask: np.ndarray | None = None, num_bins: int = 15
) -> dict:
    """Reliability diagram over the pooled unmasked entries, with `num_bins` equal-width bins.

    Bins are (lower, upper], the first one closed, as in `sklearn.calibration.calibration_curve`
    (strategy="uniform"). Per bin: `mean_predicted`, `observed` (fraction of positives), both
    None for an empty bin, and `count`.
    """
    labels = np.asarray(labels)
    mask = as_mask(mask, labels.shape)
    y, p = labels[mask].astype(np.float64), np.asarray(probs, np.float64)[mask]
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    ids = np.searchsorted(edges[1:-1], p)
    count = np.bincount(ids, minlength=num_bins)
    sum_p = np.bincount(ids, weights=p, minlength=num_bins)
    sum_y = np.bincount(ids, weights=y, minlength=num_bins)
    return {
        "bin_lower": edges[:-1].tolist(),
        "bin_upper": edges[1:].tolist(),
        "mean_predicted": [float(s / c) if c else None for s, c in zip(sum_p, count)],
        "observed": [float(s / c) if c else None for s, c in zip(sum_y, count)],
        "count": count.tolist(),
    }


def expected_calibration_error(
    labels: np.ndarray, probs: np.ndarray, mask: np.ndarray | None = None, num_bins: int = 15
) -> float | None:
    """Sum over the bins of `reliability_curve` of count / N * |observed - mean_predicted|."""
    curve = reliability_curve(labels, probs, mask, num_bins)
    total = sum(curve["count"])
    if total == 0:
        return None
    return float(
        sum(c / total * abs(o - m) for c, o, m in zip(curve["count"], curve["observed"], curve["mean_predicted"]) if c)
    )


def _accuracy_after_referral(correct: np.ndarray, uncertainty: np.ndarray, fraction: float) -> float | None:
    """Mean of `correct` once the floor(fraction * n) most uncertain items are referred; ties
    are referred in input order (stable sort)."""
    num_referred = int(np.floor(fraction * len(correct) + 1e-9))
    kept = np.argsort(-uncertainty, kind="stable")[num_referred:]
    return mean_or_none(correct[kept])


def uncertainty_summary(
    labels: np.ndarray,
    probs: np.ndarray,
    spreads: np.ndarray,
    thresholds: np.ndarray,
    mask: np.ndarray | None = None,
    refer_fraction: float = 0.1,
) -> dict:
    """Does the per-entry `spreads` (std of the probability over latent samples) flag errors?

    An unmasked entry is wrong when `(probs >= thresholds[k]) != label`. Reports the AUROC of
    the spread for detecting errors against two baselines that use the probability alone:
    the margin `-|probs - threshold|`, and the error probability the model itself states
    (`probs` for a predicted negative, `1 - probs` for a predicted positive), and the
    accuracy before / after referring the `refer_fraction` most uncertain entries, or images
    (image uncertainty: mean over its unmasked entries; image accuracy: fraction of its unmasked
    entries that are right; images without unmasked entries are left out). Referral sends the
    floor(refer_fraction * n) most uncertain items, ties in row-major input order (stable sort).
    """
    if not 0.0 <= refer_fraction <= 1.0:
        raise ValueError(f"refer_fraction must be in [0, 1], got {refer_fraction}.")
    labels = np.asarray(labels).astype(bool)
    probs = np.asarray(probs, np.float64)
    spreads = np.asarray(spreads, np.float64)
    mask = as_mask(mask, labels.shape)
    thresholds = np.asarray(thresholds, np.float64)
    right = (probs >= thresholds) == labels
    margin = -np.abs(probs - thresholds)
    stated = np.where(probs >= thresholds, 1.0 - probs, probs)
    correct, spread, closeness, risk = right[mask], spreads[mask], margin[mask], stated[mask]
    n = mask.sum(1)
    img = n > 0

    def image_mean(x: np.ndarray) -> np.ndarray:
        return np.where(mask, x, 0.0)[img].sum(1) / n[img]

    img_correct, img_spread, img_margin = (
        image_mean(right),
        image_mean(spreads),
        image_mean(margin),
    )
    img_risk = image_mean(stated)
    accuracy = mean_or_none(correct)
    return {
        "error_rate": None if accuracy is None else 1.0 - accuracy,
        "spread_error_auroc": binary_auroc(~correct, spread),
        "margin_error_auroc": binary_auroc(~correct, closeness),
        "probability_error_auroc": binary_auroc(~correct, risk),
        "accuracy": accuracy,
        "accuracy_after_referral": _accuracy_after_referral(correct, spread, refer_fraction),
        "accuracy_after_referral_margin": _accuracy_after_referral(correct, closeness, refer_fraction),
        "accuracy_after_referral_probability": _accuracy_after_referral(correct, risk, refer_fraction),
        "image_accuracy": mean_or_none(img_correct),
        "image_accuracy_after_referral": _accuracy_after_referral(img_correct, img_spread, refer_fraction),
        "image_accuracy_after_referral_margin": _accuracy_after_referral(img_correct, img_margin, refer_fraction),
        "image_accuracy_after_referral_probability": _accuracy_after_referral(img_correct, img_risk, refer_fraction),
        "refer_fraction": refer_fraction,
        "num_entries": int(mask.sum()),
        "num_images": int(img.sum()),
    }
