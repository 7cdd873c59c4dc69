"""A fake hospital export for the `csv` builder: `images/` and `table.csv` (see `write`),
with one row for each way a row can be bad."""

from __future__ import annotations

import os

from data_pipelines import labels as labels_lib
from tests.fabricate import common

HEADER = ["path", "patient_id", "study", "view", "split", "findings", "impression", *labels_lib.CLASS_NAMES]
OPTIONS = dict(
    table="table.csv",
    image_root="images",
    report_columns="findings,impression",
    study_column="study",
    view_column="view",
    split_column="split",
)
FLAGS = [f"--{k}={v}" for k, v in OPTIONS.items()]

# What every bad row is skipped as, and how many rows each reason takes.
SKIPPED = {
    "blank image path": 1,
    "duplicate image path": 1,
    "image path outside image_root": 1,
    "missing image": 1,
    "patient in two splits": 2,
    "unknown label value": 1,
    "unknown split value": 1,
    "unreadable image": 1,
}


def _labels(k: int) -> list[str]:
    """Raw cells of the 14 label columns: every code, blanks included."""
    cells = ["1.0", "0.0", "-1.0", "", "1", "0", "-1"]
    return [cells[(k + j) % len(cells)] for j in range(labels_lib.NUM_CLASSES)]


def codes(cells: list[str]) -> tuple[int, ...]:
    return tuple(labels_lib.parse_chexpert_value(c) for c in cells)


def write(root: str) -> common.Expected:
    """Writes the tree under `root`; returns what the build must store and skip."""
    rows, examples = [], {}
    k = 0

    def good(patient: str, study: str, view: str, split: str, fmt: str = "PNG", report=None):
        nonlocal k
        k += 1
        report = report or ("Heart  normal.", f"No acute disease,\n{patient} {study}.")
        path = f"{patient}/{study}/v{k}.{'png' if fmt == 'PNG' else 'jpg'}"
        common.write(os.path.join(root, "images", path), common.image_bytes(k, fmt))
        cells = _labels(k)
        rows.append([path, patient, study, view, split, *report, *cells])
        examples[path.rsplit(".", 1)[0]] = common.Example(
            split={"valid": "validation"}.get(split.lower(), split.lower()),
            report=" ".join(" ".join(text.split()) for text in report if text.strip()),
            labels=codes(cells),
            subject_id=patient,
            study_id=f"{patient}/{study}",
            view=view,
        )
        return path

    for p, split in (("p1", "train"), ("p2", "train"), ("p3", "Train"), ("p4", "valid"), ("p5", "test")):
        for s in ("s1", "s2"):
            good(p, s, "PA", split, fmt="JPEG" if p == "p2" else "PNG")
    good("p5", "s2", "LL", "test")  # A study of two images, one report.
    good("p6", "s1", "AP", "test", report=("", "Clear."))  # An empty findings cell.
    dup = good("p1", "s3", "LL", "train")

    blank = list(rows[0])
    rows.append(["", "p1", "s9", "PA", "train", "", "", *_labels(0)])  # blank image path
    rows.append([dup, "p1", "s3", "LL", "train", *blank[5:]])  # duplicate image path
    rows.append(["../secret.png", "p1", "s8", "PA", "train", "", "", *_labels(0)])  # outside the root
    rows.append(["p7/s1/gone.png", "p7", "s1", "PA", "train", "", "", *_labels(0)])  # missing image
    bad_label = _labels(1)
    bad_label[3] = "2"
    common.write(os.path.join(root, "images", "p8/s1/a.png"), common.image_bytes(90, "PNG"))
    rows.append(["p8/s1/a.png", "p8", "s1", "PA", "train", "", "", *bad_label])  # unknown label value
    common.write(os.path.join(root, "images", "p9/s1/a.png"), common.image_bytes(91, "PNG"))
    common.write(os.path.join(root, "images", "p9/s2/a.png"), common.image_bytes(92, "PNG"))
    rows.append(["p9/s1/a.png", "p9", "s1", "PA", "train", "", "", *_labels(2)])  # patient in two splits
    rows.append(["p9/s2/a.png", "p9", "s2", "PA", "test", "", "", *_labels(3)])
    common.write(os.path.join(root, "images", "p10/s1/a.png"), common.image_bytes(93, "PNG"))
    rows.append(["p10/s1/a.png", "p10", "s1", "PA", "holdout", "", "", *_labels(4)])  # unknown split value
    common.write(os.path.join(root, "images", "p11/s1/a.png"), common.corrupt(common.image_bytes(94, "PNG")))
    rows.append(["p11/s1/a.png", "p11", "s1", "PA", "train", "", "", *_labels(5)])  # unreadable image
    common.write_csv(os.path.join(root, "table.csv"), HEADER, rows)
    return common.Expected(examples=examples, skipped=dict(SKIPPED), notes={"images without report text": 0})
