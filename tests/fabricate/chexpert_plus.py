"""A fake CheXpert Plus release in its real layout and column names (see `write`)."""

from __future__ import annotations

import json
import os

from data_pipelines import labels as labels_lib
from tests.fabricate import common

TABLE = "df_chexpert_plus_240401.csv"
# The release's columns, in its order.
HEADER = [
    "path_to_image",
    "path_to_dcm",
    "frontal_lateral",
    "ap_pa",
    "deid_patient_id",
    "patient_report_date_order",
    "report",
    "section_narrative",
    "section_clinical_history",
    "section_history",
    "section_comparison",
    "section_technique",
    "section_procedure_comments",
    "section_findings",
    "section_impression",
    "section_end_of_impression",
    "section_summary",
    "section_accession_number",
    "age",
    "sex",
    "race",
    "ethnicity",
    "interpreter_needed",
    "insurance_type",
    "recent_bmi",
    "deceased",
    "split",
]
NUM_PATIENTS = 24


def write(root: str) -> common.Expected:
    """PNG/{train,valid}/patientN/studyM/viewK_{frontal,lateral}.png, the table (listing
    them as .jpg) and chexbert_labels/impression_fixed.json. Each patient has one study of
    a frontal and a lateral view; the last patient's frontal image has no labels row."""
    rows, label_rows, examples = [], [], {}
    for n in range(1, NUM_PATIENTS + 1):
        patient = f"patient{n:05d}"
        split = "valid" if n > NUM_PATIENTS - 2 else "train"
        findings = "" if n % 3 == 0 else f"The heart is normal in size, case {n}."
        impression = f"No acute cardiopulmonary process {n}."
        for k, view in ((1, "frontal"), (2, "lateral")):
            listed = f"{split}/{patient}/study1/view{k}_{view}.jpg"
            common.write(
                os.path.join(root, "PNG", listed.replace(".jpg", ".png")), common.image_bytes(100 * n + k, "PNG")
            )
            rows.append(
                [listed, listed.replace(".jpg", ".dcm"), view.capitalize(), "PA" if k == 1 else "", patient, 1,
                 f"FINDINGS: {findings} IMPRESSION: {impression}", "", "Cough.", "", "None.", "PA and lateral.", "",
                 findings, impression, "", "", "", 60, "Female", "", "", "", "", "", "", split]
            )  # fmt: skip
            values = [[1.0, 0.0, -1.0, None][(n + j) % 4] for j in range(labels_lib.NUM_CLASSES)]
            if not (n == NUM_PATIENTS and k == 1):
                label_rows.append({"path_to_image": listed, **dict(zip(labels_lib.CLASS_NAMES, values))})
            if k == 1 and n != NUM_PATIENTS:
                examples[listed.removesuffix(".jpg")] = common.Example(
                    split="",  # A seeded split: the test checks that patients are not split.
                    report=" ".join(t for t in (findings, impression) if t),
                    labels=tuple(labels_lib.NOT_MENTIONED if v is None else int(v) for v in values),
                    subject_id=patient,
                    study_id=f"{split}/{patient}/study1",
                    view="Frontal",
                )
    common.write_csv(os.path.join(root, TABLE), HEADER, rows)
    common.write(
        os.path.join(root, "chexbert_labels", "impression_fixed.json"),
        "".join(json.dumps(r) + "\n" for r in label_rows),
    )
    return common.Expected(
        examples=examples,
        skipped={"no labels row": 1},
        notes={"images of other views left out": NUM_PATIENTS, "images without report text": 0},
    )
