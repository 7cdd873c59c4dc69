"""The eval pipeline's image preprocessing in numpy: stored images -> the model's input.

A port of `input_pipeline`'s eval path (`_decode_fn` then `_normalise_fn`) that needs no
TensorFlow, for `vkd_jax.Predictor` and predict mode. In order:
  uint8 [N, S, S, 1] -> float32 in [0, 255]
  -> resized to `data.image_size` when S differs, as `tf.image.resize(..., antialias=True)`
     (bilinear, half-pixel centres; when shrinking, a triangle filter widened by S / size
     with each output's weights renormalised: TF's `ScaleAndTranslate`, `triangle` kernel)
  -> the gray channel repeated to `data.channels`
  -> `(x / 255 - mean) / std` in float32, with the statistics `normaliser` gives for
     `data.normalization` (`data.mean`/`data.std`, ImageNet's per channel, or torchxrayvision's).
tests/test_predictor.py checks it against `input_pipeline.image_batches` on the same images.
Imports nothing but numpy: the export copies this file into its artifact (the resize of the
artifact's preprocess).
"""

from __future__ import annotations

import functools

import numpy as np

# `data.normalization`: 'scalar' (`data.mean`/`data.std`), 'imagenet' (per RGB channel, needs
# `data.channels=3`) or 'torchxrayvision' (one channel scaled to [-1024, 1024], needs
# `data.channels=1`). The statistics are `normaliser`'s, for the tf.data pipeline, the
# Predictor and the exported model alike.
NORMALIZATIONS = ("scalar", "imagenet", "torchxrayvision")
# ImageNet RGB statistics, for encoders pretrained on it (the gray image in each channel).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchxrayvision's `xrv.datasets.normalize(x, 255)`, `(2 * x / 255 - 1) * 1024`, in this form:
# 0 -> -1024, 255 -> 1024 (std a power of two: exact in float32).
XRV_MEAN = 0.5
XRV_STD = 1 / 2048


@functools.lru_cache(maxsize=16)
def resize_weights(in_size: int, out_size: int) -> np.ndarray:
    """float32 [out_size, in_size]: row `o` holds the weights of the input pixels that make
    output pixel `o` (TF's `ComputeSpans` for the triangle kernel with antialiasing).

    Output pixel `o` samples the input at `f = (o + 0.5) * in / out`; input pixel `i` weighs
    `max(0, 1 - |i + 0.5 - f| / k)` with `k = max(in / out, 1)`; a row is normalised to sum
    to 1 (so the borders, where part of the filter falls outside, keep their brightness)."""
    f32 = np.float32  # TF's float32 arithmetic: the sample positions' rounding shows at ~1e-5
    inv_scale = f32(1.0 / float(f32(f32(out_size) / f32(in_size))))
    kernel_scale = max(inv_scale, f32(1.0))
    sample = (np.arange(out_size, dtype=f32) + f32(0.5)) * inv_scale
    offsets = (np.arange(in_size, dtype=f32)[None, :] + f32(0.5)) - sample[:, None]
    weights = np.maximum(f32(0.0), f32(1.0) - np.abs(offsets * (f32(1.0) / kernel_scale)))
    totals = weights.sum(axis=1, keepdims=True, dtype=f32)
    return np.where(totals > 0, weights * (f32(1.0) / np.where(totals > 0, totals, f32(1.0))), f32(0.0))


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """float [N, H, W, C] -> float32 [N, size, size, C], as `tf.image.resize(images,
    [size, size], antialias=True)` (bilinear): separable, the width first."""
    rows = resize_weights(images.shape[1], size)
    cols = resize_weights(images.shape[2], size)
    out = np.einsum("ow,nhwc->nhoc", cols, images.astype(np.float64))
    out = np.einsum("oh,nhwc->nowc", rows, out)
    return out.astype(np.float32)


def normaliser(data_cfg) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) float32, broadcastable to [..., C], for pixels scaled to [0, 1]: the
    statistics of `data.normalization` (one of `NORMALIZATIONS`)."""
    if data_cfg.normalization == "scalar":
        return np.float32(data_cfg.mean), np.float32(data_cfg.std)
    if data_cfg.normalization == "imagenet":
        return np.asarray(IMAGENET_MEAN, np.float32), np.asarray(IMAGENET_STD, np.float32)
    if data_cfg.normalization == "torchxrayvision":
        return np.float32(XRV_MEAN), np.float32(XRV_STD)
    raise ValueError(f"data.normalization must be one of {NORMALIZATIONS}, got {data_cfg.normalization!r}")


def eval_images(data_cfg, stored: np.ndarray) -> np.ndarray:
    """Images as a build stores them (uint8 [N, S, S, 1]) -> float32 [N, H, W, C], the eval
    batches' `image` (H = W = `data.image_size`, C = `data.channels`)."""
    image = np.asarray(stored, np.float32)
    if image.shape[1] != data_cfg.image_size:
        image = resize(image, data_cfg.image_size)
    if data_cfg.channels != 1:
        image = np.repeat(image, data_cfg.channels, axis=-1)
    mean, std = normaliser(data_cfg)
    return (image / np.float32(255.0) - mean) / std
