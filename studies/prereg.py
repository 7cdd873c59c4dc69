"""The pre-registered comparison of VKD against a tuned image-only baseline (README, "Does VKD
work?"): its design, its statistics and its tables. `python -m studies.compare --study=prereg` runs it.

Design (fixed before any comparison run; the README states it with the decision rule). Its
grid (the cells, methods, candidate settings and seeds) is owned by `studies/configs/prereg.py`,
where every run is a config (`run.py --config=studies/configs/prereg.py:cell=noisy,method=vkd,seed=2`):
- cells: `base` (4,000 training images), `low` (1,000), `noisy` (4,000, label noise 0.2),
  `large` (16,000), and `base_data1` (the base cell on a second data seed); validation 2,000
  and test 10,000 images in every cell (`configs/synthetic_bench.py`).
- methods: `image_only` (the tuned recipe), `vkd`, `vkd_control` (VKD's bottleneck and
  prior-path loss with no report), `distill` (generalized distillation) and `report_aux`
  (the image also predicts the report's words), each with the setting chosen on the
  validation split of the base cell, training seed 0, from `TUNING`; and `vkd_paper` (the
  paper's own KL settings, untuned; added 2026-12-04 before any of its runs), which runs
  after every cell's other methods (`LATER`) and is reported beside them.
- paired training seeds 0..4 (same initialisation and batches across methods); 0..2 in the
  large cell (`CELL_SEEDS`, the budget clause).
- endpoint: the paired difference in test macro AUROC, VKD minus image-only, mean and 95%
  t-interval over seeds; also macro AP.

Every run's summary is recorded under `--record` (a JSON per run, keyed by a fingerprint
of its config), so a study can be stopped and resumed, across sessions and machines.
"""

from __future__ import annotations

import numpy as np

from studies import plan
from studies.configs import prereg as design
from studies.stats import paired, paired_interval
from studies.tables import cells_table, tuning_table

GRID = design.GRID

# The methods the decision rule reads (baseline, method, no-report control); the others are
# reported beside it.
DECIDING = _BASELINE, _VKD, _CONTROL = ("image_only", "vkd", "vkd_control")


def decide(cells: dict[str, dict[str, list[dict]]]) -> tuple[str, list[str]]:
    """The pre-registered decision rule over the cells' runs (method -> per-seed summaries).

    "reproduced": in some cell the 95% interval of VKD minus image-only excludes 0 with a mean
    of at least 0.01, VKD's test KL averages above 0.5 nats there, and VKD beats its no-report
    control (the interval of VKD minus control excludes 0). "not reproduced": the interval's
    upper end is below 0.01 in every cell. Otherwise "inconclusive"."""
    reasons, upper_ends, reproduced = [], [], False
    for cell, runs in cells.items():
        vkd, base = paired(runs.get(_VKD, []), runs.get(_BASELINE, []))
        if len(vkd) < 2:
            continue
        mean, low, high = paired_interval(vkd, base)
        upper_ends.append(high)
        kl = float(np.mean([r["test_kl"] for r in runs[_VKD]]))
        control = paired(runs[_VKD], runs.get(_CONTROL, []))
        if len(control[0]) >= 2:
            c_mean, c_low, c_high = paired_interval(*control)
            versus = f"VKD - control {c_mean:+.4f} [{c_low:+.4f}, {c_high:+.4f}]"
        else:
            c_low, versus = float("nan"), "VKD - control: fewer than 2 paired seeds"
        beats_control = c_low > 0
        ok = low > 0 and mean >= 0.01 and kl > 0.5 and beats_control
        reproduced |= ok
        reasons.append(
            f"{cell}: VKD - image-only {mean:+.4f} [{low:+.4f}, {high:+.4f}], VKD test KL {kl:.3f} nats, "
            f"{versus}, beats the control: {'yes' if beats_control else 'no'}"
        )
    if reproduced:
        return "reproduced", reasons
    if upper_ends and all(h < 0.01 for h in upper_ends) and len(upper_ends) == len(cells):
        return "not reproduced", reasons
    return "inconclusive", reasons


def grid_decision(chosen: dict[str, str], recorded: dict[tuple[str, ...], dict | None]) -> tuple[str, list[str]]:
    """`decide` over the whole pre-registered grid, from the runs recorded so far
    (`plan.grid_decision`, with the methods the rule reads, `DECIDING`)."""
    return plan.grid_decision(GRID, chosen, recorded, DECIDING, decide)


def report(trials: dict, chosen: dict[str, str], results: dict, recorded: dict) -> str:
    """The study's report (`python -m studies.compare --study=prereg`): the tuning, the cells
    selected (`results`: cell -> method -> summaries) and the whole grid's decision (from
    `recorded`, every run of the grid recorded so far)."""
    verdict, reasons = grid_decision(chosen, recorded)
    return "\n".join(
        [
            "## Tuning (validation split, base cell, seed 0)",
            "",
            tuning_table(trials, chosen),
            "",
            "## Cells (test split, 10,000 images; best validation checkpoint)",
            "",
            cells_table(results),
            "",
            f"## Decision (the whole pre-registered grid): {verdict}",
            "",
        ]
        + [f"- {r}" for r in reasons]
    )
