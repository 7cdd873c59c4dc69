"""The user's own images (PNG, JPEG, DICOM) -> the stored training image, for prediction.

PNG/JPEG go through `images.square_gray` exactly as in the dataset builds; DICOM is read
with pydicom (an optional extra), windowed to 8 bits, then resized and cropped the same
way. Arrays (uint8 or uint16, gray or RGB) go the way of a PNG of the same pixels. Each
input also gets the codes of `image_checks` (a lateral view, a small image...): predicted,
but warned about. Imports neither TensorFlow nor tfds.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import fnmatch
import glob
import os
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from data_pipelines import image_checks, images

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
DICOM_EXTENSIONS = (".dcm", ".dicom")
# Uncompressed transfer syntaxes (implicit/explicit VR little endian, deflated, big endian).
_UNCOMPRESSED = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2")
# Images outside these bounds are skipped (with the reason): too small to show a chest, or
# so elongated that the centre crop would keep a sliver of them.
MIN_SIDE = 16
MAX_ASPECT = 4.0
_INSTALL = 'reading DICOM needs pydicom: pip install "vkd-jax[dicom]" (or pip install pydicom)'


def find_images(spec: str) -> list[str]:
    """`spec` (a file, a directory searched recursively, or a glob pattern) -> sorted paths.

    A directory yields its files with an image extension (IMAGE_EXTENSIONS, any case);
    a file or the files a glob matches are taken whatever their extension. A `**` in the
    glob matches any depth of directories; linked directories are followed, each real
    directory once, so a link loop ends the search instead of repeating it.
    Raises FileNotFoundError naming `spec` when nothing is found.
    """
    if os.path.isfile(spec):
        return [spec]
    if os.path.isdir(spec):
        found = sorted(
            os.path.join(root, name)
            for root, _, names in os.walk(spec)
            for name in names
            if name.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not found:
            raise FileNotFoundError(f"{spec!r}: the directory holds no image ({', '.join(IMAGE_EXTENSIONS)})")
        return found
    matches = _recursive_glob(spec) if "**" in spec else glob.glob(spec)
    found = sorted(p for p in matches if os.path.isfile(p))
    if not found:
        raise FileNotFoundError(f"{spec!r}: no such image file or directory, and no file matches it as a glob")
    return found


def _recursive_glob(spec: str) -> list[str]:
    """`glob.glob(spec, recursive=True)`, bounded: Python's follows link loops until paths
    reach the system's length limit (and each loop doubles the work). The directories under
    the pattern's literal prefix are walked once per real path; the paths are matched one
    component at a time (`**` any number of components; names starting with `.` only by a
    part that does)."""
    parts = spec.split(os.sep)
    fixed = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    root, pattern = os.sep.join(parts[:fixed]), parts[fixed:]
    if spec.startswith(os.sep) and not root:
        root = os.sep
    seen, found = {os.path.realpath(root or os.curdir)}, []
    for top, dirs, names in os.walk(root or os.curdir, followlinks=True):
        kept = []
        for d in dirs:
            real = os.path.realpath(os.path.join(top, d))
            if real not in seen:
                seen.add(real)
                kept.append(d)
        dirs[:] = kept
        rel = os.path.relpath(top, root or os.curdir)
        prefix = [] if rel == os.curdir else rel.split(os.sep)
        for name in names:
            if _match(pattern, prefix + [name]):
                found.append(os.path.join(root, *prefix, name))
    return found


def _match(pattern: list[str], parts: list[str]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(
            _match(pattern[1:], parts[i:])
            for i in range(len(parts) + 1)
            if not any(p.startswith(".") for p in parts[:i])
        )
    if not parts or (parts[0].startswith(".") and not pattern[0].startswith(".")):
        return False
    return fnmatch.fnmatchcase(parts[0], pattern[0]) and _match(pattern[1:], parts[1:])


def _is_dicom(path: str) -> bool:
    """By extension, or by the 'DICM' magic after the 128-byte preamble."""
    if path.lower().endswith(DICOM_EXTENSIONS):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False  # square_gray reports it.


def _pydicom():
    try:
        import pydicom
        import pydicom.pixels
    except ImportError:
        raise images.ImageError(_INSTALL) from None
    return pydicom


def read_dicom(path: str, warnings: list[str] | None = None) -> np.ndarray:
    """A single-frame grayscale DICOM -> uint8 [H, W], as a viewer would display it; its
    `image_checks` codes (but the size's) are appended to `warnings` if given.

    Stored values -> modality LUT / rescale -> the VOI LUT or window (the first one) if the
    file has one, scaled from the range that transform outputs over all storable values;
    else the image's own min..max. MONOCHROME1 is inverted (255 - x) so high is bright.
    """
    pydicom = _pydicom()
    try:
        ds = pydicom.dcmread(path)
        if "PixelData" not in ds:  # pydicom stops quietly where a file ends
            raise images.ImageError(
                f"DICOM without pixel data: the file ({os.path.getsize(path)} bytes) is truncated or holds no image"
            )
        _check_pixel_bytes(ds)
        interpretation = str(ds.get("PhotometricInterpretation", ""))
        if interpretation not in ("MONOCHROME1", "MONOCHROME2"):
            raise images.ImageError(
                f"unsupported DICOM: PhotometricInterpretation {interpretation or 'missing'}"
                " (only grayscale MONOCHROME1/MONOCHROME2 is supported)"
            )
        frames = int(ds.get("NumberOfFrames") or 1)
        if frames > 1:
            raise images.ImageError(f"unsupported DICOM: {frames} frames (only single-frame)")
        try:
            pixels = ds.pixel_array
        except Exception as e:  # noqa: BLE001 - no decoder, bad compressed data...
            raise images.ImageError(f"DICOM pixel data unreadable: {type(e).__name__}: {e}") from None
        if pixels.ndim != 2:
            raise images.ImageError(f"unsupported DICOM: pixel array of shape {pixels.shape}")
        values = pydicom.pixels.apply_modality_lut(pixels, ds)
        if ds.get("VOILUTSequence") or ("WindowCenter" in ds and "WindowWidth" in ds):
            values = pydicom.pixels.apply_voi_lut(values, ds)
            lo, hi = _voi_range(pydicom, ds)
        else:
            lo, hi = float(values.min()), float(values.max())
            if warnings is not None and int(ds.get("BitsStored") or 8) > 8 and image_checks.is_stretched(lo, hi):
                warnings.append(image_checks.STRETCHED_16BIT)
        if warnings is not None and image_checks.is_lateral(ds.get("ViewPosition")):
            warnings.insert(0, image_checks.LATERAL_VIEW)
        values = np.asarray(values, np.float64)
    except images.ImageError:
        raise
    except Exception as e:  # noqa: BLE001 - pydicom raises many types (bad file, no decoder...)
        raise images.ImageError(f"DICOM: {type(e).__name__}: {e}") from None
    scaled = np.clip((values - lo) * (255.0 / (hi - lo if hi > lo else 1.0)), 0, 255)
    gray = np.round(scaled).astype(np.uint8)
    return 255 - gray if interpretation == "MONOCHROME1" else gray


def _check_pixel_bytes(ds) -> None:
    """Uncompressed pixel data shorter than its rows x columns x samples x bits says: truncated."""
    if ds.file_meta.get("TransferSyntaxUID") not in _UNCOMPRESSED:
        return  # compressed: the decoder reports its own failure
    try:
        expected = (
            (int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel") or 1) * int(ds.get("NumberOfFrames") or 1))
            * int(ds.BitsAllocated)
            // 8
        )
    except (AttributeError, TypeError, ValueError):
        return  # missing or bad size elements: reported where they are read
    if len(ds.PixelData) < expected:
        raise images.ImageError(f"DICOM pixel data truncated: {len(ds.PixelData)} of {expected} bytes")


def _voi_range(pydicom, ds) -> tuple[float, float]:
    """The min and max that modality + VOI transforms output over all storable values."""
    bits = int(ds.BitsStored)
    lo = -(2 ** (bits - 1)) if ds.get("PixelRepresentation") else 0  # 1: signed.
    hi = lo + 2**bits - 1
    stored = np.arange(lo, hi + 1) if bits <= 16 else np.array([lo, hi])
    out = pydicom.pixels.apply_voi_lut(pydicom.pixels.apply_modality_lut(stored, ds), ds)
    return float(np.min(out)), float(np.max(out))


def load_image(path: str, size: int) -> np.ndarray:
    """An image file -> uint8 [size, size, 1], preprocessed exactly as in the dataset builds.

    Raises ImageError naming the problem for a file that cannot be decoded, or whose size
    is degenerate (a side under MIN_SIDE pixels, or longer than MAX_ASPECT x the other).
    """
    return read_image(path, size)[0]


def read_image(path: str, size: int) -> tuple[np.ndarray, list[str]]:
    """`load_image`'s image and its `image_checks` codes (`size`: the stored image size)."""
    warnings: list[str] = []
    if not _is_dicom(path):
        try:
            with Image.open(path) as image:
                width, height = image.size
                warnings = image_checks.pil_warnings(image, size)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            return images.square_gray(path, size), warnings  # which names the problem
        _check_size(width, height)
        return images.square_gray(path, size), warnings
    gray = read_dicom(path, warnings)
    _check_size(gray.shape[1], gray.shape[0])
    return images.resize_crop(Image.fromarray(gray), size), warnings + image_checks.size_warnings(
        gray.shape[1], gray.shape[0], size
    )


def read_array(array: np.ndarray, size: int) -> tuple[np.ndarray, list[str]]:
    """Pixels (uint8 or uint16 [H, W] or [H, W, 1]; uint8 [H, W, 3] RGB) -> the stored image
    and its codes, as a PNG of them would give. Raises ImageError for other arrays."""
    image = images.array_image(array)
    _check_size(*image.size)
    warnings = image_checks.pil_warnings(image, size)
    return images.resize_crop(images.to_gray(image), size), warnings


def _check_size(width: int, height: int) -> None:
    if min(width, height) < MIN_SIDE:
        raise images.ImageError(f"degenerate image of {width}x{height} pixels (a side under {MIN_SIDE})")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise images.ImageError(
            f"degenerate image of {width}x{height} pixels (one side over {MAX_ASPECT:g}x the other)"
        )


def _try_load(item, size: int) -> tuple[np.ndarray, list[str]] | str:
    try:
        return read_array(item, size) if isinstance(item, np.ndarray) else read_image(os.fspath(item), size)
    except images.ImageError as e:
        return str(e)
    except OSError as e:
        return f"{type(e).__name__}: {e}"


@dataclasses.dataclass
class Loaded:
    """What `load_inputs` decoded: `names[i]` (a path, or `<array j>` for the j-th input
    being an array), its stored image `stored[i]` (uint8 [n, size, size, 1]) and
    `image_checks` codes `warnings[i]`; and the failures, [(name, reason)]."""

    names: list[str]
    stored: np.ndarray
    warnings: list[list[str]]
    failed: list[tuple[str, str]]


def input_name(item, index: int) -> str:
    return f"<array {index}>" if isinstance(item, np.ndarray) else os.fspath(item)


def load_inputs(
    items: Sequence,
    size: int,
    *,
    offset: int = 0,
    on_error: Callable[[str, str], None] | None = None,
    workers: int | None = None,
) -> Loaded:
    """Decodes `items` (paths or arrays; `workers` threads, default min(8, CPUs)), skipping
    failures, in input order; `on_error(name, reason)` is called per failure. An array is
    named by its place in the caller's list, `offset` + its index in `items`."""
    workers = workers or min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda item: _try_load(item, size), items))
    out = Loaded([], np.zeros((0, size, size, 1), np.uint8), [], [])
    arrays = []
    for i, (item, result) in enumerate(zip(items, results)):
        name = input_name(item, offset + i)
        if isinstance(result, str):
            out.failed.append((name, result))
            if on_error is not None:
                on_error(name, result)
        else:
            out.names.append(name)
            arrays.append(result[0])
            out.warnings.append(result[1])
    if arrays:
        out.stored = np.stack(arrays)
    return out


def load_images(
    paths: Sequence[str],
    size: int,
    *,
    on_error: Callable[[str, str], None] | None = None,
    workers: int | None = None,
) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
    """`load_inputs` of files: (the paths decoded, their uint8 [n, size, size, 1] images,
    [(path, reason)] for the failures), in input order."""
    loaded = load_inputs(paths, size, on_error=on_error, workers=workers)
    return loaded.names, loaded.stored, loaded.failed
