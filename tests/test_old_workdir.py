"""A workdir written before the modules moved (issue 34) still evaluates, predicts and resumes.

`tests/data/workdir_60fcd5b` is a tiny training (the `e2e.TINY` set-up, one epoch of 8 steps,
one device) written by main at 60fcd5b, the last commit of the flat `vkd_jax/` layout: its
config.json, model_info.json, thresholds.json, tokenizer and the checkpoint of step 8 (orbax).
Its dataset is rebuilt from the same config in the shared `data_dir`.
"""

import os
import shutil

import numpy as np
from PIL import Image

from tests import e2e

OLD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "workdir_60fcd5b")


def test_an_old_workdir_evaluates_predicts_and_resumes(data_dir, tmp_path):
    workdir = tmp_path / "old"
    shutil.copytree(OLD, workdir)
    data = f"--config.data.data_dir={data_dir}"

    # Resuming first builds the dataset (tfds) in data_dir, as the old training did.
    proc = e2e.run_py(["--config.train.num_epochs=2"], data_dir, workdir, devices=1)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert "resumed from the checkpoint at step 8" in out, out
    assert e2e.load_json(workdir / "results.json")["checkpoint_step"] in (8, 16)

    shutil.rmtree(workdir)
    shutil.copytree(OLD, workdir)
    evaluated = e2e.run_mode([f"--workdir={workdir}", "--mode=eval", data])
    assert evaluated.returncode == 0, evaluated.stderr
    results = e2e.load_json(workdir / "results.json")
    assert results["checkpoint_step"] == 8 and results["num_examples"] == 96

    image = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40), np.uint8)).save(image)
    predicted = e2e.run_mode([f"--workdir={workdir}", "--mode=predict", f"--input={image}"])
    assert predicted.returncode == 0, predicted.stderr
    assert "wrote 1 prediction(s)" in predicted.stdout, predicted.stdout + predicted.stderr
