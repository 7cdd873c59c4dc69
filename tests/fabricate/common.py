"""Shared pieces of the fabricated source trees."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import os

import numpy as np
from PIL import Image


@dataclasses.dataclass
class Example:
    """What the build must store for one image."""

    split: str
    report: str
    labels: tuple[int, ...]  # CheXpert order
    subject_id: str
    study_id: str
    view: str
    extra: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Expected:
    examples: dict[str, Example]  # image_id -> example
    skipped: dict[str, int]  # build-report reason -> count
    notes: dict[str, int] = dataclasses.field(default_factory=dict)


def image_bytes(seed: int, fmt: str, size=(40, 52), mode: str = "L") -> bytes:
    """A random image of `size` (width, height), encoded as `fmt` ('JPEG' or 'PNG')."""
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        pixels = rng.integers(0, 4096, size[::-1], dtype=np.uint16)
        image = Image.fromarray(pixels)
    else:
        channels = {"L": (), "RGB": (3,), "RGBA": (4,)}[mode]
        image = Image.fromarray(rng.integers(0, 256, size[::-1] + channels, dtype=np.uint8), mode)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def corrupt(data: bytes) -> bytes:
    """A truncated copy: the header parses, the pixel data does not."""
    return data[: len(data) // 3]


def write(path: str, data: bytes | str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(
        path, "wb" if isinstance(data, bytes) else "w", encoding=None if isinstance(data, bytes) else "utf-8"
    ) as f:
        f.write(data)


def write_csv(path: str, header: list[str], rows: list[list], gz: bool = False) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    data = text.getvalue().encode()
    write(path, gzip.compress(data) if gz else data)
