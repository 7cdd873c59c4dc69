"""The comparisons in one command each.

`--study=kinds` (the default): every model kind over several seeds, plus vkd ablations:

    python -m studies.compare --config=configs/demo_scratch.py --workdir=/tmp/vkd-compare

`--study=prereg`: the pre-registered comparison of `studies/prereg.py` (tuning on
validation, then every cell x method x seed), with its decision rule:

    python -m studies.compare --study=prereg --config=configs/synthetic_bench.py \
        --workdir=/tmp/vkd-prereg --record=studies/results/prereg

Its runs are the configs of `studies/configs/prereg.py` (each one `run.py
--config=studies/configs/prereg.py:cell=...,method=...,seed=...`), all built on
`configs/synthetic_bench.py`: `--config` names that file or is left out, and its `--config.*`
overrides apply to every run (after the run's own changes, as run.py applies them).

`--cells`, `--methods` and `--seeds` pick which runs it trains and tabulates; the decision is
always the whole grid's, from every recorded run ("not yet decided" until every run of the
methods the rule reads is recorded).

Each run trains in `<workdir>/<kind>/seed<seed>` (ablations: `<workdir>/ablations/<name>/vkd/
seed<seed>`) and is evaluated like `run.py` does (best validation checkpoint on the test split,
thresholds chosen on validation). A finished run is reused, an interrupted one resumes, and a
run evaluated by an older release (fewer metrics) is evaluated again from its checkpoint. Markdown tables
(macro AUROC mean ± sd over seeds, per-finding AUROC, ablations, uncertainty) are printed and
written to `<workdir>/comparison.md`. Config fields can be overridden as in run.py.
"""

import json
import os
import sys

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from studies import details, plan, prereg, records
from studies.stats import mean_sd

# `--study=<name>`: the module of each pre-registered study (its `GRID`, `DECIDING`,
# `grid_decision` and `report`).
STUDIES = {"prereg": prereg, "details": details}

KINDS = ("image_only", "vkd", "multimodal", "text_only")
# One changed field per row, applied to `vkd`: beta, samples S, posterior inputs,
# prior-path loss weight, latent size (demo_scratch: 14, 1, text, 1, 64).
ABLATIONS = {
    "beta=0.14": {"train.beta": 0.14},
    "num_samples=4": {"model.num_samples": 4},
    "posterior_inputs=image_text": {"model.posterior_inputs": "image_text"},
    "prior_weight=0": {"train.prior_weight": 0.0},
    "latent_dim=16": {"model.latent_dim": 16},
}

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config",
    "configs/demo_scratch.py",
    "Config file (prereg: the base of studies/configs/prereg.py, configs/synthetic_bench.py).",
    lock_config=False,
)
flags.DEFINE_string("workdir", "/tmp/vkd-compare", "Root directory of the runs.")
flags.DEFINE_list("kinds", list(KINDS), "Model kinds to compare.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds (the synthetic data stays the same).")
flags.DEFINE_list("ablations", list(ABLATIONS), f"vkd ablations to run (of {', '.join(ABLATIONS)}); 'none' for none.")
flags.DEFINE_enum("study", "kinds", ["kinds", *STUDIES], "Which comparison (see the module docstring).")
flags.DEFINE_string(
    "record",
    None,
    "a pre-registered study: directory of the per-run summaries (commit it: finished runs are reused from "
    "it); default: the study's own, studies/results/<study>",
)
flags.DEFINE_list(
    "cells",
    None,
    "a pre-registered study: cells to run and tabulate (default: all, in the order of "
    "studies/configs/<study>.py's CELLS; the decision always covers them all)",
)
flags.DEFINE_list(
    "methods",
    None,
    "a pre-registered study: methods to run and tabulate (default: all of studies/configs/<study>.py's METHODS)",
)
flags.DEFINE_bool(
    "recorded_only",
    False,
    "a pre-registered study: train nothing; the tables and decision of the runs recorded so far",
)
flags.DEFINE_bool(
    "rerun_changed",
    False,
    "a pre-registered study: train again the recorded runs whose config has changed since (default: stop and "
    "name the fields)",
)


def make_config(base, kind: str, seed: int, changes: dict | None = None):
    """`base` for one run: its model kind, training seed and field changes."""
    config = base.copy_and_resolve_references()
    config.model.kind = kind
    config.seed = seed
    config.update_from_flattened_dict(changes or {})
    return config


