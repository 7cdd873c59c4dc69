"""A fake MIMIC-CXR-JPG v2.0.0 + MIMIC-CXR v2.0.0 reports tree (see `write`)."""

from __future__ import annotations

import io
import os
import zipfile

from data_pipelines import labels as labels_lib
from tests.fabricate import common

# One-space headers, wrapped lines, `___`, an addendum after a line of underscores.
REPORT_FULL = """\
                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)
 
 INDICATION:  ___ year old woman with cough  // ? pneumonia
 
 TECHNIQUE:  Chest PA and lateral
 
 COMPARISON:  ___
 
 FINDINGS: 
 
 There is a small left pleural effusion with adjacent atelectasis.  The cardiac
 silhouette is enlarged.  No pneumothorax.
 
 IMPRESSION: 
 
 Small left effusion and cardiomegaly.
 ______________________________________________________________________________
 Dr. ___ was notified by phone at 10:12 on ___.
"""
REPORT_FULL_TEXT = (
    "There is a small left pleural effusion with adjacent atelectasis. The "
    "cardiac silhouette is enlarged. No pneumothorax. Small left effusion "
    "and cardiomegaly."
)
# No FINDINGS section; the impression wraps; a misspelt header.
REPORT_NO_FINDINGS = """\
                                 FINAL REPORT
 EXAMINATION:  CHEST (PORTABLE AP)
 
 INDICATION:  ___M with line placement
 
 IMPRESSON: 
 
 Right internal jugular line ends in the upper SVC.  No pneumothorax.  Lungs
 are clear.
"""
REPORT_NO_FINDINGS_TEXT = "Right internal jugular line ends in the upper SVC. No pneumothorax. Lungs are clear."
# Neither FINDINGS nor IMPRESSION: the last paragraph is used.
REPORT_NO_SECTIONS = """\
                                 FINAL REPORT
 CHEST RADIOGRAPH PERFORMED ON ___
 
 COMPARISON:  None.
 
 Heart size is normal.  Lungs are clear.
 
 No acute cardiopulmonary process.
"""
REPORT_NO_SECTIONS_TEXT = "Heart size is normal. Lungs are clear. No acute cardiopulmonary process."

LABELS_A = {"Cardiomegaly": "1.0", "Atelectasis": "-1.0", "Pleural Effusion": "1.0", "Pneumothorax": "0.0"}
LABELS_B = {"Support Devices": "1.0", "Pneumothorax": "0.0", "No Finding": ""}
LABELS_C = {"No Finding": "1.0"}

# (subject, study, split, [(dicom, view, kind)], labels or None, report or None, text)
# kind: 'ok', 'corrupt' (a truncated JPEG) or 'missing' (no file).
STUDIES = [
    (
        "10000001",
        "50000001",
        "train",
        [("d1", "PA", "ok"), ("d2", "LATERAL", "ok")],
        LABELS_A,
        REPORT_FULL,
        REPORT_FULL_TEXT,
    ),
    ("10000001", "50000002", "train", [("d3", "AP", "ok")], LABELS_B, REPORT_NO_FINDINGS, REPORT_NO_FINDINGS_TEXT),
    (
        "10000002",
        "50000003",
        "train",
        [("d4", "PA", "ok"), ("d5", "PA", "corrupt")],
        None,
        REPORT_NO_SECTIONS,
        REPORT_NO_SECTIONS_TEXT,
    ),
    ("10000003", "50000004", "validate", [("d6", "PA", "ok")], LABELS_C, None, ""),
    ("10000003", "50000005", "validate", [("d7", "AP", "ok")], LABELS_A, REPORT_FULL, REPORT_FULL_TEXT),
    (
        "11000004",
        "50000006",
        "test",
        [("d8", "PA", "ok"), ("d9", "PA", "ok")],
        LABELS_C,
        REPORT_NO_SECTIONS,
        REPORT_NO_SECTIONS_TEXT,
    ),
    ("11000005", "50000007", "test", [("d10", "PA", "missing")], LABELS_B, REPORT_FULL, REPORT_FULL_TEXT),
]
METADATA_HEADER = [
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
    "SomeNewColumn",
]


