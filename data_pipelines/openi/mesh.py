"""OpenI (Indiana University) reports: XML parsing and MeSH terms -> CheXpert labels.

A report's `MeSH/major` and `MeSH/automatic` terms look like `Cardiomegaly/mild`,
`Pulmonary Atelectasis/base/left`, `Opacity/lung/base/left` or `normal`: a heading, then
`/`-separated qualifiers. The labels are read from the headings:
  * a class is 1 when a heading in `MESH_TO_CHEXPERT` maps to it, else 0 (negative: the
    indexers list what they see, so an absent term is not merely "not mentioned");
  * 'No Finding' is 1 for a report indexed `normal` with no term mapped to a class other
    than Support Devices, 0 otherwise (reports with only unmapped abnormal terms, e.g.
    `Calcified Granuloma`, are not normal);
  * nothing is uncertain (-1): MeSH indexing has no uncertain value.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

import numpy as np

from data_pipelines import labels as labels_lib

# Lower-cased MeSH heading -> CheXpert class.
MESH_TO_CHEXPERT: dict[str, str] = {
    "pulmonary atelectasis": "Atelectasis",
    "atelectasis": "Atelectasis",
    "cardiomegaly": "Cardiomegaly",
    "consolidation": "Consolidation",
    "pulmonary edema": "Edema",
    "edema": "Edema",
    "fractures, bone": "Fracture",
    "fracture": "Fracture",
    "rib fractures": "Fracture",
    "nodule": "Lung Lesion",
    "mass": "Lung Lesion",
    "lung neoplasms": "Lung Lesion",
    "solitary pulmonary nodule": "Lung Lesion",
    "multiple pulmonary nodules": "Lung Lesion",
    "opacity": "Lung Opacity",
    "infiltrate": "Lung Opacity",
    "airspace disease": "Lung Opacity",
    "pleural effusion": "Pleural Effusion",
    "pleural thickening": "Pleural Other",
    "pneumonia": "Pneumonia",
    "pneumothorax": "Pneumothorax",
    "medical device": "Support Devices",
    "implanted medical device": "Support Devices",
    "catheters, indwelling": "Support Devices",
    "tube, inserted": "Support Devices",
    "pacemaker, artificial": "Support Devices",
    "surgical instruments": "Support Devices",
    "stents": "Support Devices",
}
# Headings whose qualifiers decide the class: (heading, qualifier) -> class.
QUALIFIED: dict[tuple[str, str], str] = {
    ("mediastinum", "enlarged"): "Enlarged Cardiomediastinum",
    ("mediastinum", "widened"): "Enlarged Cardiomediastinum",
    ("cardiac shadow", "enlarged"): "Cardiomegaly",
    ("thickening", "pleura"): "Pleural Other",
}
NORMAL = "normal"


@dataclasses.dataclass
class Report:
    """One parsed `ecgen-radiology/N.xml`."""

    uid: str  # `uId` (e.g. 'CXR1'): one patient per report in this collection.
    sections: dict[str, str]  # Upper-case label (FINDINGS, ...) -> text, "" if empty.
    mesh: list[str]
    images: list[str]  # `parentImage` ids, also the PNG file names without `.png`.


def parse_report(xml: bytes | str, fallback_uid: str) -> Report:
    """Parses a report's XML; raises ValueError naming `fallback_uid` if it is not XML."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise ValueError(f"report {fallback_uid}: not valid XML ({e})") from None
    uid_el = root.find("uId")
    sections = {}
    for el in root.iter("AbstractText"):
        label = (el.get("Label") or "").upper()
        sections[label] = " ".join("".join(el.itertext()).split())
    mesh = [(el.text or "").strip() for tag in ("major", "automatic") for el in root.iterfind(f"MeSH/{tag}")]
    return Report(
        uid=uid_el.get("id") if uid_el is not None and uid_el.get("id") else fallback_uid,
        sections=sections,
        mesh=[m for m in mesh if m],
        images=[el.get("id") for el in root.iter("parentImage") if el.get("id")],
    )


def report_text(report: Report, which: str) -> str:
    """FINDINGS and IMPRESSION text as `mimic_cxr.sections.extract` chooses for MIMIC."""
    s = report.sections
    if which == "full":
        parts = [f"{k}: {v}" for k, v in s.items() if v]
    elif which == "findings_impression":
        parts = [s.get("FINDINGS", ""), s.get("IMPRESSION", "")]
    else:
        first, other = ("IMPRESSION", "FINDINGS") if which == "impression" else ("FINDINGS", "IMPRESSION")
        parts = [s.get(first) or s.get(other, "")]
    return " ".join(p for p in parts if p)


def mesh_labels(terms: list[str]) -> np.ndarray:
    """MeSH terms -> int8 [14] CheXpert-order codes (see the module docstring)."""
    found = set()
    normal = False
    for term in terms:
        heading, *qualifiers = [p.strip().lower() for p in term.split("/")]
        normal |= heading == NORMAL
        if heading in MESH_TO_CHEXPERT:
            found.add(MESH_TO_CHEXPERT[heading])
        found.update(c for (h, q), c in QUALIFIED.items() if h == heading and q in qualifiers)
    labels = np.array([name in found for name in labels_lib.CLASS_NAMES], np.int8)
    findings = found - {"Support Devices"}
    labels[labels_lib.NO_FINDING] = normal and not findings
    return labels
