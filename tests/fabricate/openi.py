"""A fake OpenI (Indiana University) tree: NLMCXR_png.tgz and NLMCXR_reports.tgz (see `write`)."""

from __future__ import annotations

import io
import os
import tarfile

from data_pipelines import labels as labels_lib, manual_builder
from data_pipelines.openi import openi
from tests.fabricate import common

_XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation>
  <meta type="rr"/>
  <uId id="{uid}"/>
  <pmcId id="{n}"/>
  <MedlineCitation Owner="Indiana University" Status="supplied">
    <Article PubModel="Electronic">
      <Abstract>
        <AbstractText Label="COMPARISON">None.</AbstractText>
        <AbstractText Label="INDICATION">XXXX-year-old male, chest pain.</AbstractText>
        <AbstractText Label="FINDINGS">{findings}</AbstractText>
        <AbstractText Label="IMPRESSION">{impression}</AbstractText>
      </Abstract>
    </Article>
  </MedlineCitation>
  <MeSH>
{mesh}
  </MeSH>
{images}
</eCitation>
"""
_IMAGE = """  <parentImage id="{id}">
    <figureId>F1</figureId>
    <caption>Xray Chest PA and Lateral</caption>
    <url>/hadoop/storage/radiology/extract/{id}.jpg</url>
  </parentImage>"""

# (n, findings, impression, major MeSH, automatic MeSH, [(image id, kind)])
REPORTS = [
    (
        1,
        "The cardiac silhouette is enlarged. Left basilar atelectasis.",
        "Cardiomegaly.",
        ["Cardiomegaly/mild", "Pulmonary Atelectasis/base/left"],
        ["Opacity"],
        [("CXR1_1_IM-0001-3001", "ok"), ("CXR1_1_IM-0001-4001", "ok")],
    ),
    (2, "", "No acute disease.", ["normal"], [], [("CXR2_1_IM-0652-1001", "ok")]),
    (3, "No pneumothorax.", "Normal chest.", ["normal"], [], []),  # No parentImage.
    (
        4,
        "Right pleural effusion.",
        "Effusion.",
        ["Pleural Effusion/right"],
        [],
        [("CXR4_IM-2050-1001", "corrupt"), ("CXR4_IM-2050-2001", "ok")],
    ),
    (
        5,
        "Stable calcified granuloma.",
        "No active disease.",
        ["Calcified Granuloma/lung"],
        [],
        [("CXR5_1_IM-2117-1003002", "ok")],
    ),
    (
        6,
        "Pacemaker in place. Mediastinum widened.",
        "Pneumothorax on the right.",
        ["Pacemaker, Artificial", "Mediastinum/widened", "Pneumothorax/right"],
        [],
        [("CXR6_1_IM-2263-1001", "ok"), ("CXR6_1_IM-2263-2001", "missing")],
    ),
]
# Fills the splits: more plain reports, one image each.
for n in range(7, 19):
    REPORTS.append((n, f"Lungs clear {n}.", "Normal.", ["normal"], [], [(f"CXR{n}_IM-{1000 + n}-1001", "ok")]))


def labels_of(major: list[str], automatic: list[str]) -> tuple[int, ...]:
    """The labels the MeSH mapping must give, written out for the fixture's terms."""
    terms = {t.split("/")[0] for t in major + automatic}
    found = set()
    table = {
        "Cardiomegaly": "Cardiomegaly",
        "Pulmonary Atelectasis": "Atelectasis",
        "Opacity": "Lung Opacity",
        "Pleural Effusion": "Pleural Effusion",
        "Pacemaker, Artificial": "Support Devices",
        "Pneumothorax": "Pneumothorax",
    }
    found |= {table[t] for t in terms if t in table}
    if "Mediastinum/widened" in major:
        found.add("Enlarged Cardiomediastinum")
    labels = [int(c in found) for c in labels_lib.CLASS_NAMES]
    labels[labels_lib.NO_FINDING] = int("normal" in terms and not found - {"Support Devices"})
    return tuple(labels)


def _tgz(path: str, members: dict[str, bytes]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def write(root: str, *, archives: bool = True, image_size=(52, 40)) -> common.Expected:
    """Writes the tree under `root`: the two .tgz archives, or (`archives=False`) their
    extracted folders (PNGs in `NLMCXR_png/`, reports in `ecgen-radiology/`)."""
    pngs, xmls, expected = {}, {}, {}
    for n, findings, impression, major, automatic, images in REPORTS:
        mesh = "\n".join(
            [f"    <major>{t}</major>" for t in major] + [f"    <automatic>{t}</automatic>" for t in automatic]
        )
        xml = _XML.format(
            uid=f"CXR{n}",
            n=n,
            findings=findings,
            impression=impression,
            mesh=mesh,
            images="\n".join(_IMAGE.format(id=i) for i, _ in images),
        )
        xmls[f"ecgen-radiology/{n}.xml"] = xml.encode()
        split = manual_builder.seeded_split(f"CXR{n}", 0, openi.FRACTIONS)
        for k, (image_id, kind) in enumerate(images):
            data = common.image_bytes(100 * n + k, "PNG", image_size, "RGBA" if n == 5 else "L")
            if kind != "missing":
                pngs[f"{image_id}.png"] = common.corrupt(data) if kind == "corrupt" else data
            if kind == "ok":
                expected[image_id] = common.Example(
                    split=split,
                    report=" ".join(t for t in (findings, impression) if t),
                    labels=labels_of(major, automatic),
                    subject_id=f"CXR{n}",
                    study_id=str(n),
                    view="",
                )
    pngs["CXR999_IM-0000-0000.png"] = common.image_bytes(1, "PNG")  # In no report.
    if archives:
        _tgz(os.path.join(root, openi.PNG_TGZ), pngs)
        _tgz(os.path.join(root, openi.REPORTS_TGZ), xmls)
    else:
        for name, data in pngs.items():
            common.write(os.path.join(root, "NLMCXR_png", name), data)
        for name, data in xmls.items():
            common.write(os.path.join(root, name), data)
    return common.Expected(
        examples=expected,
        skipped={"report without parentImage": 1, "unreadable image": 1, "missing image file": 1},
        notes={"reports": 17, "reports with an empty FINDINGS": 1},
    )
