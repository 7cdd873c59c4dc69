"""The user's own images for prediction: finding them, and decoding PNG/JPEG/DICOM like the builds."""

import glob
import os
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from data_pipelines import images, user_images

SIZE = 32


def _pixels(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A gradient with noise: uint8 [h, w], so resizing and cropping have content to move."""
    noise = np.random.default_rng(seed).integers(0, 40, (h, w))
    return (np.add.outer(np.arange(h) * 3, np.arange(w) * 2) + noise).clip(0, 255).astype(np.uint8)


@pytest.fixture
def image_dir(tmp_path):
    """good.png, b.jpg, sub/C.JPG, notes.txt, corrupt.png (random bytes), trunc.jpeg."""
    Image.fromarray(_pixels(48, 40, 1)).save(tmp_path / "good.png")
    Image.fromarray(_pixels(40, 56, 2)).save(tmp_path / "b.jpg", quality=90)
    (tmp_path / "sub").mkdir()
    Image.fromarray(_pixels(64, 64, 3)).convert("RGB").save(tmp_path / "sub" / "C.JPG")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "corrupt.png").write_bytes(np.random.default_rng(4).bytes(500))
    Image.fromarray(_pixels(80, 80, 5)).save(tmp_path / "full.jpeg", quality=95)
    data = (tmp_path / "full.jpeg").read_bytes()
    (tmp_path / "trunc.jpeg").write_bytes(data[: len(data) // 2])
    (tmp_path / "full.jpeg").unlink()
    return tmp_path


def test_find_images_directory_is_recursive_sorted_and_skips_other_files(image_dir):
    names = ["b.jpg", "corrupt.png", "good.png", os.path.join("sub", "C.JPG"), "trunc.jpeg"]
    assert user_images.find_images(str(image_dir)) == sorted(str(image_dir / n) for n in names)


def test_load_images_keeps_the_good_ones_in_order_and_reports_the_rest(image_dir):
    paths = user_images.find_images(str(image_dir))
    errors = []
    good, array, failed = user_images.load_images(paths, SIZE, on_error=lambda p, r: errors.append((p, r)))
    assert good == [str(image_dir / n) for n in ("b.jpg", "good.png", "sub/C.JPG")]
    assert array.dtype == np.uint8 and array.shape == (3, SIZE, SIZE, 1)
    for path, image in zip(good, array):
        np.testing.assert_array_equal(image, images.square_gray(path, SIZE))
    assert [p for p, _ in failed] == [str(image_dir / "corrupt.png"), str(image_dir / "trunc.jpeg")]
    assert all(reason for _, reason in failed)
    assert "truncated" in failed[1][1]
    assert errors == failed


def test_load_images_of_nothing():
    good, array, failed = user_images.load_images([], SIZE, workers=1)
    assert good == [] and failed == [] and array.shape == (0, SIZE, SIZE, 1)


def test_find_images_file_and_glob(image_dir):
    png = str(image_dir / "good.png")
    assert user_images.find_images(png) == [png]
    assert user_images.find_images(str(image_dir / "*.jp*g")) == [
        str(image_dir / "b.jpg"),
        str(image_dir / "trunc.jpeg"),
    ]
    assert user_images.find_images(str(image_dir / "**" / "*.JPG")) == [str(image_dir / "sub" / "C.JPG")]
    # A glob takes what it matches, whatever the extension; decoding then reports it.
    txt = user_images.find_images(str(image_dir / "*.txt"))
    assert txt == [str(image_dir / "notes.txt")]
    assert [p for p, _ in user_images.load_images(txt, SIZE)[2]] == txt


def test_find_images_nothing_found(tmp_path):
    missing = str(tmp_path / "nope.png")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        user_images.find_images(missing)
    with pytest.raises(FileNotFoundError, match=r"\*\.png"):
        user_images.find_images(str(tmp_path / "*.png"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty.*no image"):
        user_images.find_images(str(tmp_path / "empty"))
    (tmp_path / "empty" / "a.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="no image"):
        user_images.find_images(str(tmp_path / "empty"))


def test_recursive_glob_stops_at_symlink_loops(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    Image.fromarray(_pixels(40, 40)).save(tmp_path / "d" / "a.png")
    Image.fromarray(_pixels(40, 40)).save(tmp_path / "d" / "sub" / "b.png")
    os.symlink("..", tmp_path / "d" / "sub" / "up")  # two loops: Python's glob doubles per level
    os.symlink(".", tmp_path / "d" / "sub" / "here")
    found = []
    worker = threading.Thread(
        target=lambda: found.extend(user_images.find_images(f"{tmp_path}/d/**/*.png")), daemon=True
    )
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "find_images followed the link loop"
    # Each real directory once, by the first path that reaches it.
    assert found == [str(tmp_path / "d" / "a.png"), str(tmp_path / "d" / "sub" / "b.png")]


def test_recursive_glob_matches_like_glob(image_dir):
    (image_dir / ".hidden").mkdir()
    Image.fromarray(_pixels(40, 40)).save(image_dir / ".hidden" / "h.png")
    Image.fromarray(_pixels(40, 40)).save(image_dir / "sub" / ".h.png")
    for pattern in ("**/*.png", "**", "sub/**", "**/sub/*", "*/*.JPG", "**/.h*", ".*/*"):
        spec = str(image_dir / pattern)
        expected = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
        assert user_images.find_images(spec) == expected, pattern


def test_degenerate_images_are_skipped_with_the_reason(tmp_path):
    paths = []
    for h, w in ((1, 1), (2, 3000), (200, 40)):
        paths.append(str(tmp_path / f"{h}x{w}.png"))
        Image.fromarray(_pixels(h, w)).save(paths[-1])
    paths.append(str(tmp_path / "fine.png"))
    Image.fromarray(_pixels(60, 40)).save(paths[-1])
    good, array, failed = user_images.load_images(paths, SIZE)
    assert good == paths[3:] and array.shape == (1, SIZE, SIZE, 1)
    reasons = dict(failed)
    assert "degenerate image of 1x1 pixels" in reasons[paths[0]]
    assert "degenerate image of 3000x2 pixels" in reasons[paths[1]]
    assert "40x200 pixels (one side over 4x the other)" in reasons[paths[2]]


def test_dicom_without_pydicom_says_how_to_install(tmp_path, monkeypatch):
    path = tmp_path / "scan.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(images.ImageError, match=r'pip install "vkd-jax\[dicom\]"'):
        user_images.load_image(str(path), SIZE)
    assert "pip install" in user_images.load_images([str(path)], SIZE)[2][0][1]


# DICOM ------------------------------------------------------------------------------------


def _write_dicom(path, pixels: np.ndarray, interpretation: str = "MONOCHROME2", bits: int = 12, **elements) -> str:
    """A minimal valid DICOM file (with preamble and file meta) holding `pixels`."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # Digital X-Ray Image Storage.
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.set_pixel_data(pixels, interpretation, bits, generate_instance_uid=False)
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    for name, value in elements.items():
        setattr(ds, name, value)
    ds.save_as(str(path), enforce_file_format=True)
    assert pydicom.dcmread(str(path)).PhotometricInterpretation == interpretation
    return str(path)


def _stored(h: int = 40, w: int = 40) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 4096, (h, w)).astype(np.uint16)