def run_config(kind: str, seed: int, changes: dict | None = None):
    return make_config(FLAGS.config, kind, seed, changes)


def study_module():
    """The module of the study `--study` names (`STUDIES`)."""
    return STUDIES[FLAGS.study]


def record_dir() -> str:
    """`--record`, else the study's own record directory."""
    return FLAGS.record or study_module().GRID.record


def study_config(arg: str):
    """One run of the study: `studies/configs/<study>.py:<arg>`, with the command line's
    `--config.*` overrides (a frozen encoder's report features are shared through the
    machine's text-feature cache, `vkd_jax.runs.text_cache`)."""
    config = study_module().GRID.get_config(arg)
    config.update_from_flattened_dict(config_flags.get_override_values(FLAGS["config"]))
    return config


def check_study_base() -> None:
    """The studies' configs are built on configs/synthetic_bench.py: a `--config` naming another
    file would be silently ignored, so it is a usage error."""
    from configs import synthetic_bench

    if FLAGS["config"].present:
        path = config_flags.get_config_filename(FLAGS["config"])
        if not (os.path.exists(path) and os.path.samefile(path, synthetic_bench.__file__)):
            raise app.UsageError(
                f"--study={FLAGS.study} runs the configs of studies/configs/{FLAGS.study}.py, built on "
                f"configs/synthetic_bench.py: --config names that file (with any --config.* overrides) or is "
                f"left out, not {path}"
            )


def run_one(workdir: str, config) -> dict:
    from vkd_jax.runs import training

    done = os.path.join(workdir, "results.json")
    if os.path.exists(done):
        with open(done) as f:
            results = json.load(f)
        if "probability_error_auroc" in (results.get("uncertainty") or {}):
            return results
        logging.info("evaluating %s again (its results.json predates the full metrics)", workdir)
        return training.evaluate_checkpoint(config, workdir)
    logging.info("training (model kind %s, seed %d) in %s", config.model.kind, config.seed, workdir)
    return training.train_and_evaluate(config, workdir)


def _seeds(values) -> str:
    return ", ".join(f"{x:.4f}" for x in values)


def kinds_table(results: dict[str, list[dict]]) -> str:
    lines = [
        "| model | test macro AUROC, mean ± sd | per seed | macro AP | macro F1 (val thresholds) | ECE |",
        "|---|---|---|---|---|---|",
    ]
    for kind, runs in results.items():
        aucs = [r["macro_auc"] for r in runs]
        lines.append(
            f"| {kind} | {mean_sd(aucs)} | {_seeds(aucs)} | "
            f"{np.mean([r['average_precision']['macro'] for r in runs]):.4f} | "
            f"{np.mean([r['thresholded']['chosen']['macro']['f1'] for r in runs]):.4f} | "
            f"{np.mean([r['calibration']['ece'] for r in runs]):.4f} |"
        )
    class_names = list(next(iter(results.values()))[0]["per_class_auc"])
    lines += ["", "| finding | " + " | ".join(results) + " |", "|---" * (len(results) + 1) + "|"]
    for name in class_names:
        cells = []
        for runs in results.values():
            vals = [r["per_class_auc"][name] for r in runs if r["per_class_auc"][name] is not None]
            cells.append(f"{np.mean(vals):.3f}" if vals else "n/a")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ablation_table(base: list[dict] | None, ablations: dict[str, list[dict]]) -> str:
    lines = ["| vkd variant | test macro AUROC, mean ± sd | per seed | paired difference to vkd |", "|---|---|---|---|"]
    if base:
        lines.append(
            f"| vkd as configured | {mean_sd([r['macro_auc'] for r in base])} | "
            f"{_seeds([r['macro_auc'] for r in base])} | |"
        )
    for name, runs in ablations.items():
        aucs = [r["macro_auc"] for r in runs]
        diff = ""
        if base and len(base) == len(runs):
            d = np.subtract(aucs, [r["macro_auc"] for r in base])
            diff = f"{d.mean():+.4f} ({', '.join(f'{x:+.4f}' for x in d)})"
        lines.append(f"| `{name}` | {mean_sd(aucs)} | {_seeds(aucs)} | {diff} |")
    return "\n".join(lines)


