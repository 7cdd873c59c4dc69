"""A fake NIH ChestX-ray14 tree: the v2020 CSV, split lists, `images_00N/images/` (see `write`)."""

from __future__ import annotations

import os

from data_pipelines import labels as labels_lib, manual_builder
from tests.fabricate import common

# The v2020 header: bracketed names hold commas, `Patient Sex`, a trailing empty column.
HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Sex,"
    "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)

# (patient, follow-up, findings, list, kind); list 'train_val', 'test' or None.
IMAGES = [
    (1, 0, "Cardiomegaly", "train_val", "ok"),
    (1, 1, "Cardiomegaly|Emphysema", "train_val", "ok"),
    (1, 2, "No Finding", "train_val", "16bit"),
    (2, 0, "Effusion|Infiltration|Mass", "test", "ok"),
    (2, 1, "No Finding", "test", "ok"),
    (3, 0, "Hernia", "train_val", "corrupt"),
    (3, 1, "Pneumothorax", "train_val", "ok"),
    (4, 0, "No Finding", None, "ok"),  # In neither list.
    (5, 0, "Nodule|Pleural_Thickening", "train_val", "missing"),
]
for p in range(6, 16):
    IMAGES.append((p, 0, "Atelectasis|Edema" if p % 2 else "No Finding", "test" if p % 3 == 0 else "train_val", "ok"))


def write(root: str, *, val_fraction: float = 0.3, image_size=(48, 40)) -> common.Expected:
    """Writes the tree under `root`; the expected splits use `val_fraction` and seed 0."""
    lines, lists, expected = [HEADER], {"train_val": [], "test": []}, {}
    for k, (patient, follow_up, findings, listed, kind) in enumerate(IMAGES):
        name = f"{patient:08d}_{follow_up:03d}.png"
        view = "AP" if patient % 2 else "PA"
        lines.append(f"{name},{findings},{follow_up},{patient},{40 + patient},M,{view},2500,2048,0.143,0.143,")
        if listed:
            lists[listed].append(name)
        folder = f"images_{1 + k % 2:03d}"  # Spread over two folders, as mirrors do.
        data = common.image_bytes(k, "PNG", image_size, "I;16" if kind == "16bit" else "L")
        if kind != "missing":
            common.write(
                os.path.join(root, folder, "images", name), common.corrupt(data) if kind == "corrupt" else data
            )
        if kind in ("ok", "16bit") and listed:
            split = (
                "test"
                if listed == "test"
                else manual_builder.seeded_split(
                    str(patient), 0, {"validation": val_fraction, "train": 1 - val_fraction}
                )
            )
            labels, nih = labels_lib.nih_findings_to_labels(set(findings.split("|")))
            expected[name.removesuffix(".png")] = common.Example(
                split=split,
                report="",
                labels=tuple(labels),
                subject_id=str(patient),
                study_id=name.removesuffix(".png"),
                view=view,
                extra={"nih_labels": tuple(nih)},
            )
    common.write(os.path.join(root, "Data_Entry_2017_v2020.csv"), "\n".join(lines) + "\n")
    for listed, names in lists.items():
        common.write(os.path.join(root, f"{listed}_list.txt"), "\n".join(names) + "\n")
    return common.Expected(
        examples=expected, skipped={"in neither split list": 1, "unreadable image": 1, "missing image file": 1}
    )
