"""Host-side metrics against scikit-learn as the oracle."""

import json

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score

from vkd_jax import metrics


@pytest.mark.parametrize("seed", range(5))
def test_binary_auroc_matches_sklearn_random(seed):
    r = np.random.default_rng(seed)
    y = r.random(200) < 0.3
    s = r.normal(size=200) + y
    assert metrics.binary_auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_binary_auroc_ties_and_constant_scores():
    r = np.random.default_rng(0)
    y = r.random(300) < 0.4
    s = np.round(r.random(300) * 4) / 4  # heavy ties
    assert metrics.binary_auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert metrics.binary_auroc(y, np.zeros(300)) == pytest.approx(0.5)


def test_binary_auroc_undefined_with_one_label_value():
    assert metrics.binary_auroc(np.zeros(5), np.arange(5)) is None
    assert metrics.binary_auroc(np.ones(5), np.arange(5)) is None


def test_auroc_summary_macro_micro_and_undefined_classes():
    r = np.random.default_rng(1)
    y = (r.random((120, 3)) < 0.3).astype(np.float32)
    y[:, 2] = 0  # a class with no positives
    s = r.random((120, 3)) + 0.5 * y
    out = metrics.auroc_summary(y, s, ["a", "b", "c"])
    assert out["per_class_auc"]["c"] is None and out["undefined_classes"] == ["c"]
    expected_macro = np.mean([roc_auc_score(y[:, k], s[:, k]) for k in range(2)])
    assert out["macro_auc"] == pytest.approx(expected_macro, abs=1e-12)
    assert out["micro_auc"] == pytest.approx(roc_auc_score(y.ravel(), s.ravel()), abs=1e-12)


def test_auroc_summary_leaves_masked_entries_out():
    r = np.random.default_rng(2)
    y = (r.random((100, 2)) < 0.5).astype(np.float32)
    s = r.random((100, 2))
    mask = r.random((100, 2)) < 0.7
    out = metrics.auroc_summary(y, s, ["a", "b"], mask)
    for k, name in enumerate("ab"):
        expected = roc_auc_score(y[mask[:, k], k], s[mask[:, k], k])
        assert out["per_class_auc"][name] == pytest.approx(expected, abs=1e-12)


# --- helpers ------------------------------------------------------------------------------


