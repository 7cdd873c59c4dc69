"""Predict mode: a safe output, predictions that depend on the image alone, calls at the
thresholds saved with the model, escaped CSV cells, a progress line at the end. The end-to-end
tests run `run.py --mode=predict` on the shared tiny training (`trained`)."""

import csv
import io
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.e2e import load_json, run_mode
from vkd_jax.runs import workdir as wd
from vkd_jax.serving import predict


def _images(folder, n: int, seed: int = 0) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        paths.append(str(folder / f"{i}.png"))
        Image.fromarray(rng.integers(0, 256, (48, 40), np.uint8)).save(paths[-1])
    return paths


def _rows(path) -> dict[str, dict[str, str]]:
    with open(path) as f:
        return {os.path.basename(r["path"]): r for r in csv.DictReader(f)}


def _error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def test_a_bad_output_is_refused_before_the_model_loads(trained, tmp_path):
    workdir, _ = trained
    paths = _images(tmp_path / "in", 2)
    before = open(paths[0], "rb").read()
    (tmp_path / "file").write_text("x")
    for output, message in (
        (paths[0], "is one of the input images"),  # overwritten by the CSV (rc 0) before
        (tmp_path / "in", "is a directory"),
        (tmp_path / "file" / "preds.csv", "cannot be written"),
    ):
        proc = run_mode(
            [f"--workdir={workdir}", "--mode=predict", f"--input={tmp_path / 'in'}", f"--output={output}"],
            report_tensorflow=True,
        )
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stderr.rstrip().endswith("tensorflow imported: False"), proc.stderr[-2000:]
        proc.stderr = proc.stderr.rstrip().rsplit("\n", 1)[0]
        assert message in _error_line(proc.stderr)
        assert "restored the checkpoint" not in proc.stderr
    assert open(paths[0], "rb").read() == before
    assert sorted(os.listdir(tmp_path / "in")) == ["0.png", "1.png"]  # no temporary file left


def test_a_prediction_depends_on_the_image_alone(trained, tmp_path):
    """The same file alone, at rows 0 and 5 of a batch of 8, and in batches of 3 on one device."""
    workdir, _ = trained
    paths = _images(tmp_path / "in", 8)
    shutil.copy(paths[0], paths[5])
    shutil.copy(paths[0], tmp_path / "alone.png")
    runs = {
        "batch8": [f"--input={tmp_path / 'in'}", "--config.train.eval_batch_size=8"],
        "batch3": [f"--input={tmp_path / 'in'}", "--config.train.eval_batch_size=3", "--config.num_devices=1"],
        "alone": [f"--input={tmp_path / 'alone.png'}"],
    }
    rows = {}
    for name, args in runs.items():
        out = tmp_path / f"{name}.csv"
        proc = run_mode([f"--workdir={workdir}", "--mode=predict", f"--output={out}", *args], report_tensorflow=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        # Predicting reads image files: no tf.data, so no TensorFlow (the GPU machines have none).
        assert proc.stderr.rstrip().endswith("tensorflow imported: False"), proc.stderr[-2000:]
        rows[name] = _rows(out)
        n = 1 if name == "alone" else 8  # the shared progress lines (data_pipelines.progress), last one at the end
        assert f"predicting: {n} file(s) in " in proc.stderr, proc.stderr[-2000:]
    numbers = [k for k in rows["alone"]["alone.png"] if k not in ("path", "warnings")]

    def values(row):
        return np.array([float(row[k]) for k in numbers])

    # The CSV keeps 6 decimals; batches of other shapes are other compiled programs, whose float32
    # results may differ by ~1e-8, which can flip the last printed digit: 2e-6, not 1e-6.
    # (Position-keyed noise, the bug this guards against, moved probabilities by up to 0.15.)
    reference = values(rows["alone"]["alone.png"])
    for run, file in (("batch8", "0.png"), ("batch8", "5.png"), ("batch3", "0.png"), ("batch3", "5.png")):
        np.testing.assert_allclose(values(rows[run][file]), reference, rtol=0, atol=2e-6, err_msg=f"{run} {file}")
    for file in ("1.png", "7.png"):  # and any other image, whatever its batch size
        np.testing.assert_allclose(values(rows["batch8"][file]), values(rows["batch3"][file]), rtol=0, atol=2e-6)
    assert not np.allclose(values(rows["batch8"]["1.png"]), reference)


def _check_calls(rows: dict, thresholds: dict[str, float]) -> None:
    for row in rows.values():
        for name, t in thresholds.items():
            p = float(row[name])
            if abs(p - t) > 1e-6:  # the CSV rounds to 6 decimals; the call compares the full value
                assert row[f"{name}_call"] == str(int(p >= t)), (name, p, t)


def test_calls_at_the_thresholds_saved_with_the_model(trained, tmp_path):
    workdir, _ = trained
    saved = load_json(workdir / wd.THRESHOLDS)
    results = load_json(workdir / "results.json")
    assert saved["method"] == results["threshold_method"] and saved["split"] == "validation"
    assert saved["checkpoint_step"] == results["checkpoint_step"]
    assert list(saved["thresholds"]) == list(results["per_class_auc"])
    _images(tmp_path / "in", 6)
    out = tmp_path / "preds.csv"
    proc = run_mode([f"--workdir={workdir}", "--mode=predict", f"--input={tmp_path / 'in'}", f"--output={out}"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = _rows(out)
    assert len(rows) == 6 and all(f"{c}_call" in rows["0.png"] for c in saved["thresholds"])
    _check_calls(rows, saved["thresholds"])
    assert "no saved thresholds" not in proc.stderr

    old = tmp_path / "old"  # a run from before the thresholds were saved: 0.5, said once
    shutil.copytree(workdir, old)
    os.remove(old / wd.THRESHOLDS)
    proc = run_mode([f"--workdir={old}", "--mode=predict", f"--input={tmp_path / 'in'}", f"--output={out}"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr.count("no saved thresholds") == 1
    _check_calls(_rows(out), dict.fromkeys(saved["thresholds"], 0.5))


def test_thresholds_file_round_trip_and_damage(tmp_path):
    assert wd.read_thresholds(str(tmp_path)) is None
    wd.write_thresholds(str(tmp_path), {"A": 0.25, "B": 0.5}, method="youden", split="validation", step=16)
    saved = wd.read_thresholds(str(tmp_path))
    assert saved == {
        "method": "youden",
        "split": "validation",
        "checkpoint_step": 16,
        "thresholds": {"A": 0.25, "B": 0.5},
    }
    (tmp_path / wd.THRESHOLDS).write_text(json.dumps({"thresholds": {"A": "high"}}))
    with pytest.raises(wd.RunFileError, match="thresholds.json"):
        wd.read_thresholds(str(tmp_path))
    (tmp_path / wd.THRESHOLDS).write_text("{")
    with pytest.raises(wd.RunFileError, match="mode=eval"):
        wd.read_thresholds(str(tmp_path))


def test_a_cell_that_starts_a_formula_is_escaped_and_quoted():
    out = io.StringIO()
    writer = predict.csv_writer(out)
    for name in ("=1+2.png", "+a.png", "-a.png", "@SUM(A1).png", "\tb.png", "a=b.png", "x/-y.png"):
        writer.writerow([predict._text_cell(name), 0.25, 1])
    assert out.getvalue().splitlines() == [
        '"\'=1+2.png",0.25,1',
        '"\'+a.png",0.25,1',
        '"\'-a.png",0.25,1',
        '"\'@SUM(A1).png",0.25,1',
        '"\'\tb.png",0.25,1',
        '"a=b.png",0.25,1',
        '"x/-y.png",0.25,1',
    ]
