"""Loads a model exported by `vkd-jax export` (`run.py --mode=export`): jax and numpy only.

This file imports nothing from vkd_jax; the export copies it into the artifact as `load.py`.

    import load                                    # with the artifact folder on sys.path
    model = load.load("path/to/artifact")
    out = model.predict(images)                    # float32 [B, H, W, 1] gray pixels in [0, 255]
    out["probs"], out["spreads"], out["calls"]     # [B, K] each; K = len(model.class_names)

`images` are what `model.json`'s "preprocessing" says: the gray image, square-cropped and
resized to `input_shape`'s H x W, pixel values 0..255 (the normalisation is inside the model).
"""

import json
import os

import jax
import numpy as np
from jax import export


class Model:
    """An exported model: `predict(images)` -> dict of probs, spreads and calls [B, K]."""

    def __init__(self, folder: str):
        with open(os.path.join(folder, "model.json")) as f:
            self.info = json.load(f)
        with open(os.path.join(folder, "model.jax"), "rb") as f:
            self.exported = export.deserialize(bytearray(f.read()))
        self.class_names = list(self.info["class_names"])
        self.input_shape = tuple(self.info["input_shape"])  # (H, W, C) of one image
        self.thresholds = np.array([float(self.info["thresholds"]["values"][c]) for c in self.class_names])
        self._call = jax.jit(self.exported.call)  # compiled once per batch size

    def predict(self, images) -> dict:
        images = np.asarray(images, np.float32)
        if images.ndim == len(self.input_shape):  # one image
            images = images[None]
        if images.shape[1:] != self.input_shape:
            raise ValueError(f"images of shape {images.shape[1:]} given, the model takes {self.input_shape}")
        probs, spreads = (np.asarray(x) for x in self._call(images))
        return {"probs": probs, "spreads": spreads, "calls": (probs >= self.thresholds).astype(np.int8)}


def load(folder: str) -> Model:
    return Model(folder)