def _binary_case(name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One class's labels and scores: random, tied, constant, or a single label value."""
    r = np.random.default_rng(seed)
    n = 40 + 23 * seed
    y = r.random(n) < 0.35
    y[:2] = [True, False]
    if name == "random":
        return y, r.normal(size=n) + y
    if name == "ties":
        return y, np.round(r.random(n) * 4) / 4
    if name == "constant":
        return y, np.full(n, 0.3)
    if name == "no_positives":
        return np.zeros(n, bool), np.round(r.random(n) * 5) / 5
    if name == "all_positives":
        return np.ones(n, bool), np.round(r.random(n) * 3) / 3
    raise ValueError(name)


BINARY_CASES = ["random", "ties", "constant", "no_positives", "all_positives"]


def _multilabel(seed: int, n: int = 90, k: int = 5, ties: bool = True):
    """Labels `[n, k]` (last two classes: no positives / all positives), scores and a mask."""
    r = np.random.default_rng(seed)
    y = (r.random((n, k)) < 0.3).astype(np.int64)
    y[:, -2], y[:, -1] = 0, 1
    p = np.clip(r.random((n, k)) * 0.8 + 0.2 * y, 0.0, 1.0)
    if ties:
        p = np.round(p * 8) / 8
    mask = r.random((n, k)) < 0.75
    return y, p, mask


def _walk(x):
    """Every leaf of a nested dict / list."""
    if isinstance(x, dict):
        for v in x.values():
            yield from _walk(v)
    elif isinstance(x, list):
        for v in x:
            yield from _walk(v)
    else:
        yield x


# --- curves and average precision ------------------------------------------------------------


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("case", BINARY_CASES)
def test_roc_curve_matches_sklearn(case, seed):
    y, s = _binary_case(case, seed)
    fpr, tpr, thresholds = metrics.roc_curve(y, s)
    e_fpr, e_tpr, e_thresholds = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_array_equal(thresholds, e_thresholds)  # includes the leading +inf
    np.testing.assert_allclose(fpr, e_fpr, atol=1e-6, rtol=0)  # NaN where sklearn has NaN
    np.testing.assert_allclose(tpr, e_tpr, atol=1e-6, rtol=0)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("case", BINARY_CASES)
def test_average_precision_matches_sklearn(case, seed):
    y, s = _binary_case(case, seed)
    ap = metrics.average_precision(y, s)
    if case == "no_positives":
        assert ap is None
    else:
        assert ap == pytest.approx(skm.average_precision_score(y, s), abs=1e-6)


def test_average_precision_tie_semantics_by_hand():
    # The tied pair (0.5) is one step: recall 0 -> 1 at precision 1/2 (not 1, then 1/2).
    assert metrics.average_precision([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert metrics.average_precision([1, 0, 1], [0.9, 0.5, 0.5]) == pytest.approx(0.5 + 0.5 * 2 / 3)


# --- thresholded metrics ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_threshold_metrics_matches_sklearn_without_mask(seed):
    y, p, _ = _multilabel(seed)
    r = np.random.default_rng(seed + 10)
    t = r.uniform(0.2, 0.8, y.shape[1])
    t[0] = 1.5  # nothing predicted positive: precision undefined -> 0
    names = [f"c{k}" for k in range(y.shape[1])]
    out = metrics.threshold_metrics(y, p, t, names)
    pred = (p >= t).astype(np.int64)
    precision, recall, f1, support = skm.precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    for k, name in enumerate(names):
        c = out["per_class"][name]
        assert c["accuracy"] == pytest.approx(skm.accuracy_score(y[:, k], pred[:, k]), abs=1e-6)
        assert c["precision"] == pytest.approx(precision[k], abs=1e-6)
        assert c["recall"] == pytest.approx(recall[k], abs=1e-6)
        assert c["f1"] == pytest.approx(f1[k], abs=1e-6)
        assert c["support"] == support[k] and type(c["support"]) is int
        assert out["thresholds"][name] == t[k]
    for average in ("macro", "micro"):
        expected = skm.precision_recall_fscore_support(y, pred, average=average, zero_division=0)
        got = out[average]
        assert [got["precision"], got["recall"], got["f1"]] == pytest.approx(expected[:3], abs=1e-6)
    assert out["micro"]["accuracy"] == pytest.approx(np.mean(pred == y), abs=1e-6)
    assert out["macro"]["accuracy"] == pytest.approx(
        np.mean([skm.accuracy_score(y[:, k], pred[:, k]) for k in range(len(names))]), abs=1e-6
    )


@pytest.mark.parametrize("seed", range(3))
def test_threshold_metrics_each_class_on_its_unmasked_rows(seed):
    y, p, mask = _multilabel(seed)
    mask[:, 1] = False  # a class with no evaluated entry
    t = np.full(y.shape[1], 0.5)
    names = [f"c{k}" for k in range(y.shape[1])]
    out = metrics.threshold_metrics(y, p, t, names, mask)
    pred = (p >= t).astype(np.int64)
    per_class = []
    for k, name in enumerate(names):
        c = out["per_class"][name]
        yk, pk = y[mask[:, k], k], pred[mask[:, k], k]
        prf = (
            (0.0, 0.0, 0.0)
            if k == 1
            else skm.precision_recall_fscore_support(yk, pk, average="binary", zero_division=0)[:3]
        )
        assert [c["precision"], c["recall"], c["f1"]] == pytest.approx(list(prf), abs=1e-6)
        assert c["support"] == int(yk.sum())
        if k == 1:
            assert c["accuracy"] is None
        else:
            assert c["accuracy"] == pytest.approx(skm.accuracy_score(yk, pk), abs=1e-6)
        per_class.append([c["accuracy"], *prf])
    accuracies = [row[0] for row in per_class if row[0] is not None]
    assert out["macro"]["accuracy"] == pytest.approx(np.mean(accuracies), abs=1e-6)
    assert out["macro"]["f1"] == pytest.approx(np.mean([row[3] for row in per_class]), abs=1e-6)
    micro = skm.precision_recall_fscore_support(y[mask], pred[mask], average="binary", zero_division=0)
    assert [out["micro"][m] for m in ("precision", "recall", "f1")] == pytest.approx(list(micro[:3]), abs=1e-6)
    assert out["micro"]["accuracy"] == pytest.approx(skm.accuracy_score(y[mask], pred[mask]), abs=1e-6)


# --- threshold selection ----------------------------------------------------------------------


def _brute_force_threshold(y: np.ndarray, p: np.ndarray, method: str) -> float:
    if y.min() == y.max():
        return 0.5
    best, best_t = -np.inf, None
    for t in np.unique(p):  # ascending: ">=" keeps the largest threshold among the maxima
        pred = p >= t
        if method == "youden":
            value = skm.recall_score(y, pred) - (1 - skm.recall_score(y, pred, pos_label=0))
        else:
            value = skm.f1_score(y, pred, zero_division=0)
        if value >= best - 1e-12:
            best, best_t = max(best, value), t
    return best_t


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("method", ["youden", "f1"])
def test_choose_thresholds_matches_brute_force(method, seed):
    y, p, mask = _multilabel(seed, n=60)
    p[:, 2] = 0.5  # all-equal scores: the single candidate
    chosen = metrics.choose_thresholds(y, p, mask, method=method)
    assert chosen.shape == (y.shape[1],)
    for k in range(y.shape[1]):
        expected = _brute_force_threshold(y[mask[:, k], k], p[mask[:, k], k], method)
        assert chosen[k] == pytest.approx(expected, abs=1e-12), k
    assert chosen[-2] == chosen[-1] == 0.5  # no positives / all positives


def test_choose_thresholds_ties_pick_the_largest_and_unknown_method_raises():
    # Youden is 1/2 at both 0.4 and 0.2; F1 is 1 at 0.3 only.
    y, p = np.array([[0], [1], [0], [1]]), np.array([[0.1], [0.2], [0.3], [0.4]])
    assert metrics.choose_thresholds(y, p)[0] == 0.4
    assert metrics.choose_thresholds(y, p, method="f1")[0] == 0.2  # F1 2/3 at 0.4, 4/5 at 0.2
    with pytest.raises(ValueError, match="youden.*f1"):
        metrics.choose_thresholds(y, p, method="accuracy")


# --- ranking --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_ranking_metrics_match_sklearn(seed):
    y, p, _ = _multilabel(seed, k=6)
    y[:5] = 0  # rows without positives
    y[5:8] = 1  # rows with only positives
    p[8:12] = 0.25  # rows with all-equal scores
    assert metrics.coverage_error(y, p) == pytest.approx(skm.coverage_error(y, p), abs=1e-6)
    assert metrics.label_ranking_average_precision(y, p) == pytest.approx(
        skm.label_ranking_average_precision_score(y, p), abs=1e-6
    )


@pytest.mark.parametrize("seed", range(3))
def test_ranking_metrics_drop_masked_entries(seed):
    y, p, mask = _multilabel(seed, k=6)
    # Equivalent explicit input: masked entries are negatives scored below everything.
    y_explicit = np.where(mask, y, 0)
    p_explicit = np.where(mask, p, p.min() - 1.0)
    assert metrics.coverage_error(y, p, mask) == pytest.approx(skm.coverage_error(y_explicit, p_explicit), abs=1e-6)
    assert metrics.label_ranking_average_precision(y, p, mask) == pytest.approx(
        skm.label_ranking_average_precision_score(y_explicit, p_explicit), abs=1e-6
    )
    # Masking whole classes is the same as deleting them.
    keep = np.array([True, False, True, True, False, True])
    full_mask = np.broadcast_to(keep, y.shape)
    assert metrics.coverage_error(y, p, full_mask) == pytest.approx(
        skm.coverage_error(y[:, keep], p[:, keep]), abs=1e-6
    )
    assert metrics.label_ranking_average_precision(y, p, full_mask) == pytest.approx(
        skm.label_ranking_average_precision_score(y[:, keep], p[:, keep]), abs=1e-6
    )


# --- calibration ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_brier_score_matches_sklearn(seed):
    y, p, mask = _multilabel(seed, ties=False)
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
    y, p, mask = _multilabel(seed, n=150, ties=False)
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
    y, p, mask = _multilabel(seed, n=120, ties=False)
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


# --- bootstrap --------------------------------------------------------------------------------


def _bootstrap_reference(y, s, mask, groups, num_samples, seed, confidence):
    """Materialises each replicate's rows and scores it with sklearn."""
    ids, unit = np.unique(np.arange(len(y)) if groups is None else groups, return_inverse=True)
    members = [np.flatnonzero(unit == u) for u in range(len(ids))]
    rng = np.random.default_rng(seed)
    per_class, macro, micro = [[] for _ in range(y.shape[1])], [], []
    for _ in range(num_samples):
        rows = np.concatenate([members[u] for u in rng.integers(0, len(ids), len(ids))])
        yy, ss, mm = y[rows], s[rows], mask[rows]
        defined = []
        for k in range(y.shape[1]):
            yk = yy[mm[:, k], k]
            if 0 < yk.sum() < len(yk):
                defined.append(roc_auc_score(yk, ss[mm[:, k], k]))
                per_class[k].append(defined[-1])
        if defined:
            macro.append(np.mean(defined))
        if 0 < yy[mm].sum() < mm.sum():
            micro.append(roc_auc_score(yy[mm], ss[mm]))
    tail = 50 * (1 - confidence)

    def interval(v):
        return list(np.percentile(v, [tail, 100 - tail])) if v else None

    return [interval(v) for v in per_class], [len(v) for v in per_class], interval(macro), interval(micro)


@pytest.mark.parametrize("use_groups", [False, True])
@pytest.mark.parametrize("use_mask", [False, True])
def test_bootstrap_auroc_matches_reference_loop(use_mask, use_groups):
    r = np.random.default_rng(3)
    n = 40
    y = (r.random((n, 3)) < 0.45).astype(np.int64)
    y[:, 2] = np.arange(n) == 0  # a single positive: class 2 is undefined in many replicates
    s = np.round(r.random((n, 3)) * 6) + 2.0 * y  # many positive-negative ties
    mask = r.random((n, 3)) < 0.8 if use_mask else np.ones((n, 3), bool)
    mask[0, 2] = True
    groups = r.integers(100, 115, n) if use_groups else None
    out = metrics.bootstrap_auroc(
        y, s, ["a", "b", "c"], mask if use_mask else None, groups, num_samples=60, seed=7, confidence=0.9
    )
    per_class, counts, macro, micro = _bootstrap_reference(y, s, mask, groups, 60, 7, 0.9)
    for k, name in enumerate("abc"):
        assert out["per_class"][name] == pytest.approx(per_class[k], abs=1e-9)
        assert out["per_class_replicates"][name] == counts[k]
    assert counts[2] < 60  # the rare class really was skipped in some replicates
    assert out["macro"] == pytest.approx(macro, abs=1e-9)
    assert out["micro"] == pytest.approx(micro, abs=1e-9)
    assert out["unit"] == ("group" if use_groups else "example")
    assert (out["num_samples"], out["confidence"], out["seed"]) == (60, 0.9, 7)


def test_bootstrap_auroc_contains_estimate_and_is_seeded():
    r = np.random.default_rng(4)
    y = (r.random((300, 3)) < 0.3).astype(np.int64)
    y[:, 2] = 0  # never defined
    s = r.random((300, 3)) + 0.4 * y
    names = ["a", "b", "c"]
    out = metrics.bootstrap_auroc(y, s, names, num_samples=200, seed=1)
    point = metrics.auroc_summary(y, s, names)
    for name in "ab":
        lo, hi = out["per_class"][name]
        assert lo < point["per_class_auc"][name] < hi and hi - lo < 0.3
    assert out["macro"][0] < point["macro_auc"] < out["macro"][1]
    assert out["micro"][0] < point["micro_auc"] < out["micro"][1]
    assert out["per_class"]["c"] is None and out["per_class_replicates"]["c"] == 0
    assert metrics.bootstrap_auroc(y, s, names, num_samples=200, seed=1) == out
    assert metrics.bootstrap_auroc(y, s, names, num_samples=200, seed=2)["macro"] != out["macro"]


def test_bootstrap_auroc_resamples_whole_groups():
    # Each row duplicated under one group id: the group bootstrap draws the same units as the
    # example bootstrap of the original rows, and doubling all weights leaves every AUROC as is.
    r = np.random.default_rng(5)
    y = (r.random((50, 2)) < 0.4).astype(np.int64)
    s = np.round(r.random((50, 2)) * 5) / 5 + 0.2 * y
    mask = r.random((50, 2)) < 0.8
    single = metrics.bootstrap_auroc(y, s, ["a", "b"], mask, num_samples=100, seed=3)
    doubled = metrics.bootstrap_auroc(
        np.repeat(y, 2, 0),
        np.repeat(s, 2, 0),
        ["a", "b"],
        np.repeat(mask, 2, 0),
        groups=np.repeat(np.arange(50), 2),
        num_samples=100,
        seed=3,
    )
    assert doubled.pop("unit") == "group" and single.pop("unit") == "example"
    assert doubled == single
    # Resampling rows instead would break the pairs and give other intervals.
    by_row = metrics.bootstrap_auroc(
        np.repeat(y, 2, 0), np.repeat(s, 2, 0), ["a", "b"], np.repeat(mask, 2, 0), num_samples=100, seed=3
    )
    assert by_row["macro"] != single["macro"]


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


# --- full report ------------------------------------------------------------------------------


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize(
    "with_mask,with_groups,with_extras",
    [(False, False, False), (True, False, True), (True, True, True), (False, True, False)],
)
def test_classification_report_composes_the_metrics(with_mask, with_groups, with_extras):
    y, p, mask = _multilabel(11, n=80)
    mask = mask if with_mask else None
    r = np.random.default_rng(12)
    groups = r.integers(0, 30, len(y)) if with_groups else None
    spreads = r.random(y.shape) * 0.1 if with_extras else None
    t = metrics.choose_thresholds(y, p, mask) if with_extras else None
    names = [f"c{k}" for k in range(y.shape[1])]
    report = metrics.classification_report(
        y, p, names, mask=mask, spreads=spreads, thresholds=t, groups=groups, num_bootstrap=50, seed=4, num_bins=10
    )
    text = json.dumps(report, allow_nan=False)
    assert all(type(v) in (float, int, str, bool, type(None)) for v in _walk(report)), text
    assert {
        k: report[k] for k in ("macro_auc", "micro_auc", "per_class_auc", "undefined_classes")
    } == metrics.auroc_summary(y, p, names, mask)
    assert report["auc_ci"] == metrics.bootstrap_auroc(y, p, names, mask, groups, 50, 4)
    m = np.ones(y.shape, bool) if mask is None else mask
    ap = report["average_precision"]
    assert ap["per_class"]["c0"] == pytest.approx(skm.average_precision_score(y[m[:, 0], 0], p[m[:, 0], 0]), abs=1e-6)
    assert ap["per_class"]["c3"] is None  # no positives
    defined = [metrics.average_precision(y[m[:, k], k], p[m[:, k], k]) for k in range(5)]
    assert ap["macro"] == pytest.approx(np.mean(defined[:3] + defined[4:]), abs=1e-12)
    assert ap["micro"] == pytest.approx(skm.average_precision_score(y[m], p[m]), abs=1e-6)
    assert report["thresholded"]["0.5"] == metrics.threshold_metrics(y, p, np.full(5, 0.5), names, mask)
    assert ("chosen" in report["thresholded"]) == with_extras
    assert report["ranking"] == {
        "coverage_error": metrics.coverage_error(y, p, mask),
        "label_ranking_average_precision": metrics.label_ranking_average_precision(y, p, mask),
    }
    cal = report["calibration"]
    assert cal["ece"] == metrics.expected_calibration_error(y, p, mask, 10)
    brier = metrics.brier_score(y, p, mask, class_names=names)
    assert (cal["brier"], cal["per_class_brier"]) == (brier["overall"], brier["per_class"])
    assert cal["reliability"] == metrics.reliability_curve(y, p, mask, 10) and cal["num_bins"] == 10
    assert report["num_examples"] == 80
    if with_extras:
        assert report["thresholded"]["chosen"] == metrics.threshold_metrics(y, p, t, names, mask)
        assert report["uncertainty"] == metrics.uncertainty_summary(y, p, spreads, t, mask)
    else:
        assert "uncertainty" not in report
