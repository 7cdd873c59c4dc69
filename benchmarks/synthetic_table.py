"""The README's results table: every model kind over several seeds on one config.

    python benchmarks/synthetic_table.py --config=configs/demo.py --workdir=/tmp/vkd-table

Each (kind, seed) trains in `<workdir>/<kind>/seed<seed>` (a finished run is reused, an
interrupted one resumes), then a markdown table of test macro AUROC (mean and standard
deviation over seeds) and per-class AUROC is printed and written to `<workdir>/table.md`.
Config fields can be overridden as in run.py (`--config.train.num_epochs=3`).
"""

import json
import os
import sys

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

# The config files import `configs.default` from the repository root.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/demo.py", "Config file.", lock_config=False)
flags.DEFINE_string("workdir", "/tmp/vkd-table", "Root directory of the runs.")
flags.DEFINE_list("kinds", ["image_only", "vkd", "multimodal", "text_only"], "Model kinds to compare.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds (the synthetic data stays the same).")


def run_one(kind: str, seed: int) -> dict:
    from vkd_jax import experiment

    workdir = os.path.join(FLAGS.workdir, kind, f"seed{seed}")
    done = os.path.join(workdir, "results.json")
    if os.path.exists(done):
        with open(done) as f:
            return json.load(f)
    config = FLAGS.config.copy_and_resolve_references()
    config.model.kind = kind
    config.seed = seed
    # A frozen pretrained encoder's report features are the same for every run: share them.
    config.model.text_encoder.cache_dir = config.model.text_encoder.cache_dir or os.path.join(
        FLAGS.workdir, "text_features")
    logging.info("training %s, seed %d, in %s", kind, seed, workdir)
    return experiment.train_and_evaluate(config, workdir)


def table(results: dict[str, list[dict]]) -> str:
    class_names = list(next(iter(results.values()))[0]["per_class_auc"])
    lines = ["| model | test macro AUROC, mean ± sd | per seed |", "|---|---|---|"]
    for kind, runs in results.items():
        aucs = np.array([r["macro_auc"] for r in runs], float)
        sd = aucs.std(ddof=1) if len(aucs) > 1 else 0.0
        lines.append(f"| {kind} | {aucs.mean():.4f} ± {sd:.4f} | {', '.join(f'{a:.4f}' for a in aucs)} |")
    lines += ["", "| finding | " + " | ".join(results) + " |", "|---" * (len(results) + 1) + "|"]
    for name in class_names:
        cells = []
        for runs in results.values():
            vals = [r["per_class_auc"][name] for r in runs if r["per_class_auc"][name] is not None]
            cells.append(f"{np.mean(vals):.3f}" if vals else "n/a")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    from vkd_jax import log

    log.quiet_library_logs()
    results = {kind: [run_one(kind, int(s)) for s in FLAGS.seeds] for kind in FLAGS.kinds}
    text = table(results)
    os.makedirs(FLAGS.workdir, exist_ok=True)
    with open(os.path.join(FLAGS.workdir, "table.md"), "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    app.run(main)
