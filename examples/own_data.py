r"""Your own data, end to end: synthetic_cxr examples exported as PNG files and a CSV table
(as a hospital export would come), built with `--dataset=csv`, trained and evaluated.

    python -m examples.own_data --workdir=/tmp/own-data [--num_examples=2000] \
        [--config=configs/demo.py] [--config.train.num_epochs=3]

Writes <workdir>/export/{images/,table.csv}, the build in <workdir>/tfds and the run in
<workdir>/run (results.json, report.md); prints the build report and the test AUROC.
Finished steps are reused: a rerun resumes the training and skips the export and build.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from data_pipelines import build, images, labels as labels_lib
from data_pipelines.synthetic_cxr import generator

FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Only when run as a command: tests import this module beside others with `--config`."""
    config_flags.DEFINE_config_file("config", "configs/demo.py", "Training config; its data section is replaced.")
    flags.DEFINE_string("workdir", None, "Where the export, the build and the run go.", required=True)
    flags.DEFINE_integer("num_examples", 2000, "synthetic_cxr examples to export (split by patient 70/10/20).")
    flags.DEFINE_integer("workers", os.cpu_count() or 1, "Image preprocessing processes of the build.")


HEADER = ["path", "patient_id", "study", "report", *labels_lib.CLASS_NAMES]
# The build options of the export, as `data.csv` fields and the build command's flags.
OPTIONS = dict(table="table.csv", image_root="images", study_column="study", tag="own_data")


def _cell(code: int) -> str:
    return "" if code == labels_lib.NOT_MENTIONED else str(int(code))


def export(out_dir: str, num_examples: int, *, image_size: int = 64, seed: int = 0) -> str:
    """Writes `num_examples` synthetic_cxr examples as `images/<patient>/<study>.png` and
    `table.csv` (path, patient_id, study, report, the 14 CheXpert columns as 1/0/-1/blank)
    under `out_dir`, once; returns the table's path."""
    import csv

    table = os.path.join(out_dir, OPTIONS["table"])
    if os.path.exists(table):
        return table
    rows = []
    for i in range(num_examples):
        ex = generator.generate_example(i, seed=seed, image_size=image_size)
        path = f"{ex['subject_id']}/{ex['study_id']}.png"
        target = os.path.join(out_dir, OPTIONS["image_root"], path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(images.encode_png(ex["image"]))
        rows.append([path, ex["subject_id"], ex["study_id"], ex["report"], *map(_cell, ex["labels"])])
    with open(table + ".tmp", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(rows)
    os.replace(table + ".tmp", table)  # Its presence means the export is complete.
    return table


def build_export(manual_dir: str, data_dir: str, image_size: int, workers: int = 1) -> int:
    """`python -m data_pipelines.build --dataset=csv` on the export; its exit status."""
    return build.main(
        [
            "--dataset=csv",
            f"--manual_dir={manual_dir}",
            f"--data_dir={data_dir}",
            f"--image_size={image_size}",
            f"--workers={workers}",
            *[f"--{k}={v}" for k, v in OPTIONS.items()],
        ]
    )


def train_config(config, data_dir: str):
    """`config` reading the export's build."""
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.data.name = "csv"
        config.data.data_dir = data_dir
        config.data.build_size = None
        config.data.csv.update(OPTIONS)
    return config


def main(argv) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    manual_dir = os.path.join(FLAGS.workdir, "export")
    data_dir = os.path.join(FLAGS.workdir, "tfds")
    config = train_config(FLAGS.config, data_dir)
    export(manual_dir, FLAGS.num_examples, image_size=config.data.image_size)
    print(f"exported {FLAGS.num_examples} examples to {manual_dir}", flush=True)
    if build_export(manual_dir, data_dir, config.data.image_size, FLAGS.workers) != 0:
        return 2

    from vkd_jax.runs import log, training

    log.quiet_library_logs()
    results = training.train_and_evaluate(config, os.path.join(FLAGS.workdir, "run"))
    summary = {
        "examples": results["num_examples"],
        "model": results["model"],
        "test_macro_auroc": round(results["macro_auc"], 4),
        "workdir": os.path.join(FLAGS.workdir, "run"),
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    _define_flags()
    app.run(lambda argv: sys.exit(main(argv)))
