"""Loads a model exported by `vkd-jax export` (`run.py --mode=export`): the packages that
model.json's "requirements" lists only (jax, numpy, flatbuffers, pillow), checked first.

This file imports nothing from vkd_jax; the export copies it into the artifact as `load.py`,
beside `data_pipelines/images.py` and `data_pipelines/preprocess.py` (the project's own files,
copied: the decoding, square crop and resizes that the Predictor applies).

    import load                                    # with the artifact folder on sys.path
    model = load.load("path/to/artifact")
    x = model.preprocess("chest.jpg")              # a PNG/JPEG path or pixel array -> [H, W, 1]
    out = model.predict(x)                         # float32 [B, H, W, 1] or [H, W, 1], 0..255
    out["probs"], out["spreads"], out["calls"]     # [B, K] each; K = len(model.class_names)

`predict` refuses (ValueError) an input of the wrong shape or dtype, an empty batch, a NaN or
infinite value, and values outside 0..255 or all within 0..1 (a 0..1-scaled image). A damaged
artifact (model.json unreadable or missing a field, model.jax truncated) raises
`ArtifactError` naming the file.
"""

import importlib.metadata
import importlib.util
import json
import os
import re

MODEL, INFO = "model.jax", "model.json"
PREPROCESSING = ("images", "preprocess")  # data_pipelines/<name>.py in the artifact


class ArtifactError(ValueError):
    """An artifact file that is missing, unreadable or incomplete (the message names it)."""


def requirement_problems(requirements) -> list:
    """The entries of `requirements` ("name" or "name>=version") that are not installed, or
    installed at an older version."""
    missing = []
    for spec in requirements:
        name, _, wanted = spec.partition(">=")
        try:
            have = importlib.metadata.version(name.strip())
        except importlib.metadata.PackageNotFoundError:
            missing.append(spec)
            continue
        if wanted and _version(have) < _version(wanted):
            missing.append(spec)
    return missing


def _version(text: str) -> tuple:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _read_info(folder: str) -> dict:
    path = os.path.join(folder, INFO)
    try:
        with open(path) as f:
            info = json.load(f)
    except FileNotFoundError:
        raise ArtifactError(f"{path} not found: {folder} is not a model exported by vkd-jax") from None
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path} cannot be read ({type(e).__name__}: {e}): export the model again") from None
    try:
        if not isinstance(info, dict):
            raise KeyError("the top level")
        for key in ("requirements", "class_names", "input_shape", "thresholds", "preprocessing"):
            if key not in info:
                raise KeyError(key)
        values = info["thresholds"]["values"]
        for name in info["class_names"]:
            if name not in values:
                raise KeyError(f"thresholds.values.{name}")
            float(values[name])
        if len(info["input_shape"]) != 3:
            raise KeyError("input_shape (three sides)")
        int(info["preprocessing"]["stored_image_size"])
    except (KeyError, TypeError, ValueError) as e:
        field = e.args[0] if isinstance(e, KeyError) and e.args else f"a field ({type(e).__name__}: {e})"
        raise ArtifactError(f"{path} lacks or garbles {field}: export the model again") from None
    return info


