"""End to end through run.py, in subprocesses: train, evaluate, results.json; kill and resume;
the MIMIC config without data. Small synthetic data, tiny models, a few dozen steps."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.e2e import ROOT, load_json, run_mode


def test_demo_trains_evaluates_and_writes_results(trained):
    workdir, out = trained
    results = load_json(workdir / "results.json")
    for key in (
        "model",
        "dataset",
        "split",
        "num_examples",
        "macro_auc",
        "micro_auc",
        "per_class_auc",
        "config",
        "elapsed_s",
        "auc_ci",
        "average_precision",
        "thresholded",
        "ranking",
        "calibration",
        "uncertainty",
        "environment",
    ):
        assert key in results, key
    assert results["model"] == "vkd" and results["dataset"] == "synthetic_cxr" and results["split"] == "test"
    assert results["num_examples"] == 96  # every test example scored once, padding dropped
    assert len(results["per_class_auc"]) == 14
    assert 0 <= results["macro_auc"] <= 1
    assert results["config"]["train"]["batch_size"] == 32
    assert "validation macro AUROC" in out and "steps_per_s" in out
    assert os.listdir(workdir / "tensorboard")
    assert results["checkpoint_step"] in (8, 16)  # the best of the two validations


def _report_rows(path) -> dict[str, list[str]]:
    """First column -> the other cells, for every table row of a markdown report."""
    rows = {}
    for line in path.read_text().splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def _check_report(results: dict, report_path, figures_dir) -> None:
    rows = _report_rows(report_path)
    f4 = lambda x: "n/a" if x is None else f"{x:.4f}"  # noqa: E731
    ci = results["auc_ci"]
    assert rows["macro AUROC"][:2] == [f4(results["macro_auc"]), f"[{ci['macro'][0]:.4f}, {ci['macro'][1]:.4f}]"]
    assert rows["micro AUROC"][0] == f4(results["micro_auc"])
    assert rows["macro average precision"][0] == f4(results["average_precision"]["macro"])
    assert rows["macro f1 at threshold 0.5"][0] == f4(results["thresholded"]["0.5"]["macro"]["f1"])
    assert rows["micro recall at threshold youden (val)"][0] == f4(results["thresholded"]["chosen"]["micro"]["recall"])
    assert rows["coverage error"][0] == f4(results["ranking"]["coverage_error"])
    assert rows["expected calibration error (15 bins)"][0] == f4(results["calibration"]["ece"])
    assert rows["Brier score"][0] == f4(results["calibration"]["brier"])
    assert rows["AUROC of the spread for detecting errors"][0] == f4(results["uncertainty"]["spread_error_auroc"])
    chosen = results["thresholded"]["chosen"]
    for name, auc in results["per_class_auc"].items():
        cells = rows[name]
        assert cells[0] == f4(auc), name
        assert cells[2] == f4(results["average_precision"]["per_class"][name]), name
        assert cells[3] == f4(chosen["thresholds"][name]), name
        assert cells[6] == f4(chosen["per_class"][name]["f1"]), name
        assert cells[7] == str(chosen["per_class"][name]["support"]), name
    for name in ("roc_curves.png", "reliability.png", "training_curves.png"):
        assert (figures_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"{figures_dir.name}/{name}" in report_path.read_text()


def test_training_ends_with_a_report_and_figures(trained):
    workdir, _ = trained
    _check_report(load_json(workdir / "results.json"), workdir / "report.md", workdir / "figures")


def test_eval_mode_restores_the_best_checkpoint(trained, data_dir):
    workdir, _ = trained
    proc = run_mode([f"--workdir={workdir}", "--mode=eval", "--split=validation"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = load_json(workdir / "results_validation.json")
    assert results["split"] == "validation" and results["num_examples"] == 64
    assert results["checkpoint_step"] == load_json(workdir / "results.json")["checkpoint_step"]
    # The same checkpoint, batches and latent noise as the validation that ranked it best.
    assert results["macro_auc"] == pytest.approx(results["val_macro_auc"], abs=1e-6)
    _check_report(results, workdir / "report_validation.md", workdir / "figures_validation")


def test_predict_mode_on_a_folder_with_a_corrupt_file(trained, tmp_path):
    from PIL import Image

    workdir, _ = trained
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (80, 64), np.uint8)).save(images / "a.png")
    Image.fromarray(rng.integers(0, 256, (50, 50), np.uint8)).convert("RGB").save(images / "sub" / "b.JPG")
    Image.fromarray(rng.integers(0, 65535, (40, 40)).astype(np.uint16)).save(images / "c.png")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(100))
    (images / "notes.txt").write_text("not an image")
    out_csv = tmp_path / "preds.csv"
    proc = run_mode([f"--workdir={workdir}", "--mode=predict", f"--input={images}", f"--output={out_csv}"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "broken.png" in proc.stdout and "skipped 1 file" in proc.stdout
    with open(out_csv) as f:
        rows = list(csv.DictReader(f))
    assert [os.path.relpath(r["path"], images) for r in rows] == ["a.png", "c.png", os.path.join("sub", "b.JPG")]
    class_names = list(load_json(workdir / "results.json")["per_class_auc"])
    for row in rows:
        probs = np.array([float(row[c]) for c in class_names])
        sds = np.array([float(row[f"{c}_sd"]) for c in class_names])
        assert ((probs > 0) & (probs < 1)).all() and (sds >= 0).all() and sds.max() > 0
    assert len({tuple(r.values())[1:] for r in rows}) == 3  # different images, different predictions


def test_mimic_without_data_stops_with_a_clear_message(tmp_path):
    env = dict(os.environ, TFDS_DATA_DIR=str(tmp_path / "empty"))
    proc = subprocess.run(
        [
            sys.executable,
            "run.py",
            "--config=configs/mimic.py",
            f"--workdir={tmp_path / 'w'}",
            f"--config.data.data_dir={tmp_path / 'empty'}",
            "--config.model.text_encoder.tokenizer=/nonexistent",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "mimic_cxr" in proc.stderr and "data_pipelines.build" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