WINDOW = {"RescaleSlope": 2, "RescaleIntercept": -1024, "WindowCenter": 2000, "WindowWidth": 3000}


def _windowed(stored: np.ndarray) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 'LINEAR' window of the rescaled values -> 0..255 (independent)."""
    x = stored.astype(np.float64) * 2 - 1024
    c, w = 2000 - 0.5, 3000 - 1
    y = np.clip((x - c) / w + 0.5, 0, 1)
    y[x <= c - w / 2], y[x > c + w / 2] = 0, 1
    return np.round(y * 255).astype(np.uint8)


def test_dicom_rescale_and_window(tmp_path):
    stored = _stored()
    path = _write_dicom(tmp_path / "a.dcm", stored, **WINDOW)
    gray = user_images.read_dicom(path)
    expected = _windowed(stored)
    assert gray.dtype == np.uint8 and gray.shape == stored.shape
    assert np.abs(gray.astype(int) - expected).max() <= 1  # Rounding at .5 only.
    assert (gray == 0).any() and (gray == 255).any() and ((gray > 0) & (gray < 255)).any()
    np.testing.assert_array_equal(user_images.load_image(path, SIZE), images.resize_crop(Image.fromarray(gray), SIZE))


def test_dicom_monochrome1_is_inverted(tmp_path):
    stored = _stored()
    mono2 = user_images.read_dicom(_write_dicom(tmp_path / "a.dcm", stored, **WINDOW))
    mono1 = user_images.read_dicom(_write_dicom(tmp_path / "b.dcm", stored, "MONOCHROME1", **WINDOW))
    np.testing.assert_array_equal(mono1, 255 - mono2)


def test_dicom_without_window_stretches_its_range(tmp_path):
    stored = (_stored() // 4 + 300).astype(np.uint16)
    gray = user_images.read_dicom(_write_dicom(tmp_path / "a.dicom", stored))
    lo, hi = stored.min(), stored.max()
    expected = np.round((stored - lo.astype(np.float64)) * 255 / (hi - lo)).astype(np.uint8)
    np.testing.assert_array_equal(gray, expected)


def test_dicom_non_square_and_detected_by_magic(tmp_path):
    stored = _stored(40, 64)
    with_ext = _write_dicom(tmp_path / "a.DCM", stored)
    without_ext = _write_dicom(tmp_path / "scan", stored)
    image = user_images.load_image(with_ext, SIZE)
    assert image.shape == (SIZE, SIZE, 1) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, images.resize_crop(Image.fromarray(user_images.read_dicom(with_ext)), SIZE))
    np.testing.assert_array_equal(user_images.load_image(without_ext, SIZE), image)
    assert user_images.find_images(str(tmp_path)) == [with_ext]  # By extension only.


def test_dicom_unsupported_or_corrupt(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    frames = np.zeros((2, 8, 8), np.uint16)
    paths = [
        _write_dicom(tmp_path / "rgb.dcm", rgb, "RGB", 8),
        _write_dicom(tmp_path / "frames.dcm", frames),
        str(tmp_path / "junk.dcm"),
    ]
    (tmp_path / "junk.dcm").write_bytes(np.random.default_rng(0).bytes(300))
    good, _, failed = user_images.load_images(paths, SIZE)
    assert good == []
    reasons = dict(failed)
    assert "PhotometricInterpretation RGB" in reasons[paths[0]]
    assert "2 frames" in reasons[paths[1]]
    assert reasons[paths[2]].startswith("DICOM:")


def test_truncated_or_degenerate_dicom_names_the_cause(tmp_path):
    full = _write_dicom(tmp_path / "full.dcm", _stored())
    data = open(full, "rb").read()
    pixel_bytes = _stored().nbytes
    (tmp_path / "cut_pixels.dcm").write_bytes(data[: len(data) - pixel_bytes // 2])
    (tmp_path / "cut_header.dcm").write_bytes(data[:300])  # inside the dataset, before its pixels
    tiny = _write_dicom(tmp_path / "tiny.dcm", _stored(1, 1))
    paths = [str(tmp_path / "cut_pixels.dcm"), str(tmp_path / "cut_header.dcm"), tiny]
    good, _, failed = user_images.load_images(paths, SIZE)
    reasons = dict(failed)
    assert good == []
    assert reasons[paths[0]] == f"DICOM pixel data truncated: {pixel_bytes // 2} of {pixel_bytes} bytes"
    assert "truncated" in reasons[paths[1]] and "PhotometricInterpretation" not in reasons[paths[1]]
    assert reasons[tiny] == "degenerate image of 1x1 pixels (a side under 16)"


def test_dicom_voi_lut_is_scaled_by_its_output_range(tmp_path):
    pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset

    # A LUT of 16-bit entries that only uses 0..4095 (common): its own range maps to 0..255.
    lut = Dataset()
    lut.add_new(0x00283002, "US", [4096, 0, 16])  # LUT Descriptor: entries, first, bits.
    lut.add_new(0x00283006, "US", [min(4095, 2 * i) for i in range(4096)])  # LUT Data.
    stored = _stored()
    gray = user_images.read_dicom(_write_dicom(tmp_path / "a.dcm", stored, VOILUTSequence=[lut]))
    expected = np.round(np.minimum(stored.astype(np.float64) * 2, 4095) * 255 / 4095)
    np.testing.assert_array_equal(gray, expected.astype(np.uint8))
