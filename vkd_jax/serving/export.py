"""`vkd-jax export` (`run.py --mode=export`): the best checkpoint's image-only path as an
artifact that needs only the packages its model.json lists (`REQUIREMENTS`: jax, numpy,
flatbuffers for jax.export's deserialization, pillow to read image files); no flax,
TensorFlow or vkd_jax.

    DIR/model.jax    `jax.export`'s serialized `f(images) -> (probs, spreads)`
    DIR/model.json   class names, input shape, preprocessing, thresholds, requirements, the
                     training config's id (sha256 of the workdir's config.json), versions
    DIR/load.py      the loader (`vkd_jax/serving/export_loader.py`, which imports no project
                     code): checks the requirements, `preprocess(path_or_array)`, a checked `predict`
    DIR/data_pipelines/images.py, preprocess.py   copies of the project's files that the
                     loader's `preprocess` runs (the Predictor's decoding, crop and resizes)

`f` takes float32 `[b, H, W, 1]`, any batch size `b` (a symbolic dimension): gray pixel values
0..255 at the model's image size, i.e. an image as predict mode reads it (square-cropped and
resized to the stored size, then to H x W). Inside `f`: the eval pipeline's channel repeat and
normalisation, the prior path `z ~ p(z|x)` with predict mode's latent noise (one draw shared
by every image), and the mean and standard deviation of the probabilities over the samples,
so its outputs are predict mode's. The parameters are constants of the serialized function.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from data_pipelines import images as images_lib, preprocess as preprocess_lib
from data_pipelines.preprocess import normaliser
from vkd_jax import __version__, errors, inference, sharding
from vkd_jax.models.vkd import IMAGE_ONLY_AT_TEST
from vkd_jax.runs import restore, workdir as wd
from vkd_jax.serving import export_loader, predictor

MODEL = "model.jax"
INFO = "model.json"
LOADER = "load.py"
FORMAT = "vkd-jax-export/1"
# The artifact's own copies of the files its preprocess runs (numpy and PIL only).
PREPROCESSING_FILES = (images_lib.__file__, preprocess_lib.__file__)
PLATFORMS = ("cpu", "cuda")  # lowered for both where this jax can; else "cpu" alone


def export_model(config, workdir: str, output_dir: str) -> dict:
    """Writes the artifact into `output_dir` (new, or an empty directory), atomically: a
    temporary directory beside it, renamed once complete. Returns model.json's object."""
    if config.model.kind not in IMAGE_ONLY_AT_TEST:
        raise errors.ConfigError(
            f"the model in {workdir} is `{config.model.kind}`, which needs the report: export takes image-only "
            f"models ({', '.join(IMAGE_ONLY_AT_TEST)})"
        )
    _check_output(output_dir)
    info = wd.read_model_info(workdir)
    saved = wd.read_thresholds(workdir)
    model, state, _, manager = restore.restore_best(config, workdir, info, sharding.make_mesh(1), image_only=True)
    manager.close()
    step = int(state.step)
    size = config.data.image_size
    fn = inference.prior_path(config, model, jax.device_get({"params": state.params, "batch_stats": state.batch_stats}))
    spec = jax.ShapeDtypeStruct(jax.export.symbolic_shape(f"b, {size}, {size}, 1"), jnp.float32)
    exported = _export(fn, spec)
    meta = {
        "format": FORMAT,
        "vkd_jax_version": __version__,
        "jax_version": jax.__version__,
        "platforms": list(exported.platforms),
        "model_kind": config.model.kind,
        "checkpoint_step": step,
        "config_id": "sha256:" + _sha256(wd.path(workdir, wd.CONFIG)),
        "class_names": list(info.class_names),
        "input_shape": [size, size, 1],
        "input_dtype": "float32",
        "requirements": requirements(),
        "outputs": {
            "probs": f"[b, {len(info.class_names)}] probability of each finding, mean over the prior samples",
            "spreads": "[b, K] their standard deviation over the samples",
        },
        "num_samples": int(config.model.eval_samples),
        "preprocessing": _preprocessing(config, info.stored_image_size),
        "thresholds": _thresholds(saved, info.class_names, step, workdir),
    }
    _write(output_dir, exported.serialize(), meta)
    logging.info("exported the checkpoint of step %d to %s (%s)", step, output_dir, ", ".join(exported.platforms))
    return meta


