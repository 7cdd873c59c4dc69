"""The exported artifact keeps its promise: it loads where only model.json's requirements are
installed (a fresh venv, from the package index) and, through its own `preprocess`, matches
the Predictor on PNG and JPEG files; its `predict` refuses inputs it was not made for, a
missing requirement is named with its `pip install`, and a damaged artifact names the file.

On the old workdir (`tests/data/workdir_60fcd5b`, which needs no dataset), exported at 48 px
from its 32-px stored images so the artifact's stored -> model resize runs too."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data_pipelines import preprocess
from vkd_jax.runs import workdir as wd
from vkd_jax.serving import export, predictor

OLD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "workdir_60fcd5b")
SIZE = 48  # the stored images are 32 px


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(artifact dir, the Predictor of the same config, a PNG and a JPEG file)."""
    tmp = tmp_path_factory.mktemp("artifact")
    workdir = str(tmp / "workdir")
    shutil.copytree(OLD, workdir)
    config = wd.read_config(workdir)
    config.data.image_size = SIZE
    export.export_model(config, workdir, str(tmp / "out"))
    rng = np.random.default_rng(0)
    png, jpeg = str(tmp / "a.png"), str(tmp / "b.jpg")
    Image.fromarray(rng.integers(0, 256, (50, 40), np.uint8)).save(png)
    Image.fromarray(rng.integers(0, 256, (45, 60, 3), np.uint8)).save(jpeg, quality=90)
    return str(tmp / "out"), predictor.Predictor(config, workdir), [png, jpeg]


def _loader(folder):
    spec = importlib.util.spec_from_file_location(f"artifact_load_{abs(hash(folder))}", os.path.join(folder, "load.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def fresh_venv(tmp_path_factory):
    """A venv with only what model.json lists, installed from the package index (once per
    session); skipped when the index cannot be reached."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    probe = subprocess.run(
        [python, "-m", "pip", "download", "--no-deps", "-q", "-d", str(venv / "probe"), "flatbuffers"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if probe.returncode:
        pytest.skip(f"the package index cannot be reached: {probe.stderr.strip().splitlines()[-1:]}")
    proc = subprocess.run(
        [python, "-m", "pip", "install", "-q", *export.requirements()], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr
    return python


_RUN = """
import json, sys
sys.path.insert(0, sys.argv[1])
import load
model = load.load(sys.argv[1])
x = [model.preprocess(p) for p in sys.argv[2:]]
out = model.predict(x)
print(json.dumps({"modules": sorted(m for m in ("flax", "tensorflow", "vkd_jax", "data_pipelines") if m in sys.modules),
                  "probs": out["probs"].tolist(), "spreads": out["spreads"].tolist()}))
"""


def test_the_artifact_loads_in_a_venv_of_its_requirements_and_matches_the_predictor(exported, fresh_venv, tmp_path):
    folder, model, files = exported
    assert json.load(open(os.path.join(folder, export.INFO)))["requirements"] == export.requirements()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    proc = subprocess.run(
        [fresh_venv, "-c", _RUN, folder, *files], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.splitlines()[-1])
    assert got["modules"] == []
    want = model.predict(files)
    np.testing.assert_allclose(got["probs"], want.probs, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got["spreads"], want.spreads, rtol=0, atol=1e-5)


def test_preprocess_gives_the_predictors_input(exported):
    folder, model, files = exported
    load = _loader(folder).load(folder)
    pixels = np.random.default_rng(1).integers(0, 65536, (70, 50), np.uint16)
    for item in [*files, pixels]:
        stored = model.load([item]).stored.astype(np.float32)
        want = preprocess.resize(stored, SIZE)[0]
        got = load.preprocess(item)
        assert got.dtype == np.float32 and got.shape == (SIZE, SIZE, 1)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda x: x / 255.0, "within 0..1"),
        (lambda x: np.full_like(x, np.nan), "NaN or infinite"),
        (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 7, np.nan, x), "NaN or infinite"),
        (lambda x: x[:0], "empty batch"),
        (lambda x: x[..., 0], "the model takes"),
        (lambda x: x - 300.0, "outside 0..255"),
        (lambda x: x * 2.0, "outside 0..255"),
        (lambda x: x > 100, "dtype bool"),
    ],
)
def test_predict_refuses_what_the_model_was_not_made_for(exported, make, message):
    folder, _, files = exported
    model = _loader(folder).load(folder)
    x = np.stack([model.preprocess(f) for f in files])
    assert np.isfinite(model.predict(x)["probs"]).all()
    with pytest.raises(ValueError, match=message):
        model.predict(make(x))


def test_a_missing_requirement_is_named_with_its_pip_install(exported, tmp_path):
    folder, _, _ = exported
    copy = tmp_path / "a"
    shutil.copytree(folder, copy)
    info = json.load(open(copy / export.INFO))
    info["requirements"] += ["no-such-package-vkd", "numpy>=999"]
    (copy / export.INFO).write_text(json.dumps(info))
    with pytest.raises(ImportError) as e:
        _loader(str(copy)).load(str(copy))
    assert str(e.value).count("\n") == 0
    assert "pip install 'no-such-package-vkd' 'numpy>=999'" in str(e.value)


@pytest.mark.parametrize(
    "damage, file",
    [
        (lambda d: (d / export.INFO).write_text("{not json"), export.INFO),
        (lambda d: (d / export.INFO).write_text("[]"), export.INFO),
        (lambda d: _drop(d, lambda info: info["thresholds"]["values"].pop("Edema")), export.INFO),
        (lambda d: _drop(d, lambda info: info.pop("class_names")), export.INFO),
        (lambda d: (d / export.MODEL).write_bytes((d / export.MODEL).read_bytes()[:100]), export.MODEL),
        (lambda d: (d / export.MODEL).write_bytes(b""), export.MODEL),
        (lambda d: os.remove(d / export.INFO), export.INFO),
    ],
)
def test_a_damaged_artifact_names_the_file(exported, tmp_path, damage, file):
    folder, _, _ = exported
    copy = tmp_path / "a"
    shutil.copytree(folder, copy)
    damage(copy)
    load = _loader(str(copy))
    with pytest.raises(load.ArtifactError) as e:
        load.load(str(copy))
    assert str(copy / file) in str(e.value) and "\n" not in str(e.value)


def _drop(folder, edit):
    info = json.load(open(folder / export.INFO))
    edit(info)
    (folder / export.INFO).write_text(json.dumps(info))
