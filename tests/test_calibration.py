"""vkd_jax.metrics' calibration metrics against scikit-learn and reference loops: Brier score,
reliability curve, ECE, and the uncertainty summary (whether the spread over latent samples
flags errors)."""

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score

from tests.metric_cases import multilabel_case
from vkd_jax import metrics

# --- calibration ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_brier_score_matches_sklearn(seed):
    y, p, mask = multilabel_case(seed, ties=False)
    names = [f"c{k}" for k in range(y.shape[1])]
    out = metrics.brier_score(y, p, class_names=names)
    assert out["overall"] == pytest.approx(skm.brier_score_loss(y.ravel(), p.ravel()), abs=1e-6)
    for k, name in enumerate(names):
        assert out["per_class"][name] == pytest.approx(skm.brier_score_loss(y[:, k], p[:, k]), abs=1e-6)
    mask[:, 0] = False
    out = metrics.brier_score(y, p, mask, class_names=names)
    assert out["overall"] == pytest.approx(skm.brier_score_loss(y[mask], p[mask]), abs=1e-6)
    assert out["per_class"]["c0"] is None
    assert out["per_class"]["c1"] == pytest.approx(skm.brier_score_loss(y[mask[:, 1], 1], p[mask[:, 1], 1]), abs=1e-6)
    assert "per_class" not in metrics.brier_score(y, p)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("num_bins", [5, 10, 15])
def test_reliability_curve_matches_sklearn(num_bins, seed):
    y, p, mask = multilabel_case(seed, n=150, ties=False)
    r = np.random.default_rng(seed)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    p[:30, 0] = r.choice(edges, 30)  # exactly on bin edges, 0 and 1 included
    p[30:60, 1] = 0.5 * (edges[2] + edges[3])  # many ties; leaves some bins empty elsewhere
    out = metrics.reliability_curve(y, p, mask, num_bins)
    prob_true, prob_pred = calibration_curve(y[mask], p[mask], n_bins=num_bins, strategy="uniform")
    count = np.array(out["count"])
    nonempty = count > 0
    assert count.sum() == mask.sum() and len(count) == num_bins
    np.testing.assert_allclose(np.array(out["observed"])[nonempty].astype(float), prob_true, atol=1e-6)
    np.testing.assert_allclose(np.array(out["mean_predicted"])[nonempty].astype(float), prob_pred, atol=1e-6)
    assert all(out["observed"][b] is None and out["mean_predicted"][b] is None for b in np.flatnonzero(~nonempty))
    np.testing.assert_allclose(out["bin_lower"], edges[:-1])
    np.testing.assert_allclose(out["bin_upper"], edges[1:])


def test_reliability_curve_empty_bins():
    out = metrics.reliability_curve(np.array([[1], [0]]), np.array([[0.05], [0.95]]), num_bins=10)
    assert out["count"] == [1] + [0] * 8 + [1]
    assert out["observed"] == [1.0] + [None] * 8 + [0.0]
    assert out["mean_predicted"][0] == pytest.approx(0.05) and out["mean_predicted"][5] is None


def _ece_reference(y: np.ndarray, p: np.ndarray, num_bins: int) -> float:
    total = 0.0
    for b in range(num_bins):
        lo, hi = b / num_bins, (b + 1) / num_bins
        in_bin = [i for i in range(len(p)) if lo < p[i] <= hi or (b == 0 and p[i] == 0.0)]
        if in_bin:
            observed = sum(y[i] for i in in_bin) / len(in_bin)
            predicted = sum(p[i] for i in in_bin) / len(in_bin)
            total += len(in_bin) / len(p) * abs(observed - predicted)
    return total


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("num_bins", [7, 15])
def test_expected_calibration_error_matches_reference(num_bins, seed):
    y, p, mask = multilabel_case(seed, n=120, ties=False)
    assert metrics.expected_calibration_error(y, p, num_bins=num_bins) == pytest.approx(
        _ece_reference(y.ravel(), p.ravel(), num_bins), abs=1e-6
    )
    assert metrics.expected_calibration_error(y, p, mask, num_bins) == pytest.approx(
        _ece_reference(y[mask], p[mask], num_bins), abs=1e-6
    )


def test_expected_calibration_error_closed_forms():
    # Each of 10 bins holds 100 predictions of its centre c, with 100 * c positives.
    p = np.repeat(0.05 + 0.1 * np.arange(10), 100)
    y = np.concatenate([np.arange(100) < 5 + 10 * b for b in range(10)])
    assert metrics.expected_calibration_error(y[:, None], p[:, None], num_bins=10) == pytest.approx(0.0, abs=1e-9)
    y = np.arange(40) % 2
    assert metrics.expected_calibration_error(y[:, None], np.ones((40, 1))) == pytest.approx(0.5)
    y = (np.arange(40) < 30).astype(np.int64)  # 3/4 positive, all predicted 0.25
    assert metrics.expected_calibration_error(y[:, None], np.full((40, 1), 0.25)) == pytest.approx(0.5)


# --- uncertainty ------------------------------------------------------------------------------


