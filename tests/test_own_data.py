"""`python -m benchmarks.own_data`: synthetic examples exported to PNG + CSV, built with
`--dataset=csv`, trained and evaluated (tiny model, a few steps), in a subprocess."""

import csv
import json
import os
import subprocess
import sys

from data_pipelines import labels as L
from data_pipelines.synthetic_cxr import generator
from tests.test_real_configs_run import ROOT, TINY


def test_exported_table_builds_trains_and_evaluates(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.own_data",
        f"--workdir={tmp_path}",
        "--num_examples=40",
        "--workers=1",
        "--config=configs/demo_scratch.py",
        *TINY,
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sum(summary["examples"].values()) if isinstance(summary["examples"], dict) else summary["examples"]
    with open(tmp_path / "run" / "results.json") as f:
        results = json.load(f)
    assert results["dataset"] == "csv" and len(results["per_class_auc"]) == 14
    # The export is the generator's examples: row 3 holds example 3's report and labels.
    with open(tmp_path / "export" / "table.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    ex = generator.generate_example(3, image_size=32)
    assert rows[3]["report"] == ex["report"] and rows[3]["path"] == f"{ex['subject_id']}/{ex['study_id']}.png"
    assert [L.parse_chexpert_value(rows[3][name]) for name in L.CLASS_NAMES] == ex["labels"].tolist()
    with open(
        tmp_path / "tfds" / "csv" / os.listdir(tmp_path / "tfds" / "csv")[0] / "1.0.0" / "build_report.json"
    ) as f:
        report = json.load(f)
    assert sum(report["examples"].values()) == 40 and report["skipped"] == {}
