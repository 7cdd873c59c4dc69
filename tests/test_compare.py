"""The comparison script's tables, on results built by the real metrics from random scores."""

import numpy as np

from benchmarks import compare
from vkd_jax import metrics

NAMES = [f"c{k}" for k in range(3)]


def _results(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, (60, 3))
    probs = np.clip(labels * 0.3 + rng.uniform(0, 0.7, (60, 3)), 0, 1)
    return metrics.classification_report(labels, probs, NAMES, spreads=rng.uniform(0, 0.1, (60, 3)),
                                         thresholds=np.full(3, 0.5), num_bootstrap=0)


def test_tables_report_means_spreads_and_paired_differences():
    base, other = [_results(0), _results(1)], [_results(2), _results(3)]
    kinds = compare.kinds_table({"vkd": base, "image_only": other})
    aucs = [r["macro_auc"] for r in base]
    assert f"| vkd | {np.mean(aucs):.4f} ± {np.std(aucs, ddof=1):.4f} | {aucs[0]:.4f}, {aucs[1]:.4f} |" in kinds
    assert all(f"| {name} |" in kinds for name in NAMES)
    ablation = compare.ablation_table(base, {"latent_dim=16": other})
    diff = np.subtract([r["macro_auc"] for r in other], aucs)
    assert f"{diff.mean():+.4f} ({diff[0]:+.4f}, {diff[1]:+.4f})" in ablation
    unc = compare.uncertainty_table({"vkd": base})
    vals = [r["uncertainty"]["spread_error_auroc"] for r in base]
    assert f"{np.mean(vals):.4f} ± {np.std(vals, ddof=1):.4f}" in unc
