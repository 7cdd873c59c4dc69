"""The second pre-registered study: can the report help at all, and does VKD with the report's
details use it? (docs/study_details.md). `python -m studies.compare --study=details` runs it.

Its grid (cells, methods, candidate settings, seeds, run order, the secondary endpoint's
findings) is owned by `studies/configs/details.py`; every run is a config
(`run.py --config=studies/configs/details.py:cell=mild,method=vkd_details,seed=2`).

Decision rule, fixed before any run (2026-12-07), in two steps over the paired seeds' 95%
t-intervals of test macro AUROC differences:
1. The positive control (`details_aux`) wins in a cell if its interval against image-only
   lies above zero. If it wins in no cell, the benchmark cannot say whether the report can
   help, and the study says so ("the benchmark cannot answer") whatever VKD did.
2. Over the cells the positive control wins: VKD with details *uses the report* if in one of
   them its interval against image-only and its interval against its no-report control both
   lie above zero and its test KL averages above 0.5 nats; it *does not* if in every one of
   them the upper end of its interval against image-only is below half the positive
   control's mean gain there (it recovers less than half of what the report offers);
   otherwise *inconclusive*.
`vkd` (the first study's setting) and `distill` are reported beside, with the same intervals.
"""

from __future__ import annotations

import numpy as np

from studies import plan
from studies.configs import details as design
from studies.stats import mean_sd, paired, paired_interval
from studies.tables import cells_table, endpoint_table, tuning_table

GRID = design.GRID
# The methods the decision rule reads.
DECIDING = _BASELINE, _CONTROL_POSITIVE, _VKD, _VKD_CONTROL = (
    "image_only",
    "details_aux",
    "vkd_details",
    "vkd_details_control",
)
SECONDARY_KEY = "secondary_auc"


def _interval(runs: dict[str, list[dict]], a: str, b: str) -> tuple[float, float, float] | None:
    """(mean, low, high) of `a` minus `b` over their paired seeds; None below 2 pairs."""
    pairs = paired(runs.get(a, []), runs.get(b, []))
    return paired_interval(*pairs) if len(pairs[0]) >= 2 else None


def _text(name: str, interval) -> str:
    if interval is None:
        return f"{name}: fewer than 2 paired seeds"
    return "{} {:+.4f} [{:+.4f}, {:+.4f}]".format(name, *interval)


def decide(cells: dict[str, dict[str, list[dict]]]) -> tuple[str, list[str]]:
    """The decision rule of the module docstring over the cells' runs (method -> per-seed summaries)."""
    reasons, wins = [], {}
    for cell, runs in cells.items():
        control = _interval(runs, _CONTROL_POSITIVE, _BASELINE)
        if control is None:
            continue
        wins[cell] = control[1] > 0
        reasons.append(
            f"{cell}: {_text('positive control - image-only', control)}: {'wins' if wins[cell] else 'does not win'}"
        )
    if not any(wins.values()):
        return "the benchmark cannot answer (the positive control wins in no cell)", reasons
    uses, does_not = False, []
    for cell in (c for c, won in wins.items() if won):
        runs = cells[cell]
        gain = _interval(runs, _VKD, _BASELINE)
        versus = _interval(runs, _VKD, _VKD_CONTROL)
        kls = [r["test_kl"] for r in runs.get(_VKD, []) if r.get("test_kl") is not None]
        kl = float(np.mean(kls)) if kls else float("nan")
        ok = gain is not None and versus is not None and gain[1] > 0 and versus[1] > 0 and kl > 0.5
        uses |= ok
        half = 0.5 * _interval(runs, _CONTROL_POSITIVE, _BASELINE)[0]
        does_not.append(gain is not None and gain[2] < half)
        reasons.append(
            f"{cell}: {_text('VKD with details - image-only', gain)}, "
            f"{_text('VKD with details - its control', versus)}, its test KL {kl:.3f} nats; "
            f"half the positive control's gain {half:+.4f}"
        )
    if uses:
        return "the report can help, and VKD with details uses it", reasons
    if all(does_not):
        return "the report can help, and VKD with details does not use it", reasons
    return "the report can help; whether VKD with details uses it is inconclusive", reasons


