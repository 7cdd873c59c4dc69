"""The paper's comparison in one command: every model kind over several seeds, plus vkd ablations.

    python benchmarks/compare.py --config=configs/demo_scratch.py --workdir=/tmp/vkd-compare

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

# The config files import `configs.default` from the repository root.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

KINDS = ("image_only", "vkd", "multimodal", "text_only")
# One changed field per row, applied to `vkd`: KL weight, samples S, posterior inputs,
# prior-path loss weight, latent size (demo_scratch: 1, 1, text, 1, 64).
ABLATIONS = {
    "kl_weight=0.01": {"train.kl_weight": 0.01},
    "num_samples=4": {"model.num_samples": 4},
    "posterior_inputs=image_text": {"model.posterior_inputs": "image_text"},
    "prior_weight=0": {"train.prior_weight": 0.0},
    "latent_dim=16": {"model.latent_dim": 16},
}

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/demo_scratch.py", "Config file.", lock_config=False)
flags.DEFINE_string("workdir", "/tmp/vkd-compare", "Root directory of the runs.")
flags.DEFINE_list("kinds", list(KINDS), "Model kinds to compare.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds (the synthetic data stays the same).")
flags.DEFINE_list("ablations", list(ABLATIONS), f"vkd ablations to run (of {', '.join(ABLATIONS)}); "
                                                "'none' for none.")


def run_config(kind: str, seed: int, changes: dict | None = None):
    config = FLAGS.config.copy_and_resolve_references()
    config.model.kind = kind
    config.seed = seed
    config.update_from_flattened_dict(changes or {})
    # A frozen pretrained encoder's report features are the same for every run: share them.
    config.model.text_encoder.cache_dir = config.model.text_encoder.cache_dir or os.path.join(
        FLAGS.workdir, "text_features")
    return config


def run_one(workdir: str, config) -> dict:
    from vkd_jax import experiment

    done = os.path.join(workdir, "results.json")
    if os.path.exists(done):
        with open(done) as f:
            results = json.load(f)
        if "probability_error_auroc" in (results.get("uncertainty") or {}):
            return results
        logging.info("evaluating %s again (its results.json predates the full metrics)", workdir)
        return experiment.evaluate_checkpoint(config, workdir)
    logging.info("training %s, seed %d, in %s", config.model.kind, config.seed, workdir)
    return experiment.train_and_evaluate(config, workdir)


def _mean_sd(values) -> str:
    v = np.asarray(values, float)
    return f"{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.4f}"


def _seeds(values) -> str:
    return ", ".join(f"{x:.4f}" for x in values)


def kinds_table(results: dict[str, list[dict]]) -> str:
    lines = ["| model | test macro AUROC, mean ± sd | per seed | macro AP | macro F1 (val thresholds) | ECE |",
             "|---|---|---|---|---|---|"]
    for kind, runs in results.items():
        aucs = [r["macro_auc"] for r in runs]
        lines.append(f"| {kind} | {_mean_sd(aucs)} | {_seeds(aucs)} | "
                     f"{np.mean([r['average_precision']['macro'] for r in runs]):.4f} | "
                     f"{np.mean([r['thresholded']['chosen']['macro']['f1'] for r in runs]):.4f} | "
                     f"{np.mean([r['calibration']['ece'] for r in runs]):.4f} |")
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
    lines = ["| vkd variant | test macro AUROC, mean ± sd | per seed | paired difference to vkd |",
             "|---|---|---|---|"]
    if base:
        lines.append(f"| vkd as configured | {_mean_sd([r['macro_auc'] for r in base])} | "
                     f"{_seeds([r['macro_auc'] for r in base])} | |")
    for name, runs in ablations.items():
        aucs = [r["macro_auc"] for r in runs]
        diff = ""
        if base and len(base) == len(runs):
            d = np.subtract(aucs, [r["macro_auc"] for r in base])
            diff = f"{d.mean():+.4f} ({', '.join(f'{x:+.4f}' for x in d)})"
        lines.append(f"| `{name}` | {_mean_sd(aucs)} | {_seeds(aucs)} | {diff} |")
    return "\n".join(lines)


def uncertainty_table(results: dict[str, list[dict]]) -> str:
    pct = f"{next(iter(results.values()))[0]['uncertainty']['refer_fraction']:.0%}"
    fields = [("spread_error_auroc", "AUROC(spread, error)"), ("margin_error_auroc", "AUROC(margin, error)"),
              ("probability_error_auroc", "AUROC(stated error prob., error)"),
              ("accuracy", "label acc."), ("accuracy_after_referral", f"label acc., {pct} referred by spread"),
              ("accuracy_after_referral_margin", f"label acc., {pct} referred by margin"),
              ("accuracy_after_referral_probability", f"label acc., {pct} referred by stated error prob."),
              ("image_accuracy_after_referral", f"image acc., {pct} referred by spread"),
              ("image_accuracy_after_referral_probability", f"image acc., {pct} referred by stated error prob.")]
    lines = ["| model | " + " | ".join(label for _, label in fields) + " |", "|---" * (len(fields) + 1) + "|"]
    for name, runs in results.items():
        cells = []
        for key, _ in fields:
            vals = [r["uncertainty"][key] for r in runs if r["uncertainty"][key] is not None]
            cells.append(_mean_sd(vals) if vals else "n/a")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    from vkd_jax import log

    log.quiet_library_logs()
    unknown = [a for a in FLAGS.ablations if a not in ABLATIONS and a != "none"]
    if unknown:
        raise app.UsageError(f"unknown ablations {unknown}; choose from {list(ABLATIONS)}")
    seeds = [int(s) for s in FLAGS.seeds]
    results = {kind: [run_one(os.path.join(FLAGS.workdir, kind, f"seed{s}"), run_config(kind, s)) for s in seeds]
               for kind in FLAGS.kinds}
    ablations = {name: [run_one(os.path.join(FLAGS.workdir, "ablations", name, "vkd", f"seed{s}"),
                                run_config("vkd", s, ABLATIONS[name])) for s in seeds]
                 for name in FLAGS.ablations if name != "none"}
    parts = ["## Model kinds", "", kinds_table(results)]
    if ablations:
        parts += ["", "## Ablations of vkd", "", ablation_table(results.get("vkd"), ablations)]
    unc = dict(results) | {f"vkd, {name}": runs for name, runs in ablations.items()}
    parts += ["", "## Uncertainty (test split; errors at the validation-chosen thresholds)", "",
              uncertainty_table(unc)]
    text = "\n".join(parts)
    os.makedirs(FLAGS.workdir, exist_ok=True)
    with open(os.path.join(FLAGS.workdir, "comparison.md"), "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    app.run(main)
