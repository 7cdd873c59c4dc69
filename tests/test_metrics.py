"""Host-side metrics against scikit-learn as the oracle."""

import numpy as np
import pytest
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
