"""Training-time image augmentation in TensorFlow, a pure function of (image, seed).

Small random affine transforms (rotation, scale, translation) and brightness/contrast
jitter; left-right flips only when asked (they move the heart to the wrong side). Every
random draw is stateless from a per-example seed, so a resumed run augments exactly as
an uninterrupted one. Configured by `data.augment` (all zeros: off).
"""

from __future__ import annotations

import math

import tensorflow as tf

FIELDS = ("rotation", "scale", "translate", "brightness", "contrast")


def is_enabled(aug_cfg) -> bool:
    return any(aug_cfg[f] for f in FIELDS) or aug_cfg.hflip


def _uniform(seed, i: int, bound: float):
    """A draw from U(-bound, bound); `i` picks an independent stream of `seed`."""
    return tf.random.stateless_uniform([], tf.stack([seed[0], seed[1] + i]), -bound, bound)


def _affine(image, seed, aug_cfg):
    """Rotation, isotropic scale and translation about the centre; edges repeat outwards."""
    size = tf.cast(tf.shape(image)[0], tf.float32)
    angle = _uniform(seed, 0, aug_cfg.rotation * math.pi / 180)
    scale = 1.0 + _uniform(seed, 1, aug_cfg.scale)
    tx, ty = (_uniform(seed, k, aug_cfg.translate) * size for k in (2, 3))
    # The op maps each output pixel to an input pixel: the inverse transform.
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    c = (size - 1) / 2
    transform = tf.stack(
        [cos, sin, c - cos * (c + tx) - sin * (c + ty), -sin, cos, c + sin * (c + tx) - cos * (c + ty), 0.0, 0.0]
    )
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform[None],
        output_shape=tf.shape(image)[:2],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="NEAREST",
    )[0]


def augment(image, seed, aug_cfg):
    """float32 [H, W, C] in [0, 255], int64 seed [2] -> the augmented image, same shape."""
    if aug_cfg.rotation or aug_cfg.scale or aug_cfg.translate:
        image = _affine(image, seed, aug_cfg)
    if aug_cfg.contrast:
        mean = tf.reduce_mean(image)
        image = (image - mean) * (1.0 + _uniform(seed, 4, aug_cfg.contrast)) + mean
    if aug_cfg.brightness:
        image = image + 255.0 * _uniform(seed, 5, aug_cfg.brightness)
    if aug_cfg.hflip:
        flip = _uniform(seed, 6, 1.0) < 0
        image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
    return tf.clip_by_value(image, 0.0, 255.0)
