"""Issue 36's poor cases: each is one `error:` line (or one exception) that names the field,
file or item and what was expected, raised before any work."""

import os

import numpy as np
import pytest

from configs import default
from tests.e2e import run_mode
from vkd_jax import errors
from vkd_jax.pretrained import files as weights
from vkd_jax.serving import export, predictor


def _error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "--config.no_such_field=1",
            "error: --config.no_such_field=1: no such config field: config has no field 'no_such_field'",
        ),
        (
            "--config.train.batch_sise=1",
            "error: --config.train.batch_sise=1: no such config field: config.train has no field 'batch_sise' "
            "(did you mean --config.train.batch_size?)",
        ),
        (
            "--config.model.image_encoder.block_sizes=abc",
            "error: config.model.image_encoder.block_sizes must be a tuple of ints like (6, 12, 24, 16), got ('abc',)",
        ),
    ],
)
def test_a_bad_config_override_is_one_line_naming_the_field(tmp_path, override, message):
    workdir = tmp_path / "w"
    proc = run_mode([f"--workdir={workdir}", "--config=configs/demo_scratch.py", override])
    assert proc.returncode == 2, proc.stderr
    assert _error_line(proc.stderr) == message
    assert not workdir.exists()  # before any work


def test_garbage_weights_files_are_weights_errors_naming_the_file_and_format(tmp_path):
    text = tmp_path / "weights.safetensors"
    text.write_text("not weights at all\n")
    with pytest.raises(errors.WeightsError, match=f"{text} is not a readable safetensors file"):
        weights.load_densenet121(str(text))
    garbage = tmp_path / "weights.h5"
    garbage.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(errors.WeightsError, match=f"{garbage} is not a readable Keras .h5 weights file"):
        weights.load_densenet121(str(garbage))


def test_non_finite_pretrained_weights_are_refused_naming_the_tensor(tmp_path):
    from safetensors.numpy import save_file

    from tests.test_weights import _torchvision_state

    state = _torchvision_state(np.random.default_rng(0))  # torchvision's keys and shapes, finite
    file = str(tmp_path / "densenet121.safetensors")
    save_file(state, file)
    weights.load_densenet121(file)  # finite: loads
    state["features.denseblock2.denselayer3.conv1.weight"][0, 0, 0, 0] = np.nan
    save_file(state, file)
    with pytest.raises(
        errors.WeightsError,
        match=f"{file}: 'features.denseblock2.denselayer3.conv1.weight' holds 1 non-finite values",
    ):
        weights.load_densenet121(file)


def _image_only_config():
    config = default.get_config()
    config.model.kind = "image_only"
    return config


@pytest.mark.parametrize("batch_size", [0, -4, 2.5])
def test_a_bad_predictor_batch_size_is_refused_before_the_model_loads(tmp_path, batch_size):
    # The workdir does not exist: anything but the batch size check would fail on it.
    with pytest.raises(errors.UsageError, match=f"batch_size={batch_size}: expected a positive int"):
        predictor.Predictor(_image_only_config(), str(tmp_path / "missing"), batch_size=batch_size)


@pytest.mark.parametrize(
    "item, got", [(None, "got None"), (3, "got 3"), (b"\x89PNG", "got a bytes (encoded image data?")]
)
def test_predict_names_an_item_that_is_no_path_or_array_before_reading_any(item, got):
    model = object.__new__(predictor.Predictor)  # no model: the check comes before any work
    images = ["a.png", np.zeros((8, 8), np.uint8), item]
    with pytest.raises(errors.UsageError, match=rf"images\[2\]: expected a path .* {got}".replace("(", r"\(")):
        model.predict(images)
    with pytest.raises(errors.UsageError, match="images: expected a path, an array or a sequence"):
        model.predict(b"\x89PNG")


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc (a directory nothing can be created in)")
def test_an_unwritable_export_target_is_refused_before_the_model_loads(tmp_path):
    # /proc passes os.access(W_OK) for root, but no directory can be made in it. The workdir
    # does not exist: anything but the output check would fail on it.
    with pytest.raises(errors.UsageError, match="--output=/proc/vkd-export cannot be written: no directory can be"):
        export.export_model(_image_only_config(), str(tmp_path / "missing"), "/proc/vkd-export")
