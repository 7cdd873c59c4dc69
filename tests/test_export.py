"""Export mode: the artifact of the shared tiny training (`trained`) loads in a fresh process
with the requirements model.json lists and reproduces predict mode's outputs at any batch size; a non-empty
output and a workdir without checkpoints are refused with one `error:` line."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

from tests.e2e import load_json, run_mode
from vkd_jax.runs import workdir as wd
from vkd_jax.serving import export

# A fresh interpreter: the artifact's load.py alone (never vkd_jax, flax or TensorFlow).
_LOAD = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import load
model = load.load(sys.argv[1])
images = np.load(sys.argv[2])
outs = [model.predict(images), model.predict(images[:2]), model.predict(images[3])]
loaded = [m for m in ("flax", "tensorflow", "vkd_jax") if m in sys.modules]
print(json.dumps({"loaded": loaded, "outs": [{k: v.tolist() for k, v in o.items()} for o in outs]}))
"""


def _images(folder, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        paths.append(str(folder / f"{i}.png"))
        Image.fromarray(rng.integers(0, 256, (48, 40), np.uint8)).save(paths[-1])
    return paths


def _error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def _model_inputs(paths, stored_size: int, size: int) -> np.ndarray:
    """Predict mode's images before the normalisation: read as it reads them, then its resize."""
    from data_pipelines import user_images

    _, stored, failed = user_images.load_images(paths, stored_size)
    assert not failed
    images = stored.astype(np.float32)
    if stored_size != size:
        import tensorflow as tf

        images = tf.image.resize(images, [size, size], antialias=True).numpy()
    return images


def test_the_artifact_reproduces_predict_mode_without_the_project(trained, tmp_path):
    workdir, _ = trained
    out_dir = tmp_path / "artifact"
    proc = run_mode([f"--workdir={workdir}", "--mode=export", f"--output={out_dir}"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(os.listdir(out_dir)) == ["data_pipelines", export.LOADER, export.MODEL, export.INFO]
    assert sorted(os.listdir(out_dir / "data_pipelines")) == ["images.py", "preprocess.py"]
    meta = load_json(out_dir / export.INFO)
    info = wd.read_model_info(workdir)
    saved = load_json(workdir / wd.THRESHOLDS)
    assert meta["class_names"] == list(info.class_names) and meta["thresholds"]["values"] == saved["thresholds"]
    assert meta["thresholds"]["split"] == saved["split"] and meta["checkpoint_step"] == saved["checkpoint_step"]
    assert "cpu" in meta["platforms"] and meta["config_id"].startswith("sha256:")
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no temporary directory left

    paths = _images(tmp_path / "in", 5)
    csv_path = tmp_path / "preds.csv"
    proc = run_mode([f"--workdir={workdir}", "--mode=predict", f"--input={tmp_path / 'in'}", f"--output={csv_path}"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(csv_path) as f:
        rows = {os.path.basename(r["path"]): r for r in csv.DictReader(f)}
    names = meta["class_names"]
    expected = {
        key: np.array([[float(rows[f"{i}.png"][f"{c}{suffix}"]) for c in names] for i in range(5)])
        for key, suffix in (("probs", ""), ("spreads", "_sd"), ("calls", "_call"))
    }

    np.save(tmp_path / "images.npy", _model_inputs(paths, info.stored_image_size, meta["input_shape"][0]))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD, str(out_dir), str(tmp_path / "images.npy")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["loaded"] == []
    five, two, one = ({k: np.array(v) for k, v in o.items()} for o in result["outs"])
    np.testing.assert_allclose(five["probs"], expected["probs"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(five["spreads"], expected["spreads"], rtol=0, atol=1e-5)
    near = np.abs(five["probs"] - np.array([meta["thresholds"]["values"][c] for c in names])) < 1e-5
    assert ((five["calls"] == expected["calls"]) | near).all()
    for batch, rows_of in ((two, slice(0, 2)), (one, slice(3, 4))):  # the symbolic batch dimension
        for key in ("probs", "spreads"):
            np.testing.assert_allclose(batch[key], five[key][rows_of], rtol=0, atol=1e-6)


def test_export_refuses_a_non_empty_output_and_a_workdir_without_checkpoints(trained, tmp_path):
    workdir, _ = trained
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    proc = run_mode([f"--workdir={workdir}", "--mode=export", f"--output={full}"])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "is not empty" in _error_line(proc.stderr)
    assert "restored the checkpoint" not in proc.stderr
    assert os.listdir(full) == ["keep.txt"]

    bare = tmp_path / "bare"
    shutil.copytree(workdir, bare, ignore=shutil.ignore_patterns(wd.CHECKPOINTS))
    proc = run_mode([f"--workdir={bare}", "--mode=export", f"--output={tmp_path / 'out'}"])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no checkpoint" in _error_line(proc.stderr)
    assert sorted(os.listdir(tmp_path)) == ["bare", "full"]  # nothing written

    proc = run_mode([f"--workdir={workdir}", "--mode=export"])
    assert proc.returncode == 2 and "needs --output=DIR" in _error_line(proc.stderr)