def _codes(labels: dict[str, str] | None) -> tuple[int, ...]:
    return tuple(labels_lib.parse_chexpert_value((labels or {}).get(c, "")) for c in labels_lib.CLASS_NAMES)


def write(root: str, *, reports: str = "zip", image_size=(40, 52)) -> common.Expected:
    """Writes the tree under `root`; `reports` 'zip' (mimic-cxr-reports.zip) or 'folder'
    (extracted two levels down, as `mimic-cxr-reports/2.0.0/files/...`)."""
    metadata, split_rows, label_rows, expected = [], [], [], {}
    report_files = {}
    for seed, (subject, study, split, images, labels, report, text) in enumerate(STUDIES):
        patient = f"p{subject}"
        for dicom, view, kind in images:
            metadata.append(
                [
                    dicom,
                    subject,
                    study,
                    "CHEST (PA AND LAT)",
                    view,
                    52,
                    40,
                    21800506,
                    213014.531,
                    "CHEST (PA AND LAT)",
                    "postero-anterior",
                    "Erect",
                    "x",
                ]
            )
            split_rows.append([dicom, study, subject, split])
            data = common.image_bytes(seed * 10 + len(metadata), "JPEG", image_size)
            path = os.path.join(root, "files", patient[:3], patient, f"s{study}", f"{dicom}.jpg")
            if kind != "missing":
                common.write(path, common.corrupt(data) if kind == "corrupt" else data)
            if kind == "ok" and view in ("PA", "AP"):
                expected[dicom] = common.Example(
                    split="validation" if split == "validate" else split,
                    report=text,
                    labels=_codes(labels),
                    subject_id=subject,
                    study_id=study,
                    view=view,
                )
        if labels is not None:
            label_rows.append([subject, study] + [labels.get(c, "") for c in labels_lib.CLASS_NAMES])
        if report is not None:
            report_files[f"files/{patient[:3]}/{patient}/s{study}.txt"] = report
    common.write_csv(os.path.join(root, "mimic-cxr-2.0.0-metadata.csv.gz"), METADATA_HEADER, metadata, gz=True)
    common.write_csv(
        os.path.join(root, "mimic-cxr-2.0.0-split.csv.gz"),
        ["dicom_id", "study_id", "subject_id", "split"],
        split_rows,
        gz=True,
    )
    common.write_csv(
        os.path.join(root, "mimic-cxr-2.0.0-chexpert.csv.gz"),
        ["subject_id", "study_id", *labels_lib.CLASS_NAMES],
        label_rows,
        gz=True,
    )
    # The NegBio labels differ from CheXpert's in one place: Edema is positive everywhere.
    edema = 2 + labels_lib.CLASS_NAMES.index("Edema")
    common.write_csv(
        os.path.join(root, "mimic-cxr-2.0.0-negbio.csv.gz"),
        ["subject_id", "study_id", *labels_lib.CLASS_NAMES],
        [r[:edema] + ["1.0"] + r[edema + 1 :] for r in label_rows],
        gz=True,
    )
    if reports == "zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            for name, text in report_files.items():
                z.writestr(name, text)
        common.write(os.path.join(root, "mimic-cxr-reports.zip"), buffer.getvalue())
    else:
        for name, text in report_files.items():
            common.write(os.path.join(root, "mimic-cxr-reports", "2.0.0", name), text)
    return common.Expected(
        examples=expected,
        skipped={"unreadable image": 1, "missing image file": 1},
        notes={
            "studies": 6,
            "studies without a report (kept, report '')": 1,
            "studies without a label row (kept, all labels -2)": 1,
            "images of other views left out (views=frontal)": 1,
        },
    )