def uncertainty_table(results: dict[str, list[dict]]) -> str:
    pct = f"{next(iter(results.values()))[0]['uncertainty']['refer_fraction']:.0%}"
    fields = [
        ("spread_error_auroc", "AUROC(spread, error)"),
        ("margin_error_auroc", "AUROC(margin, error)"),
        ("probability_error_auroc", "AUROC(stated error prob., error)"),
        ("accuracy", "label acc."),
        ("accuracy_after_referral", f"label acc., {pct} referred by spread"),
        ("accuracy_after_referral_margin", f"label acc., {pct} referred by margin"),
        ("accuracy_after_referral_probability", f"label acc., {pct} referred by stated error prob."),
        ("image_accuracy_after_referral", f"image acc., {pct} referred by spread"),
        ("image_accuracy_after_referral_probability", f"image acc., {pct} referred by stated error prob."),
    ]
    lines = ["| model | " + " | ".join(label for _, label in fields) + " |", "|---" * (len(fields) + 1) + "|"]
    for name, runs in results.items():
        cells = []
        for key, _ in fields:
            vals = [r["uncertainty"][key] for r in runs if r["uncertainty"][key] is not None]
            cells.append(mean_sd(vals) if vals else "n/a")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _study_runs(runs: list[plan.Run], train: bool = True) -> list[dict | None]:
    """The study's runs (record name parts, config argument, training seed): each one's recorded
    summary if this config already ran, else trained and recorded (None with `train=False`
    or `--recorded_only`).

    Every record is checked before any training starts, so a changed config stops the study
    at once (`records.ChangedRun`), not hours later, and never overwrites the evidence."""
    planned = []
    for name_parts, arg, _ in runs:
        config = study_config(arg)
        path = records.record_path(record_dir(), *name_parts)
        planned.append((name_parts, config, path, records.load_record(path, config, FLAGS.rerun_changed)))
    out = []
    for name_parts, config, path, rec in planned:
        if rec is None and (FLAGS.recorded_only or not train):
            out.append(None)
            continue
        if rec is None:
            rec = records.summary(run_one(os.path.join(FLAGS.workdir, *name_parts), config), config)
            records.save_record(path, rec)
        out.append(dict(rec, seed=config.seed))
    return out


def estimate(grid, record: str, cells, methods, seeds) -> str:
    """The expected time of `cells` x `methods` x `seeds` (None: each cell's grid seeds) and
    the tuning runs, from nothing, from the times of the runs recorded under `record`, each
    scaled to a 4,000-image run."""

    def size(num_train):  # a run's time in 4,000-image runs
        return max(num_train / 4000, 0.25)

    done = []
    for root, _, files in os.walk(record):
        for name in files:
            if name.endswith(".json") and name != "chosen.json":
                with open(os.path.join(root, name)) as f:
                    rec = json.load(f)
                done.append(rec["elapsed_s"] / size(rec["config"]["data"]["synthetic"]["num_train"]))
    per_run = float(np.median(done)) if done else 820.0  # the tuned recipe's 4,000-image run, 2 cores
    # The plan owns which seeds each cell runs; the settings change neither the count of the
    # runs nor their sizes, so any candidate stands in for the one the tuning chooses.
    runs = plan.cells_plan(grid, {m: next(iter(c)) for m, c in grid.tuning.items()}, cells, methods, seeds)
    todo = sum(size(grid.get_config(run.arg).data.synthetic.num_train) for *_, run in runs)
    tuning = plan.tuning_plan(grid)
    hours = (todo + sum(size(grid.get_config(run.arg).data.synthetic.num_train) for *_, run in tuning)) * per_run / 3600
    return (
        f"{len(runs)} runs + {len(tuning)} tuning runs, about {per_run:.0f} s per "
        f"4,000-image run ({len(done)} recorded): {hours:.1f} h from nothing; recorded runs are reused"
    )


