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

import hashlib
import json
import os
from typing import NamedTuple

import numpy as np
from scipy import stats

from studies.configs import prereg as design

# Methods whose runs come after every cell's runs of the others: the issue asks for the
# paper's settings once the chosen setting has been compared, so they do not delay it.
LATER = ("vkd_paper",)
# Paths that differ between machines and do not change what a run computes.
_UNFINGERPRINTED = (
    ("data", "data_dir"),
    ("model", "text_encoder", "cache_dir"),
    ("model", "text_encoder", "init_from"),
    ("model", "text_encoder", "tokenizer"),
)


class Run(NamedTuple):
    """One run of the study: where it is recorded, its config and its training seed."""

    parts: tuple[str, ...]  # record name parts: (cell, method, "seed<N>") or ("tuning", method, setting)
    arg: str  # `design.get_config(arg)`: `run.py --config=studies/configs/prereg.py:<arg>`
    seed: int  # the training seed, as in `arg`


def tuning_plan() -> list[tuple[str, str, Run]]:
    """(method, setting, run) for every tuning run: each candidate setting of `design.TUNING`
    on the tuning cell and seed."""
    cell, seed = design.TUNING_CELL, design.TUNING_SEED
    return [
        (method, name, Run(("tuning", method, name), design.arg(cell, method, seed, name), seed))
        for method, settings in design.TUNING.items()
        for name in settings
    ]


def cells_plan(chosen: dict[str, str], cells, methods, seeds=None) -> list[tuple[str, str, Run]]:
    """(cell, method, run) for every comparison run, each tuned method with its `chosen`
    setting: cell by cell, then the `LATER` methods cell by cell; `seeds` in every cell, or by
    default each cell's grid seeds (`design.cell_seeds`)."""
    first = [m for m in methods if m not in LATER]
    order = [(c, m) for c in cells for m in first] + [(c, m) for c in cells for m in methods if m in LATER]
    plan = []
    for cell, method in order:
        owner = design.tuned_by(method)
        setting = chosen[owner] if owner else None
        cell_seeds = design.cell_seeds(cell) if seeds is None else seeds
        plan += [
            (cell, method, Run((cell, method, f"seed{s}"), design.arg(cell, method, s, setting), s)) for s in cell_seeds
        ]
    return plan


def fingerprinted(config) -> dict:
    """The part of `config` that decides what a run computes: all of it but the paths that
    differ between machines and the build options of datasets other than `data.name`."""
    from data_pipelines.dataset_options import active_data

    d = json.loads(config.to_json_best_effort())
    for path in _UNFINGERPRINTED:
        node = d
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
    d["data"] = active_data(d["data"])
    return d


def fingerprint(config) -> str:
    """A short hash of `fingerprinted(config)`."""
    return hashlib.sha256(json.dumps(fingerprinted(config), sort_keys=True).encode()).hexdigest()[:16]


def config_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The dotted fields where two `fingerprinted` configs differ ('field: old -> new')."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b, name = old.get(key, "<absent>"), new.get(key, "<absent>"), prefix + key
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_changes(a, b, name + ".")
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out


def summary(results: dict, config) -> dict:
    """What the study keeps of one run's results.json."""
    return {
        "fingerprint": fingerprint(config),
        "config": fingerprinted(config),
        "macro_auc": results["macro_auc"],
        "macro_ap": results["average_precision"]["macro"],
        "val_macro_auc": results["val_macro_auc"],
        "per_class_auc": results["per_class_auc"],
        "test_kl": results.get("kl"),
        "final_train": results.get("final_train"),
        "checkpoint_step": results["checkpoint_step"],
        "elapsed_s": results["elapsed_s"],
        # Where it ran (results.json's; None for one written before it was recorded): not
        # fingerprinted, so the same config run elsewhere is the same run.
        "environment": results.get("environment"),
    }


def record_path(record_dir: str, *parts: str) -> str:
    return os.path.join(record_dir, *parts[:-1], f"{parts[-1]}.json")


class ChangedRun(ValueError):
    """A recorded run's config differs from the one the study now asks for."""


def load_record(path: str, config, rerun_changed: bool = False) -> dict | None:
    """The recorded summary at `path`, None if there is none yet.

    A record of another config is never silently replaced: that raises `ChangedRun`, naming
    the changed fields where the record keeps its config, unless `rerun_changed` (then None:
    the run is trained again under the new config).
    """
    if not os.path.exists(path):
        return None
    with open(path) as f:
        rec = json.load(f)
    if rec.get("fingerprint") == fingerprint(config):
        return rec
    if rerun_changed:
        return None
    if "config" in rec:
        what = "; ".join(config_changes(rec["config"], fingerprinted(config))[:8])
    else:
        what = "the record predates recorded configs, so the fields are not known"
    raise ChangedRun(
        f"{path} was recorded for another config ({what}). Delete it, or pass --rerun_changed, "
        "to train it again under the current config"
    )


def save_record(path: str, rec: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(rec, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def choose(trials: dict[str, dict]) -> str:
    """The setting with the highest validation macro AUROC (ties: the first listed)."""
    return max(trials, key=lambda name: trials[name]["val_macro_auc"])


def paired_interval(a, b, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the paired differences a - b: a t-interval over the pairs."""
    d = np.subtract(a, b, dtype=float)
    if len(d) < 2:
        return float(d.mean()), float("nan"), float("nan")
    half = stats.t.ppf(0.5 + confidence / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


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
    """`decide` over the whole pre-registered grid (every cell, method and seed), from the runs
    recorded so far (record name parts -> summary or None), whichever part of the grid a
    command selected. Until every run of the `DECIDING` methods is recorded: "not yet decided
    (...; if it ended here: <verdict>)"; from then on the verdict is final (no run of another
    method can change it), and says so, with the count of the grid's runs recorded, until all
    are. Runs outside the grid (other seeds) never enter the decision."""
    grid = cells_plan(chosen, design.CELLS, design.METHODS)
    cells = {cell: {} for cell in design.CELLS}
    done = missing_deciding = 0
    for cell, method, (parts, _, seed) in grid:
        rec = recorded.get(parts)
        if rec is not None:
            cells[cell].setdefault(method, []).append(dict(rec, seed=seed))
            done += 1
        elif method in DECIDING:
            missing_deciding += 1
    verdict, reasons = decide(cells)
    counted = f"{done} of {len(grid)} runs of the grid recorded"
    if missing_deciding:
        verdict = f"not yet decided ({counted}; if it ended here: {verdict})"
    elif done < len(grid):
        verdict = f"{verdict} (final: every run of {', '.join(DECIDING)} is recorded; {counted})"
    else:
        verdict = f"{verdict} (final: all {len(grid)} runs of the grid recorded)"
    return verdict, reasons


def _aucs(runs: list[dict], key: str = "macro_auc") -> list[float]:
    return [r[key] for r in runs]


def paired(a: list[dict], b: list[dict], key: str = "macro_auc") -> tuple[list[float], list[float]]:
    """`key` of the runs of `a` and of `b` with the same training seed (runs without a "seed"
    are paired by position), in seed order: the pairs a paired difference is taken over."""

    def by_seed(runs):
        return {r.get("seed", i): r[key] for i, r in enumerate(runs)}

    x, y = by_seed(a), by_seed(b)
    seeds = sorted(set(x) & set(y))
    return [x[s] for s in seeds], [y[s] for s in seeds]


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


def mean_sd(values) -> str:
    """`mean ± sd` over seeds (sample sd; 0 for one value), four decimals."""
    v = np.asarray(values, float)
    return f"{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.4f}"