def requirements() -> list[str]:
    """What load.py needs, as pip takes it: jax at least the exporting version (jax.export
    reads older serializations, not newer ones), numpy, flatbuffers (jax.export's
    deserialization imports it) and pillow (the artifact's preprocess reads image files)."""
    return [f"jax>={jax.__version__}", "numpy", "flatbuffers", "pillow"]


def _export(fn, spec):
    """Lowered for `PLATFORMS`; for the current backend's alone where that fails."""
    try:
        return jax.export.export(jax.jit(fn), platforms=PLATFORMS)(spec)
    except Exception as e:  # noqa: BLE001 - a jax without the cuda lowering rules raises anything
        logging.warning(
            "cannot lower for %s (%s): exporting for the default backend only", PLATFORMS, errors.one_line(e)
        )
        return jax.export.export(jax.jit(fn))(spec)


def _preprocessing(config, stored_size: int) -> dict:
    size = config.data.image_size
    mean, std = normaliser(config.data)
    return {
        "input": "gray pixel values 0..255 as float32, one channel, H x W = input_shape",
        "function": "load.py's Model.preprocess(path_or_array) does all of this but the inside_the_model part",
        "read": f"the image as gray, its shorter side resized to {stored_size} (Lanczos) and the longer one "
        "centre-cropped (data_pipelines.images.square_gray, as the dataset builds and predict mode read images)",
        "stored_image_size": stored_size,
        "resize": None
        if stored_size == size
        else f"{stored_size} -> {size}: bilinear with antialiasing (tf.image.resize(antialias=True))",
        "inside_the_model": f"repeat to {config.data.channels} channel(s), x / 255, (x - mean) / std",
        "normalization": config.data.normalization,
        "mean": np.asarray(mean).tolist(),
        "std": np.asarray(std).tolist(),
    }


def _thresholds(saved: dict | None, class_names, step: int, workdir: str) -> dict:
    """The Predictor's thresholds (`predictor.thresholds`: checked, the default where none were
    saved) with where they came from."""
    values = predictor.thresholds(saved, class_names, step, workdir)
    saved = saved or {"method": "default"}
    return {
        "method": saved.get("method"),
        "split": saved.get("split"),
        "checkpoint_step": saved.get("checkpoint_step"),
        "values": {c: float(v) for c, v in zip(class_names, values)},
    }


def _sha256(file: str) -> str:
    with open(file, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _check_output(output_dir: str) -> None:
    """Refuses (UsageError) an output that is a file or a non-empty directory, or whose
    parent cannot be written (tried: the temporary directory `_write` makes there), before the
    model loads."""
    if os.path.exists(output_dir):
        if not os.path.isdir(output_dir):
            raise errors.UsageError(f"--output={output_dir} is a file: name a new (or empty) directory")
        if os.listdir(output_dir):
            raise errors.UsageError(f"--output={output_dir} is not empty: name a new (or empty) directory")
    parent = os.path.dirname(os.path.abspath(output_dir))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise errors.UsageError(f"--output={output_dir} cannot be written: {errors.one_line(e)}") from None
    try:  # a real write: os.access says yes to root on a read-only mode, and on /proc or /sys
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(os.path.abspath(output_dir))}."))
    except OSError as e:
        raise errors.UsageError(
            f"--output={output_dir} cannot be written: no directory can be created in {parent} ({errors.one_line(e)})"
        ) from None


def _write(output_dir: str, blob: bytearray, meta: dict) -> None:
    parent = os.path.dirname(os.path.abspath(output_dir))
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(os.path.abspath(output_dir))}.")
    try:
        with open(os.path.join(tmp, MODEL), "wb") as f:
            f.write(blob)
        with open(os.path.join(tmp, INFO), "w") as f:
            json.dump(meta, f, indent=2)
        shutil.copyfile(export_loader.__file__, os.path.join(tmp, LOADER))
        os.makedirs(os.path.join(tmp, "data_pipelines"))
        for file in PREPROCESSING_FILES:
            shutil.copyfile(file, os.path.join(tmp, "data_pipelines", os.path.basename(file)))
        os.chmod(tmp, 0o755)
        os.rename(tmp, output_dir)  # replaces an empty directory, refuses a non-empty one
    except OSError as e:
        raise errors.UsageError(f"--output={output_dir} cannot be written: {errors.one_line(e)}") from None
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