def test_uncertainty_summary_by_hand():
    labels = np.array([[1, 0], [0, 0], [1, 1], [1, 0], [1, 1]])
    probs = np.array([[0.875, 0.25], [0.625, 0.375], [0.25, 0.75], [0.75, 0.125], [0.0, 0.0]])
    # Wrong entries: (1, 0) and (2, 0); they have the two largest spreads. Row 4 is masked.
    spreads = np.array([[0.01, 0.02], [0.30, 0.03], [0.25, 0.04], [0.05, 0.06], [0.9, 0.9]])
    mask = np.ones((5, 2), bool)
    mask[4] = False
    out = metrics.uncertainty_summary(labels, probs, spreads, np.array([0.5, 0.5]), mask, refer_fraction=0.25)
    assert out["num_entries"] == 8 and out["num_images"] == 4 and out["refer_fraction"] == 0.25
    assert out["error_rate"] == pytest.approx(0.25) and out["accuracy"] == pytest.approx(0.75)
    assert out["spread_error_auroc"] == pytest.approx(1.0)
    # Closeness -|p - 0.5|: errors at -1/8, -1/4; right entries -3/8, -1/4, -1/8, -1/4, -1/4, -3/8.
    assert out["margin_error_auroc"] == pytest.approx((5.5 + 3.5) / 12)
    assert out["accuracy_after_referral"] == pytest.approx(1.0)  # both errors referred
    # The two closest entries tie at -1/8: (1, 0) wrong and (1, 1) right are referred.
    assert out["accuracy_after_referral_margin"] == pytest.approx(5 / 6)
    assert out["image_accuracy"] == pytest.approx((1 + 0.5 + 0.5 + 1) / 4)
    # Image spreads .015, .165, .145, .055: image 1 is referred.
    assert out["image_accuracy_after_referral"] == pytest.approx(2.5 / 3)
    assert out["image_accuracy_after_referral_margin"] == pytest.approx(2.5 / 3)
    with pytest.raises(ValueError):
        metrics.uncertainty_summary(labels, probs, spreads, np.array([0.5, 0.5]), refer_fraction=2)


def _after_referral(correct, uncertainty, fraction):
    order = sorted(range(len(correct)), key=lambda i: -uncertainty[i])  # stable
    kept = order[int(fraction * len(correct)) :]
    return sum(correct[i] for i in kept) / len(kept)


@pytest.mark.parametrize("seed", range(3))
def test_uncertainty_summary_matches_reference(seed):
    r = np.random.default_rng(seed)
    n, k = 70, 4
    y = (r.random((n, k)) < 0.4).astype(np.int64)
    p = np.round(r.random((n, k)) * 10) / 10  # ties in margins
    spreads = np.round(r.random((n, k)) * 5) / 5 * 0.1  # ties in spreads
    t = np.array([0.3, 0.5, 0.6, 0.45])
    mask = r.random((n, k)) < 0.8
    mask[:3] = False  # images without any evaluated entry
    out = metrics.uncertainty_summary(y, p, spreads, t, mask, refer_fraction=0.25)
    correct, spread, margin, stated, images = [], [], [], [], []
    for i in range(n):
        row = [
            (
                (p[i, j] >= t[j]) == y[i, j],
                spreads[i, j],
                -abs(p[i, j] - t[j]),
                1 - p[i, j] if p[i, j] >= t[j] else p[i, j],
            )
            for j in range(k)
            if mask[i, j]
        ]
        correct += [v[0] for v in row]
        spread += [v[1] for v in row]
        margin += [v[2] for v in row]
        stated += [v[3] for v in row]
        if row:
            images.append([np.mean([v[c] for v in row]) for c in range(4)])
    wrong = ~np.array(correct)
    assert out["num_entries"] == len(correct) and out["num_images"] == len(images)
    assert out["error_rate"] == pytest.approx(wrong.mean(), abs=1e-6)
    assert out["accuracy"] == pytest.approx(1 - wrong.mean(), abs=1e-6)
    assert out["spread_error_auroc"] == pytest.approx(roc_auc_score(wrong, spread), abs=1e-6)
    assert out["margin_error_auroc"] == pytest.approx(roc_auc_score(wrong, margin), abs=1e-6)
    assert out["probability_error_auroc"] == pytest.approx(roc_auc_score(wrong, stated), abs=1e-6)
    assert out["accuracy_after_referral_probability"] == pytest.approx(_after_referral(correct, stated, 0.25), abs=1e-6)
    assert out["image_accuracy_after_referral_probability"] == pytest.approx(
        _after_referral(np.array(images)[:, 0], np.array(images)[:, 3], 0.25), abs=1e-6
    )
    assert out["accuracy_after_referral"] == pytest.approx(_after_referral(correct, spread, 0.25), abs=1e-6)
    assert out["accuracy_after_referral_margin"] == pytest.approx(_after_referral(correct, margin, 0.25), abs=1e-6)
    img = np.array(images)
    assert out["image_accuracy"] == pytest.approx(img[:, 0].mean(), abs=1e-6)
    assert out["image_accuracy_after_referral"] == pytest.approx(_after_referral(img[:, 0], img[:, 1], 0.25), abs=1e-6)
    assert out["image_accuracy_after_referral_margin"] == pytest.approx(
        _after_referral(img[:, 0], img[:, 2], 0.25), abs=1e-6
    )
