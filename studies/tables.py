"""The tables of a study's report: per cell and method, over the paired training seeds."""

from __future__ import annotations

import numpy as np

from studies.stats import mean_sd, paired, paired_interval


def _aucs(runs: list[dict], key: str = "macro_auc") -> list[float]:
    return [r[key] for r in runs]


def cells_table(cells: dict[str, dict[str, list[dict]]]) -> str:
    """Per cell and method: test macro AUROC and AP (mean ± sd over seeds), the paired
    difference to image-only with its 95% interval, and the test KL."""
    lines = [
        "| cell | method | seeds | test macro AUROC | paired diff. to image_only [95% CI] | "
        "macro AP | paired AP diff. [95% CI] | test KL (nats) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cell, runs in cells.items():
        base = runs.get("image_only")
        for method, rs in runs.items():
            aucs, aps = _aucs(rs), _aucs(rs, "macro_ap")
            diff = ap_diff = ""
            pairs = paired(rs, base or [])
            if method != "image_only" and len(pairs[0]) >= 2:
                n = "" if len(pairs[0]) == len(rs) == len(base) else f" ({len(pairs[0])} pairs)"
                diff = "{:+.4f} [{:+.4f}, {:+.4f}]".format(*paired_interval(*pairs)) + n
                ap_diff = "{:+.4f} [{:+.4f}, {:+.4f}]".format(*paired_interval(*paired(rs, base, "macro_ap"))) + n
            kls = [r["test_kl"] for r in rs if r.get("test_kl")]
            kl = f"{np.mean(kls):.3f}" if kls else ""
            lines.append(
                f"| {cell} | {method} | {len(rs)} | {mean_sd(aucs)} | {diff} | {mean_sd(aps)} | {ap_diff} | {kl} |"
            )
    return "\n".join(lines)


def tuning_table(trials: dict[str, dict[str, dict]], chosen: dict[str, str]) -> str:
    lines = ["| method | setting | validation macro AUROC | test KL (nats) | chosen |", "|---|---|---|---|---|"]
    for method, by_name in trials.items():
        for name, rec in by_name.items():
            kl = f"{rec['test_kl']:.3f}" if rec.get("test_kl") else ""
            lines.append(
                f"| {method} | {name} | {rec['val_macro_auc']:.4f} | {kl} | "
                f"{'yes' if chosen.get(method) == name else ''} |"
            )
    return "\n".join(lines)


def endpoint_table(cells: dict[str, dict[str, list[dict]]], key: str, label: str, baseline: str = "image_only") -> str:
    """Per cell and method: `key` of the runs (mean ± sd over seeds) and its paired difference
    to `baseline` with the 95% interval over the paired seeds."""
    lines = [f"| cell | method | seeds | {label} | paired diff. to {baseline} [95% CI] |", "|---|---|---|---|---|"]
    for cell, runs in cells.items():
        base = runs.get(baseline) or []
        for method, rs in runs.items():
            pairs = paired(rs, base, key)
            diff = ""
            if method != baseline and len(pairs[0]) >= 2:
                diff = "{:+.4f} [{:+.4f}, {:+.4f}]".format(*paired_interval(*pairs))
                diff += "" if len(pairs[0]) == len(rs) == len(base) else f" ({len(pairs[0])} pairs)"
            lines.append(f"| {cell} | {method} | {len(rs)} | {mean_sd(_aucs(rs, key))} | {diff} |")
    return "\n".join(lines)