def _module(folder: str, name: str):
    """The artifact's copy of `data_pipelines/<name>.py`, loaded by path (never the project's)."""
    path = os.path.join(folder, "data_pipelines", f"{name}.py")
    if not os.path.isfile(path):
        raise ArtifactError(f"{path} not found: export the model again")
    spec = importlib.util.spec_from_file_location(f"vkd_export_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Model:
    """An exported model: `preprocess(path_or_array)` -> its input, `predict(images)` -> dict
    of probs, spreads and calls [B, K]."""

    def __init__(self, folder: str, info: dict):
        import jax
        import numpy as np
        from jax import export

        self.info = info
        path = os.path.join(folder, MODEL)
        try:
            with open(path, "rb") as f:
                self.exported = export.deserialize(bytearray(f.read()))
        except OSError as e:
            raise ArtifactError(f"{path} cannot be read ({e.strerror or e})") from None
        except Exception as e:  # noqa: BLE001 - flatbuffers raises struct.error, IndexError...
            raise ArtifactError(
                f"{path} is not a jax.export model ({type(e).__name__}: {e}): the file is damaged or truncated, "
                "export the model again"
            ) from None
        self.class_names = list(info["class_names"])
        self.input_shape = tuple(info["input_shape"])  # (H, W, C) of one image
        self.stored_image_size = int(info["preprocessing"]["stored_image_size"])
        self.thresholds = np.array([float(info["thresholds"]["values"][c]) for c in self.class_names])
        self._images, self._resize = (_module(folder, name) for name in PREPROCESSING)
        self._call = jax.jit(self.exported.call)  # compiled once per batch size

    def preprocess(self, path_or_array):
        """A PNG or JPEG file (path) or pixels (uint8 or uint16 [H, W] or [H, W, 1], uint8 RGB
        [H, W, 3]) -> float32 [H, W, 1] in 0..255, the Predictor's input: the gray image, its
        shorter side resized to the stored size (Lanczos) and centre-cropped, then resized to
        `input_shape` (as `tf.image.resize(antialias=True)`). (DICOM: use vkd_jax.Predictor.)"""
        import numpy as np

        images, size = self._images, self.stored_image_size
        if isinstance(path_or_array, (str, os.PathLike)):
            stored = images.square_gray(os.fspath(path_or_array), size)
        else:
            stored = images.resize_crop(images.to_gray(images.array_image(path_or_array)), size)
        x = stored[None].astype(np.float32)
        if size != self.input_shape[0]:
            x = self._resize.resize(x, self.input_shape[0])
        return x[0]

    def check(self, images):
        """`images` as float32 [B, H, W, C]; ValueError naming what is wrong with them."""
        import numpy as np

        images = np.asarray(images)
        if images.dtype.kind not in "fiu":
            raise ValueError(f"images of dtype {images.dtype}: give float32 (or uint8) gray pixel values 0..255")
        if images.ndim == len(self.input_shape):  # one image
            images = images[None]
        if images.ndim != len(self.input_shape) + 1 or images.shape[1:] != self.input_shape:
            raise ValueError(
                f"images of shape {list(images.shape)}: the model takes [B, {', '.join(map(str, self.input_shape))}] "
                "(or one image without B); model.preprocess(path_or_array) makes one"
            )
        if len(images) == 0:
            raise ValueError("an empty batch of images: give at least one")
        images = images.astype(np.float32)
        bad = ~np.isfinite(images).reshape(len(images), -1).all(axis=1)
        if bad.any():
            raise ValueError(f"images {np.flatnonzero(bad).tolist()} hold NaN or infinite values")
        low, high = images.reshape(len(images), -1).min(axis=1), images.reshape(len(images), -1).max(axis=1)
        out = np.flatnonzero((low < 0) | (high > 255))
        if len(out):
            raise ValueError(f"images {out.tolist()} have values outside 0..255 (gray pixel values are expected)")
        scaled = np.flatnonzero((high > 0) & (high <= 1))
        if len(scaled):
            raise ValueError(
                f"images {scaled.tolist()} have all their values within 0..1: the model takes pixel values "
                "0..255 (multiply by 255), as model.preprocess gives them"
            )
        return images

    def predict(self, images) -> dict:
        import numpy as np

        probs, spreads = (np.asarray(x) for x in self._call(self.check(images)))
        return {"probs": probs, "spreads": spreads, "calls": (probs >= self.thresholds).astype(np.int8)}


def load(folder: str) -> Model:
    """The artifact in `folder`; first checks that model.json's requirements are installed
    (ImportError with the `pip install` line that supplies them)."""
    info = _read_info(folder)
    missing = requirement_problems(info["requirements"])
    if missing:
        raise ImportError(
            f"the model in {folder} needs {', '.join(missing)}: pip install {' '.join(repr(m) for m in missing)}"
        )
    return Model(folder, info)
