"""vkd_jax.metrics.classification_report: every metric of the package composed into one report of
plain JSON values."""

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from tests.metric_cases import multilabel_case
from vkd_jax import metrics


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


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize(
    "with_mask,with_groups,with_extras",
    [(False, False, False), (True, False, True), (True, True, True), (False, True, False)],
)
def test_classification_report_composes_the_metrics(with_mask, with_groups, with_extras):
    y, p, mask = multilabel_case(11, n=80)
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
