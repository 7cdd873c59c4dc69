"""`vkd_jax.Predictor`: the numpy preprocessing equals the tf.data eval path on the same files,
the probabilities equal predict mode's CSV, no TensorFlow is imported, and inputs the model
was not trained for are warned about (`image_checks`)."""

import csv
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
from PIL import Image

from configs import default
from data_pipelines import image_checks, preprocess, user_images
from tests.e2e import FAST_XLA, ROOT, run_mode
from tests.test_user_images import _write_dicom

STORED = 64


def _gradient(h: int, w: int, top: int, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, top / 50, (h, w))
    return (np.add.outer(np.arange(h), np.arange(w)) * (top / (h + w)) + noise).clip(0, top)


def _files(folder) -> dict[str, str]:
    """PNG 8 and 16 bit, JPEG and (with pydicom) DICOM, none of which warrants a warning."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: str(folder / name) for name in ("a8.png", "b16.png", "c.jpg")}
    Image.fromarray(_gradient(80, 70, 255, 1).astype(np.uint8)).save(paths["a8.png"])
    Image.fromarray(_gradient(72, 90, 4095, 2).astype(np.uint16)).save(paths["b16.png"])
    Image.fromarray(_gradient(96, 96, 255, 3).astype(np.uint8)).save(paths["c.jpg"], quality=90)
    try:
        import pydicom  # noqa: F401
    except ImportError:
        return paths
    pixels = _gradient(70, 64, 4095, 4).astype(np.uint16)
    paths["d.dcm"] = _write_dicom(folder / "d.dcm", pixels, WindowCenter=2000, WindowWidth=3000, ViewPosition="PA")
    return paths


@pytest.mark.parametrize(
    "size,channels,norm",
    [(32, 1, "scalar"), (224, 3, "imagenet"), (STORED, 1, "scalar"), (32, 1, "torchxrayvision")],
)
def test_preprocessing_equals_the_tf_data_eval_path(tmp_path, size, channels, norm):
    from data_pipelines import input_pipeline  # TensorFlow: the reference only

    cfg = default.get_config().data
    cfg.update({"image_size": size, "channels": channels, "normalization": norm})
    loaded = user_images.load_inputs(list(_files(tmp_path).values()), STORED)
    assert not loaded.failed and all(w == [] for w in loaded.warnings)
    want = np.concatenate(list(input_pipeline.image_batches(cfg, loaded.stored, 3)))
    got = preprocess.eval_images(cfg, loaded.stored)
    assert got.shape == want.shape == (len(loaded.names), size, size, channels) and got.dtype == np.float32
    std = preprocess.normaliser(cfg)[1]  # compared as x / 255: the same grey levels at any scale
    np.testing.assert_allclose(got * std, want * std, rtol=0, atol=2.5e-6)  # ~6e-4 grey levels


@pytest.mark.parametrize("size", [STORED, 224])
def test_torchxrayvision_scaling_takes_black_and_white_to_1024(size):
    """`data.normalization='torchxrayvision'`: 0..255 -> [-1024, 1024] (`xrv.utils.normalize`), in
    the tf.data pipeline and the Predictor's numpy port alike (exact where nothing is resized)."""
    from data_pipelines import input_pipeline  # TensorFlow: the reference only

    cfg = default.get_config().data
    cfg.update({"image_size": size, "channels": 1, "normalization": "torchxrayvision"})
    stored = np.stack([np.zeros((STORED, STORED, 1), np.uint8), np.full((STORED, STORED, 1), 255, np.uint8)])
    atol = 0 if size == STORED else 1e-3  # resizing a flat image: its weights sum to 1 up to rounding
    for images in (preprocess.eval_images(cfg, stored), next(input_pipeline.image_batches(cfg, stored, 2))):
        assert images.shape == (2, size, size, 1)
        np.testing.assert_allclose(images[0], -1024.0, rtol=0, atol=atol)
        np.testing.assert_allclose(images[1], 1024.0, rtol=0, atol=atol)


def test_resize_matches_tf_when_shrinking_and_enlarging():
    tf = pytest.importorskip("tensorflow")
    x = np.random.default_rng(0).uniform(0, 255, (2, 256, 200, 1)).astype(np.float32)
    for size in (224, 37, 300):
        want = tf.image.resize(x[:, :200, :200], [size, size], antialias=True).numpy()
        np.testing.assert_allclose(preprocess.resize(x[:, :200, :200], size), want, rtol=0, atol=2e-4)


