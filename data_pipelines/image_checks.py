"""Inputs a model can read but was not trained for: warned about, never silently predicted.

Each rule gives a short code; prediction names a file's codes in one log line, in the CSV's
`warnings` column (`;`-separated) and in `vkd_jax.Prediction.warnings`. The image is still
predicted. The rules:

  lateral_view     a DICOM whose ViewPosition is lateral (LL, RL, LAT, LATERAL, XTABLE
                   LATERAL): the training images are frontal (PA/AP) views.
  small_image      the shorter side is under half the model's stored image size (model_info's
                   `stored_image_size`, the side the dataset build resized to): the image is
                   enlarged over 2x, its detail is not there.
  stretched_16bit  a 16-bit image (PNG or uint16 array, or a DICOM without a window) whose
                   values span fewer than 256 levels: its own min..max is stretched to 8 bits,
                   which magnifies a narrow band of the range (e.g. 8-bit data saved as 16 bits).
  colour_image     a colour image whose channels differ (by over 8 levels at over 1% of the
                   pixels): it is read as its luminance, but chest X-rays are gray, so it is
                   likely a photo, an annotated screenshot or a false-colour map.

Degenerate images (a side under 16 px, aspect over 4) are not warned about but skipped
(`user_images`). Imports neither TensorFlow nor tfds.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

LATERAL_VIEW = "lateral_view"
SMALL_IMAGE = "small_image"
STRETCHED_16BIT = "stretched_16bit"
COLOUR_IMAGE = "colour_image"
DESCRIPTIONS = {
    LATERAL_VIEW: "a lateral view (the model was trained on frontal views)",
    SMALL_IMAGE: "under half the model's image size (enlarged over 2x)",
    STRETCHED_16BIT: "a 16-bit image spanning under 256 levels, stretched to 8 bits",
    COLOUR_IMAGE: "a colour image (read as its luminance; chest X-rays are gray)",
}
LATERAL_VIEWS = ("LL", "RL", "LAT", "LATERAL", "XTABLE LATERAL")
SMALL_FRACTION = 0.5  # of the stored image size
NARROW_LEVELS = 256  # a 16-bit range narrower than this is a stretched one
COLOUR_LEVELS = 8  # channels differing by more than this at a pixel make it colour...
COLOUR_FRACTION = 0.01  # ...and more than this fraction of such pixels a colour image
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")
_GRAY_MODES = ("1", "L", "LA", "La", "F", *SIXTEEN_BIT_MODES)


def describe(codes) -> str:
    """`code (what it means); ...` for a log line."""
    return "; ".join(f"{c} ({DESCRIPTIONS[c]})" for c in codes)


def size_warnings(width: int, height: int, stored_size: int) -> list[str]:
    return [SMALL_IMAGE] if min(width, height) < SMALL_FRACTION * stored_size else []


def is_stretched(lo: float, hi: float) -> bool:
    """A 16-bit image's own range `lo..hi`, stretched to 8 bits, spans under NARROW_LEVELS."""
    return hi - lo < NARROW_LEVELS


def is_lateral(view_position) -> bool:
    return " ".join(str(view_position or "").upper().split()) in LATERAL_VIEWS


def pil_warnings(image: Image.Image, stored_size: int) -> list[str]:
    """The codes of an opened PNG/JPEG (or an array made an image). May decode it: a 16-bit
    image in full (its range), a colour JPEG at a reduced DCT scale."""
    codes = size_warnings(*image.size, stored_size)
    if image.mode in SIXTEEN_BIT_MODES:
        pixels = np.asarray(image)
        if is_stretched(float(pixels.min()), float(pixels.max())):
            codes.append(STRETCHED_16BIT)
    elif image.mode not in _GRAY_MODES and is_colour(image):
        codes.append(COLOUR_IMAGE)
    return codes


def is_colour(image: Image.Image) -> bool:
    """Whether the channels of a colour-mode `image` differ (COLOUR_LEVELS, COLOUR_FRACTION)."""
    image.draft("RGB", (256, 256))  # JPEG only: decode at up to 1/8 scale
    rgb = np.asarray(image.convert("RGB"), np.int16)
    spread = np.maximum(np.abs(rgb[..., 0] - rgb[..., 1]), np.abs(rgb[..., 1] - rgb[..., 2]))
    return float(np.mean(spread > COLOUR_LEVELS)) > COLOUR_FRACTION
