"""tensorflow-datasets builder `chestxray14`, from a manual download of NIH ChestX-ray14
(https://nihcc.app.box.com/v/ChestXray-NIHCC, or a mirror):

    python -m data_pipelines.build --dataset=chestxray14 --manual_dir=DIR --data_dir=DIR

No reports (`report` is ""). Two label features: `nih_labels` int8 [14], the 14 NIH
findings (1/0) in `labels.NIH_CLASS_NAMES` order, for training on this dataset
(`data.label_set='nih'`); and `labels` int8 [14] in CheXpert order, the findings both
sets share (`labels.NIH_TO_CHEXPERT`) as 1/0 and -2 elsewhere, for scoring a
MIMIC-trained model on the shared findings (`data.label_set='chexpert'`, policy 'ignore').
Splits: the official `test_list.txt`; `train_val_list.txt` split by patient into
train and validation (`val_fraction`, seeded).
"""

from __future__ import annotations

import dataclasses
import glob
import os

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from data_pipelines import labels as labels_lib, manual_builder, source_files

CSV_NAMES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
TRAIN_VAL_LIST, TEST_LIST = "train_val_list.txt", "test_list.txt"
REQUIRED = ("Image Index", "Finding Labels", "Patient ID", "View Position")

LAYOUT = f"""\
  DIR/{CSV_NAMES[0]}   (or {CSV_NAMES[1]})
  DIR/{TRAIN_VAL_LIST}
  DIR/{TEST_LIST}
  DIR/images/00000001_000.png, ...   (or DIR/images_001/images/..., DIR/images_002/images/...)"""


@dataclasses.dataclass(eq=False)
class ChestXray14Config(manual_builder.ManualConfig):
    val_fraction: float = 0.1
    split_seed: int = 0


_CONFIGS: dict[str, ChestXray14Config] = {}


def builder_config(image_size: int = 224, val_fraction: float = 0.1, split_seed: int = 0) -> ChestXray14Config:
    """Config of these options; the name lists non-default ones: `s224_val0p2_seed1`."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"chestxray14 val_fraction must be in (0, 1), got {val_fraction}")
    name = (
        f"s{image_size}"
        + ("" if val_fraction == 0.1 else f"_val{repr(float(val_fraction)).replace('.', 'p')}")
        + ("" if split_seed == 0 else f"_seed{split_seed}")
    )
    if name not in _CONFIGS:
        _CONFIGS[name] = ChestXray14Config(
            name=name,
            description=f"{image_size}px, validation {val_fraction:.0%} of train_val by patient, seed {split_seed}.",
            image_size=image_size,
            val_fraction=val_fraction,
            split_seed=split_seed,
        )
    return _CONFIGS[name]


def _image_paths(manual_dir: str) -> dict[str, str]:
    """Image file name -> path, over `images/` and the mirrors' `images_NNN/images/`."""
    paths = {}
    for pattern in ("images/*.png", "images_*/images/*.png"):
        for path in glob.glob(os.path.join(glob.escape(manual_dir), pattern)):
            paths.setdefault(os.path.basename(path), path)
    return paths


def _read_list(path: str) -> set[str]:
    with open(path, encoding="utf-8") as f:
        return {line.strip() for line in f if line.strip()}


class ChestXray14(manual_builder.ManualBuilder):
    """NIH ChestX-ray14 frontal chest X-rays with 14 NLP-mined labels; no reports."""

    name = "chestxray14"

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [builder_config(224), builder_config(512)]
    EXTRA_FEATURES = {"nih_labels": tfds.features.Tensor(shape=(labels_lib.NUM_CLASSES,), dtype=np.int8)}
    EXTRA_METADATA = {
        "nih_class_names": list(labels_lib.NIH_CLASS_NAMES),
        "nih_to_chexpert": labels_lib.NIH_TO_CHEXPERT,
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download NIH ChestX-ray14 (https://nihcc.app.box.com/v/ChestXray-NIHCC: the "
        "images_*.tar.gz archives extracted, the Data_Entry CSV and the two split lists), "
        "laid out as:\n" + LAYOUT
    )
    code_path = epath.Path(__file__)

    def _index(self, manual_dir: str) -> manual_builder.Index:
        cfg = self.builder_config
        find = lambda names: source_files.find_first(manual_dir, names, self.name, LAYOUT)
        csv_path = find(CSV_NAMES)
        rows = source_files.read_csv(csv_path, REQUIRED, aliases={"Patient Sex": "Patient Gender"})
        test = _read_list(find([TEST_LIST]))
        train_val = _read_list(find([TRAIN_VAL_LIST]))
        paths = _image_paths(manual_dir)
        if not paths:
            raise source_files.LayoutError(f"chestxray14: no images in {manual_dir}. Expected:\n{LAYOUT}")

        index = manual_builder.Index()
        fractions = {"validation": cfg.val_fraction, "train": 1 - cfg.val_fraction}
        for line, row in enumerate(rows, start=2):
            name = row["Image Index"].strip()
            if name in test:
                split = "test"
            elif name in train_val:
                split = manual_builder.seeded_split(row["Patient ID"].strip(), cfg.split_seed, fractions)
            else:
                index.skip("in neither split list", name)
                continue
            if name not in paths:
                index.skip("missing image file", name)
                continue
            findings = {f.strip() for f in row["Finding Labels"].split("|") if f.strip()}
            try:
                labels, nih = labels_lib.nih_findings_to_labels(findings)
            except ValueError as e:
                raise ValueError(f"{csv_path}, line {line} ({name}): {e}") from None
            stem = name.removesuffix(".png")
            index.entries.append(
                manual_builder.Entry(
                    split=split,
                    image_id=stem,
                    source=paths[name],
                    subject_id=row["Patient ID"].strip(),
                    study_id=stem,
                    view=row["View Position"].strip(),
                    report="",
                    labels=labels,
                    extra={"nih_labels": nih},
                )
            )
        return index
