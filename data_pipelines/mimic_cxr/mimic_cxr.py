"""tensorflow-datasets builder `mimic_cxr`, from a manual download of MIMIC-CXR-JPG v2.0.0
and the MIMIC-CXR v2.0.0 reports (credentialed PhysioNet access; nothing is downloaded).

    python -m data_pipelines.build --dataset=mimic_cxr --manual_dir=DIR --data_dir=DIR

Config options (each non-default one is part of the config name, e.g. `s224_views-all`):
`image_size`; `views` 'frontal' (ViewPosition PA or AP, the reference's) or 'all';
`labeler` 'chexpert' or 'negbio'; `sections` of the report (`sections.SECTIONS`).
Splits: the official `train`, `validate` (stored as `validation`) and `test`.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from data_pipelines import labels as labels_lib, manual_builder, source_files
from data_pipelines.mimic_cxr import reports as reports_lib, sections as sections_lib

METADATA = "mimic-cxr-2.0.0-metadata.csv.gz"
SPLIT = "mimic-cxr-2.0.0-split.csv.gz"
LABELS = {"chexpert": "mimic-cxr-2.0.0-chexpert.csv.gz", "negbio": "mimic-cxr-2.0.0-negbio.csv.gz"}
VIEWS = ("frontal", "all")
FRONTAL = ("PA", "AP")
_SPLIT_NAMES = {"train": "train", "validate": "validation", "test": "test"}

LAYOUT = f"""\
  DIR/{METADATA}
  DIR/{LABELS["chexpert"]}   (or {LABELS["negbio"]} with labeler='negbio')
  DIR/{SPLIT}
  DIR/files/p10/p10000032/s50414267/<dicom_id>.jpg   (MIMIC-CXR-JPG v2.0.0 images)
  DIR/{reports_lib.ZIP_NAME}   (MIMIC-CXR v2.0.0 reports), or its extracted folder
      anywhere below DIR, holding files/p10/p10000032/s50414267.txt"""


@dataclasses.dataclass(eq=False)
class MimicCxrConfig(manual_builder.ManualConfig):
    views: str = "frontal"
    labeler: str = "chexpert"
    sections: str = "findings_impression"


_CONFIGS: dict[str, MimicCxrConfig] = {}


def builder_config(
    image_size: int = 224, views: str = "frontal", labeler: str = "chexpert", sections: str = "findings_impression"
) -> MimicCxrConfig:
    """The config of these options; its name lists the non-default ones: `s224_negbio`."""
    for field, value, choices in (
        ("views", views, VIEWS),
        ("labeler", labeler, tuple(LABELS)),
        ("sections", sections, sections_lib.SECTIONS),
    ):
        if value not in choices:
            raise ValueError(f"mimic_cxr {field} must be one of {choices}, got {value!r}")
    name = (
        f"s{image_size}"
        + ("" if views == "frontal" else f"_views-{views}")
        + ("" if labeler == "chexpert" else f"_{labeler}")
        + ("" if sections == "findings_impression" else f"_{sections}")
    )
    if name not in _CONFIGS:
        _CONFIGS[name] = MimicCxrConfig(
            name=name,
            description=f"{image_size}px, {views} views, {labeler} labels, report {sections}.",
            image_size=image_size,
            views=views,
            labeler=labeler,
            sections=sections,
        )
    return _CONFIGS[name]


class MimicCxr(manual_builder.ManualBuilder):
    """MIMIC-CXR-JPG v2.0.0 chest X-rays with their free-text reports and 14 CheXpert labels."""

    name = "mimic_cxr"

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [builder_config(224), builder_config(512)]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download MIMIC-CXR-JPG v2.0.0 (https://physionet.org/content/mimic-cxr-jpg/2.0.0/) "
        "and mimic-cxr-reports.zip from MIMIC-CXR v2.0.0 "
        "(https://physionet.org/content/mimic-cxr/2.0.0/), laid out as:\n" + LAYOUT
    )
    code_path = epath.Path(__file__)

    def _index(self, manual_dir: str) -> manual_builder.Index:
        cfg = self.builder_config
        find = lambda name: source_files.find_first(manual_dir, [name], self.name, LAYOUT)
        metadata = source_files.read_csv(find(METADATA), ["dicom_id", "subject_id", "study_id", "ViewPosition"])
        splits = {
            r["dicom_id"]: r["split"]
            for r in source_files.read_csv(find(SPLIT), ["dicom_id", "study_id", "subject_id", "split"])
        }
        label_rows = source_files.read_csv(
            find(LABELS[cfg.labeler]), ["subject_id", "study_id", *labels_lib.CLASS_NAMES]
        )
        study_labels = {r["study_id"]: _labels(r) for r in label_rows}
        images_dir = os.path.join(manual_dir, "files")
        if not os.path.isdir(images_dir):
            raise source_files.LayoutError(f"mimic_cxr: no images folder {images_dir}. Expected:\n{LAYOUT}")
        reports = reports_lib.Reports(manual_dir)

        index = manual_builder.Index()
        studies: dict[str, tuple[str, bool, bool]] = {}  # study -> (text, has report, labels)
        for row in metadata:
            dicom, subject, study = row["dicom_id"], row["subject_id"], row["study_id"]
            view = row["ViewPosition"].strip()
            if cfg.views == "frontal" and view not in FRONTAL:
                index.notes[f"images of other views left out (views={cfg.views})"] += 1
                continue
            split = _SPLIT_NAMES.get(splits.get(dicom, ""))
            if split is None:
                index.skip("not in the split file", dicom)
                continue
            path = os.path.join(
                images_dir, os.path.dirname(reports_lib.relative_path(subject, study)), f"s{study}", f"{dicom}.jpg"
            )
            if not os.path.exists(path):
                index.skip("missing image file", os.path.relpath(path, manual_dir))
                continue
            if study not in studies:
                raw = reports.get(subject, study)
                text = "" if raw is None else sections_lib.extract(raw, cfg.sections)
                studies[study] = (text, raw is not None, study in study_labels)
            text = studies[study][0]
            labels = study_labels.get(study)
            if labels is None:
                labels = np.full(labels_lib.NUM_CLASSES, labels_lib.NOT_MENTIONED, np.int8)
            index.entries.append(
                manual_builder.Entry(
                    split=split,
                    image_id=dicom,
                    source=path,
                    subject_id=subject,
                    study_id=study,
                    view=view,
                    report=text,
                    labels=labels,
                )
            )
        if studies and not any(has_report for _, has_report, _ in studies.values()):
            raise source_files.LayoutError(
                f"mimic_cxr: found none of the reports of {len(studies)} studies (looked in "
                f"{reports.source or 'nothing: no zip and no files/ folder of reports'}). "
                f"Expected:\n{LAYOUT}"
            )
        index.notes["studies"] = len(studies)
        index.notes["studies without a report (kept, report '')"] = sum(not r for _, r, _ in studies.values())
        index.notes["studies with a report but no findings/impression text"] = sum(
            r and not t for t, r, _ in studies.values()
        )
        index.notes["studies without a label row (kept, all labels -2)"] = sum(
            not has_labels for _, _, has_labels in studies.values()
        )
        return index


def _labels(row: dict[str, str]) -> np.ndarray:
    try:
        return np.array([labels_lib.parse_chexpert_value(row[c]) for c in labels_lib.CLASS_NAMES], np.int8)
    except ValueError as e:
        raise ValueError(f"mimic_cxr labels of study {row['study_id']}: {e}") from None
