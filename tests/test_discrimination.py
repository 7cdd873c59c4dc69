"""vkd_jax.metrics' discrimination metrics against scikit-learn as the oracle: AUROC, ROC curves and
average precision, thresholded metrics and threshold selection, ranking metrics, bootstrap intervals."""

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.metrics import roc_auc_score

from tests.metric_cases import multilabel_case
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
    y, p, _ = multilabel_case(seed)
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
    y, p, mask = multilabel_case(seed)
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
    y, p, mask = multilabel_case(seed, n=60)
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
    y, p, _ = multilabel_case(seed, k=6)
    y[:5] = 0  # rows without positives
    y[5:8] = 1  # rows with only positives
    p[8:12] = 0.25  # rows with all-equal scores
    assert metrics.coverage_error(y, p) == pytest.approx(skm.coverage_error(y, p), abs=1e-6)
    assert metrics.label_ranking_average_precision(y, p) == pytest.approx(
        skm.label_ranking_average_precision_score(y, p), abs=1e-6
    )


@pytest.mark.parametrize("seed", range(3))
def test_ranking_metrics_drop_masked_entries(seed):
    y, p, mask = multilabel_case(seed, k=6)
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