def test_predictor_equals_predict_mode_and_takes_paths_and_arrays(trained, tmp_path):
    workdir, _ = trained
    paths = _files(tmp_path / "in")
    out = tmp_path / "preds.csv"
    proc = run_mode([f"--workdir={workdir}", "--mode=predict", f"--input={tmp_path / 'in'}", f"--output={out}"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(out) as f:
        rows = {os.path.basename(r["path"]): r for r in csv.DictReader(f)}

    from vkd_jax import Predictor

    p = Predictor.from_workdir(str(workdir))
    pixels = np.asarray(Image.open(paths["a8.png"]))
    got = p.predict([*paths.values(), pixels])
    assert got.names == [*paths.values(), f"<array {len(paths)}>"]
    assert got.probs.shape == got.spreads.shape == got.calls.shape == (len(paths) + 1, len(got.class_names))
    for i, name in enumerate(paths):
        row = rows[name]
        np.testing.assert_allclose(got.probs[i], [float(row[c]) for c in got.class_names], atol=1e-5)
        np.testing.assert_allclose(got.spreads[i], [float(row[f"{c}_sd"]) for c in got.class_names], atol=1e-5)
        assert got.calls[i].tolist() == [int(row[f"{c}_call"]) for c in got.class_names]
        assert row["warnings"] == "" and got.warnings[i] == []
    np.testing.assert_array_equal(got.probs[-1], got.probs[0])  # the array of a8.png's pixels
    np.testing.assert_array_equal(got.calls, (got.probs >= got.thresholds).astype(int))
    one = p.predict(paths["a8.png"])  # a single path: padded to a smaller batch, the same numbers
    np.testing.assert_allclose(one.probs[0], got.probs[0], atol=1e-6)


def test_batches_are_padded_to_few_sizes():
    from vkd_jax.serving.predictor import Predictor

    p = Predictor.__new__(Predictor)  # padded_size reads the mesh size and the batch size only
    p.mesh, p.batch_size = types.SimpleNamespace(size=2), 24
    assert [p.padded_size(n) for n in (1, 2, 3, 5, 9, 16, 17, 24)] == [2, 2, 4, 8, 16, 16, 24, 24]


def test_the_predictor_imports_no_tensorflow(trained, tmp_path):
    workdir, _ = trained
    path = _files(tmp_path)["a8.png"]
    code = (
        "import sys; from vkd_jax import Predictor; "
        f"out = Predictor.from_workdir({str(workdir)!r}).predict([{path!r}]); "
        "assert out.probs.shape[0] == 1; print('tensorflow' in sys.modules)"
    )
    env = dict(os.environ, PYTHONPATH=ROOT, XLA_FLAGS=f"--xla_force_host_platform_device_count=2 {FAST_XLA}")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"


# Warnings -----------------------------------------------------------------------------------


def _codes(path) -> list[str]:
    return user_images.read_image(str(path), STORED)[1]


def test_lateral_dicom_is_warned_about(tmp_path):
    pixels = _gradient(64, 64, 4095).astype(np.uint16)
    for view, want in (("LL", ["lateral_view"]), ("LATERAL", ["lateral_view"]), ("PA", []), ("", [])):
        assert _codes(_write_dicom(tmp_path / f"{view}.dcm", pixels, ViewPosition=view)) == want


def test_small_image_is_warned_about(tmp_path):
    Image.fromarray(_gradient(24, 40, 255).astype(np.uint8)).save(tmp_path / "small.png")
    Image.fromarray(_gradient(32, 40, 255).astype(np.uint8)).save(tmp_path / "half.png")  # 32 = STORED / 2
    assert _codes(tmp_path / "small.png") == [image_checks.SMALL_IMAGE]
    assert _codes(tmp_path / "half.png") == []
    assert user_images.read_array(np.zeros((20, 20), np.uint8), STORED)[1] == [image_checks.SMALL_IMAGE]


def test_narrow_16bit_image_is_warned_about(tmp_path):
    narrow = (1000 + _gradient(64, 64, 200)).astype(np.uint16)  # 8-bit-like band of a 16-bit range
    Image.fromarray(narrow).save(tmp_path / "narrow.png")
    assert _codes(tmp_path / "narrow.png") == [image_checks.STRETCHED_16BIT]
    assert user_images.read_array(narrow, STORED)[1] == [image_checks.STRETCHED_16BIT]
    assert user_images.read_array(_gradient(64, 64, 4095).astype(np.uint16), STORED)[1] == []
    dicom = _write_dicom(tmp_path / "narrow.dcm", narrow)  # no window: its own range stretched
    assert _codes(dicom) == [image_checks.STRETCHED_16BIT]


def test_colour_image_is_warned_about(tmp_path):
    gray = _gradient(64, 64, 255).astype(np.uint8)
    rgb = np.stack([gray] * 3, axis=-1)
    Image.fromarray(rgb).save(tmp_path / "gray_rgb.jpg", quality=90)  # RGB channels, all equal
    rgb[10:30, 10:30] = (255, 0, 0)  # a red marker
    Image.fromarray(rgb).save(tmp_path / "marked.png")
    assert _codes(tmp_path / "gray_rgb.jpg") == []
    assert _codes(tmp_path / "marked.png") == [image_checks.COLOUR_IMAGE]
    assert user_images.read_array(rgb, STORED)[1] == [image_checks.COLOUR_IMAGE]


def test_warnings_are_logged_once_per_file_and_in_the_csv(trained, tmp_path):
    workdir, _ = trained
    folder = tmp_path / "in"
    folder.mkdir()
    narrow = (1000 + _gradient(40, 40, 200)).astype(np.uint16)
    Image.fromarray(narrow).save(folder / "narrow.png")
    rgb = np.stack([_gradient(40, 40, 255).astype(np.uint8)] * 3, axis=-1)
    rgb[5:20, 5:20] = (255, 0, 0)
    Image.fromarray(rgb).save(folder / "marked.png")
    Image.fromarray(_gradient(64, 64, 255).astype(np.uint8)).save(folder / "fine.png")
    out = tmp_path / "preds.csv"
    proc = run_mode([f"--workdir={workdir}", "--mode=predict", f"--input={folder}", f"--output={out}"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(out) as f:
        rows = {os.path.basename(r["path"]): r["warnings"] for r in csv.DictReader(f)}
    assert rows == {"fine.png": "", "marked.png": "colour_image", "narrow.png": "stretched_16bit"}
    lines = [line for line in proc.stderr.splitlines() if "_image (" in line or "stretched_16bit (" in line]
    assert len(lines) == 2 and any("narrow.png" in line and "stretched_16bit (" in line for line in lines)


def test_the_latency_benchmark_prints_its_figures(trained, capsys):
    from benchmarks import predict_latency

    workdir, _ = trained
    predict_latency.main([f"--workdir={workdir}", "--size=80", "--calls=2"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["size"] == 80 and line["calls"] == 2 and 0 < line["min_ms"] <= line["median_ms"] <= line["max_ms"]