def study_report() -> str:
    """Runs what the study still lacks of the selected part of its grid (none with
    `--recorded_only`), then its report: tuning, cells and the whole grid's decision."""
    check_study_base()
    study = study_module()
    grid = study.GRID
    cells = FLAGS.cells or list(grid.cells)
    methods = FLAGS.methods or list(grid.methods)
    seeds = [int(s) for s in FLAGS.seeds] if FLAGS["seeds"].present else None  # None: the grid's
    unknown = [c for c in cells if c not in grid.cells] + [m for m in methods if m not in grid.methods]
    if unknown:
        raise app.UsageError(
            f"unknown cells or methods {unknown}; cells: {list(grid.cells)}, methods: {list(grid.methods)}"
        )
    print(estimate(grid, record_dir(), cells, methods, seeds), flush=True)
    tuning = plan.tuning_plan(grid)
    trials = {method: {} for method in grid.tuning}
    for (method, name, _), rec in zip(tuning, _study_runs([run for *_, run in tuning])):
        if rec is None:
            raise app.UsageError(f"--recorded_only: tuning run {method}/{name} is not recorded yet")
        trials[method][name] = rec
    chosen = {method: plan.choose(trials[method]) for method in trials}
    if not FLAGS.recorded_only:
        records.save_record(os.path.join(record_dir(), "chosen.json"), chosen)
    planned = plan.cells_plan(grid, chosen, cells, methods, seeds)
    # The decision is the whole grid's, whatever part of it `--cells`, `--methods` and
    # `--seeds` select: the grid's other records are read (and checked, before any training).
    selected = {run.parts for *_, run in planned}
    others = [run for *_, run in plan.cells_plan(grid, chosen, grid.cells, grid.methods)]
    others = [run for run in others if run.parts not in selected]
    recorded = dict(zip([run.parts for run in others], _study_runs(others, train=False)))
    results = {cell: {method: [] for method in methods} for cell in cells}
    for (cell, method, run), rec in zip(planned, _study_runs([run for *_, run in planned])):
        recorded[run.parts] = rec
        if rec is not None:
            results[cell][method].append(rec)
    results = {cell: {m: rs for m, rs in runs.items() if rs} for cell, runs in results.items()}
    return study.report(trials, chosen, results, recorded)


def study_command() -> str:
    """`study_report`, its ways of stopping as a command's: a changed record is one `error:`
    line (exit status 2); a SIGTERM (the run in progress saved a checkpoint) says how to
    resume and exits with the preempted status, like `run.py`."""
    from vkd_jax import cli, errors

    try:
        return study_report()
    except records.ChangedRun as e:
        cli.fail(str(e))
    except errors.Preempted as e:
        print(f"{e}; the study's command, run again, resumes it and reuses every recorded run", file=sys.stderr)
        sys.exit(cli.PREEMPTED_EXIT_CODE)


def main(argv):
    del argv
    from vkd_jax.runs import log

    log.quiet_library_logs()
    if FLAGS.study in STUDIES:
        text = study_command()
        os.makedirs(FLAGS.workdir, exist_ok=True)
        with open(os.path.join(FLAGS.workdir, f"{FLAGS.study}.md"), "w") as f:
            f.write(text + "\n")
        print(text)
        return
    unknown = [a for a in FLAGS.ablations if a not in ABLATIONS and a != "none"]
    if unknown:
        raise app.UsageError(f"unknown ablations {unknown}; choose from {list(ABLATIONS)}")
    seeds = [int(s) for s in FLAGS.seeds]
    results = {
        kind: [run_one(os.path.join(FLAGS.workdir, kind, f"seed{s}"), run_config(kind, s)) for s in seeds]
        for kind in FLAGS.kinds
    }
    ablations = {
        name: [
            run_one(
                os.path.join(FLAGS.workdir, "ablations", name, "vkd", f"seed{s}"), run_config("vkd", s, ABLATIONS[name])
            )
            for s in seeds
        ]
        for name in FLAGS.ablations
        if name != "none"
    }
    parts = ["## Model kinds", "", kinds_table(results)]
    if ablations:
        parts += ["", "## Ablations of vkd", "", ablation_table(results.get("vkd"), ablations)]
    unc = dict(results) | {f"vkd, {name}": runs for name, runs in ablations.items()}
    parts += ["", "## Uncertainty (test split; errors at the validation-chosen thresholds)", "", uncertainty_table(unc)]
    text = "\n".join(parts)
    os.makedirs(FLAGS.workdir, exist_ok=True)
    with open(os.path.join(FLAGS.workdir, "comparison.md"), "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    app.run(main)
