"""The two report-details methods and the control train end to end through run.py (a few steps)."""

import pytest

from tests.e2e import load_json, run_mode, run_py

FEW_STEPS = [
    "--config.train.max_steps=3",
    "--config.train.log_every_steps=1",
    "--config.eval.bootstrap_samples=0",
    "--config.eval.figures=False",
]


@pytest.mark.parametrize(
    "method",
    [
        ["--config.model.kind=image_only", "--config.model.details_from=image"],
        ["--config.model.kind=vkd", "--config.model.details_from=posterior"],
    ],
    ids=["image_only_details", "vkd_details"],
)
def test_a_details_method_trains_logs_its_term_and_restores(method, data_dir, tmp_path):
    proc = run_py([*FEW_STEPS, *method, "--config.train.details_weight=0.5"], data_dir, tmp_path, devices=1)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert "report details: 256 studies" in out
    results = load_json(tmp_path / "results.json")
    final = results["final_train"]["metrics"]
    assert final["bce_details"] > 0 and final["loss"] > 0, final
    assert 0 <= results["macro_auc"] <= 1
    if "--config.model.kind=vkd" not in method:
        return  # one restore is enough (the no-report control's paths: tests/test_train.py)
    # The model restored from the workdir's config is built with its training-only head, so
    # the checkpoint fits; evaluation reads the image alone.
    proc = run_mode([f"--workdir={tmp_path}", "--mode=eval", "--split=validation"], devices=1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert load_json(tmp_path / "results_validation.json")["checkpoint_step"] == results["checkpoint_step"]