def grid_decision(chosen: dict[str, str], recorded: dict[tuple[str, ...], dict | None]) -> tuple[str, list[str]]:
    """`decide` over the whole grid, from the runs recorded so far (`plan.grid_decision`)."""
    return plan.grid_decision(GRID, chosen, recorded, DECIDING, decide)


def with_secondary(rec: dict) -> dict:
    """`rec` with its secondary endpoint: the mean test AUROC over `design.SECONDARY`."""
    return dict(rec, **{SECONDARY_KEY: float(np.mean([rec["per_class_auc"][n] for n in design.SECONDARY]))})


def per_class_table(cells: dict[str, dict[str, list[dict]]], baseline: str = "image_only") -> str:
    """Test AUROC of each secondary finding, per cell and method (mean over seeds), and the
    mean paired difference to `baseline`."""
    names = design.SECONDARY
    lines = ["| cell | method | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for cell, runs in cells.items():
        base = runs.get(baseline) or []
        for method, rs in runs.items():
            row = []
            for name in names:
                auc = lambda r, name=name: r["per_class_auc"][name]  # noqa: E731
                value = np.mean([auc(r) for r in rs])
                a, b = paired(rs, base, auc)
                diff = f" ({np.mean(np.subtract(a, b)):+.3f})" if method != baseline and a else ""
                row.append(f"{value:.3f}{diff}")
            lines.append(f"| {cell} | {method} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def final_train(rec: dict, key: str) -> float | None:
    """The last logged training value of `key` in a record (None where not logged)."""
    metrics = rec.get("final_train") or {}
    return metrics.get("metrics", metrics).get(key)


def kl_table(cells: dict[str, dict[str, list[dict]]]) -> str:
    """Per cell and method with a latent or a details term: the latent's KL(q || p) on test
    and in the last logged training steps, the KL weight reached then, and the details' BCE
    (mean ± sd over seeds)."""
    keys = ("kl", "beta", "bce_details")
    lines = [
        "| cell | method | test KL (nats) | final training KL (nats) | final KL weight | final details BCE |",
        "|---|---|---|---|---|---|",
    ]
    for cell, runs in cells.items():
        for method, rs in runs.items():
            test = [r["test_kl"] for r in rs if r.get("test_kl")]
            train = {k: [v for r in rs if (v := final_train(r, k)) is not None] for k in keys}
            if test or train["bce_details"]:
                cols = [mean_sd(v) if v else "" for v in (test, *train.values())]
                lines.append(f"| {cell} | {method} | " + " | ".join(cols) + " |")
    return "\n".join(lines)


def report(trials: dict, chosen: dict[str, str], results: dict, recorded: dict) -> str:
    """The study's report (`python -m studies.compare --study=details`): the tuning, the cells
    selected (`results`: cell -> method -> summaries) on both endpoints, the secondary
    findings one by one, the KLs, and the whole grid's decision (from `recorded`)."""
    verdict, reasons = grid_decision(chosen, recorded)
    results = {cell: {m: [with_secondary(r) for r in rs] for m, rs in runs.items()} for cell, runs in results.items()}
    return "\n".join(
        [
            f"## Tuning (validation split, {GRID.tuning_cell} cell, seed {GRID.tuning_seed})",
            "",
            tuning_table(trials, chosen),
            "",
            "## Primary endpoint: test macro AUROC (10,000 images; best validation checkpoint)",
            "",
            cells_table(results),
            "",
            f"## Secondary endpoint: test macro AUROC over {', '.join(design.SECONDARY)}",
            "",
            endpoint_table(results, SECONDARY_KEY, "secondary macro AUROC"),
            "",
            "## The secondary findings (test AUROC, mean over seeds; paired difference to image_only)",
            "",
            per_class_table(results),
            "",
            "## What the latent keeps",
            "",
            kl_table(results),
            "",
            f"## Decision (the whole pre-registered grid): {verdict}",
            "",
        ]
        + [f"- {r}" for r in reasons]
    )
