"""Source image -> the stored image: 8-bit grayscale, shorter side resized, centre-cropped.

Runs in build worker processes, so it imports neither TensorFlow nor tfds; imports nothing of
the project either: the export copies this file into its artifact (the artifact's preprocess).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Corrupt files must fail loudly, so the build can skip and report them.
Image.LOAD_TRUNCATED_IMAGES = False


class ImageError(ValueError):
    """A source image that cannot be decoded."""


def to_gray(image: Image.Image) -> Image.Image:
    """8-bit gray: 16-bit images stretched from their own min..max, others PIL's luminance."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit sources: stretch their own range to 8 bits (PIL's 'L' would clip).
        pixels = np.asarray(image, np.float64)
        lo, hi = pixels.min(), pixels.max()
        scaled = (pixels - lo) * (255.0 / max(hi - lo, 1.0))
        return Image.fromarray(np.round(scaled).astype(np.uint8), "L")
    return image.convert("L")


def square_gray(source: str | bytes, size: int) -> np.ndarray:
    """Decodes `source` (a path or encoded bytes) -> uint8 [size, size, 1].

    The shorter side is resized to `size` (Lanczos) and the longer one centre-cropped.
    Raises ImageError naming the problem for a corrupt or unreadable image.
    """
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        # JPEG: decode at a reduced DCT scale (>= 2x the target) instead of full size;
        # full-size MIMIC JPEGs are about 2500x3000.
        image.draft("L", (2 * size, 2 * size))
        image.load()
        image = to_gray(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"{type(e).__name__}: {e}") from None
    return resize_crop(image, size)


def resize_crop(image: Image.Image, size: int) -> np.ndarray:
    """8-bit gray `image` -> uint8 [size, size, 1]: shorter side to `size` (Lanczos), centre crop."""
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_w, new_h), Image.Resampling.LANCZOS)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, np.uint8)[:, :, None]


def array_image(array) -> Image.Image:
    """Pixels (uint8 or uint16 [H, W] or [H, W, 1]; uint8 [H, W, 3] RGB) -> the image a PNG of
    them opens as (uint16: mode I;16). Raises ImageError for other arrays."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.dtype not in (np.uint8, np.uint16) or not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)):
        raise ImageError(
            f"an array of {a.dtype} {list(a.shape)}: give uint8 or uint16 [H, W] (or [H, W, 1]), or uint8 [H, W, 3]"
        )
    if a.ndim == 3 and a.dtype != np.uint8:
        raise ImageError("a uint16 colour array: give gray uint16 [H, W], or uint8 [H, W, 3]")
    return Image.fromarray(np.ascontiguousarray(a))


def encode_png(image: np.ndarray) -> bytes:
    """uint8 [H, W, 1] -> PNG bytes."""
    out = io.BytesIO()
    Image.fromarray(image[:, :, 0], "L").save(out, format="PNG")
    return out.getvalue()
