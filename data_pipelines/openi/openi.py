"""tensorflow-datasets builder `openi`, from a manual download of the Indiana University
chest X-ray collection (Open-i, https://openi.nlm.nih.gov/faq#collection):

    python -m data_pipelines.build --dataset=openi --manual_dir=DIR --data_dir=DIR

Every `parentImage` of a report is one example (frontal and lateral alike: the XML does
not say which is which; `view` is ""). Labels come from the MeSH terms (`mesh`), or from
a CSV written by the CheXpert or CheXbert labeler (`labels_csv`: an `id` column, the
report file name without `.xml`, and the 14 class columns, values 1.0/0.0/-1.0/empty).
No official split: a seeded patient-level split, train/validation/test = 70/10/20 %
(one patient per report in this collection).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import tarfile

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from data_pipelines import labels as labels_lib, manual_builder, source_files
from data_pipelines.mimic_cxr import sections as sections_lib
from data_pipelines.openi import mesh

PNG_TGZ, REPORTS_TGZ, REPORTS_DIR = "NLMCXR_png.tgz", "NLMCXR_reports.tgz", "ecgen-radiology"
FRACTIONS = {"train": 0.7, "validation": 0.1, "test": 0.2}
_PNG = re.compile(r"(?:^|/)(CXR[^/]*)\.png$")
_XML = re.compile(rf"(?:^|/){REPORTS_DIR}/([^/]+)\.xml$")
_MAX_DEPTH = 2

LAYOUT = f"""\
  DIR/{PNG_TGZ}       (7,470 PNGs, CXR1_1_IM-0001-3001.png, ...), or the PNGs extracted
                        into DIR or a folder at most {_MAX_DEPTH} levels below it
  DIR/{REPORTS_TGZ}   (3,955 reports), or its extracted folder {REPORTS_DIR}/1.xml, ..."""


@dataclasses.dataclass(eq=False)
class OpenIConfig(manual_builder.ManualConfig):
    labels_csv: str = ""  # "" -> labels from MeSH terms.
    split_seed: int = 0
    sections: str = "findings_impression"


_CONFIGS: dict[str, OpenIConfig] = {}


def builder_config(
    image_size: int = 224, labels_csv: str = "", split_seed: int = 0, sections: str = "findings_impression"
) -> OpenIConfig:
    """Config of these options; the name lists non-default ones: `s224_labels-1a2b3c4d_seed1`.

    A labels CSV enters the name by a hash of its contents, so a different CSV never
    reuses a build made from another.
    """
    if sections not in sections_lib.SECTIONS:
        raise ValueError(f"openi sections must be one of {sections_lib.SECTIONS}, got {sections!r}")
    name = f"s{image_size}"
    if labels_csv:
        if not os.path.isfile(labels_csv):
            raise FileNotFoundError(f"openi labels_csv {labels_csv!r} is not a file")
        with open(labels_csv, "rb") as f:
            name += f"_labels-{hashlib.sha1(f.read()).hexdigest()[:8]}"
    name += ("" if split_seed == 0 else f"_seed{split_seed}") + (
        "" if sections == "findings_impression" else f"_{sections}"
    )
    if name not in _CONFIGS:
        _CONFIGS[name] = OpenIConfig(
            name=name,
            description=f"{image_size}px, labels from "
            f"{'a labeler CSV' if labels_csv else 'MeSH terms'}, split seed {split_seed}, "
            f"report {sections}.",
            image_size=image_size,
            labels_csv=labels_csv,
            split_seed=split_seed,
            sections=sections,
        )
    return _CONFIGS[name]


def _walk(manual_dir: str):
    """(relative path, absolute path) of files at most `_MAX_DEPTH` folders below DIR."""
    for root, dirs, files in os.walk(manual_dir):
        rel_root = os.path.relpath(root, manual_dir)
        if rel_root != "." and rel_root.count(os.sep) + 1 >= _MAX_DEPTH + 1:
            dirs[:] = []
            continue
        for name in files:
            yield os.path.normpath(os.path.join(rel_root, name)), os.path.join(root, name)


def _read_reports(manual_dir: str) -> dict[str, bytes]:
    """Report file stem ('1') -> XML bytes, from the tgz or the extracted folder."""
    tgz = os.path.join(manual_dir, REPORTS_TGZ)
    if os.path.isfile(tgz):
        with tarfile.open(tgz) as tar:
            return {
                m.group(1): tar.extractfile(member).read()
                for member in tar
                if member.isfile() and (m := _XML.search(member.name))
            }
    found = {}
    for rel, path in _walk(manual_dir):
        if m := _XML.search(rel.replace(os.sep, "/")):
            with open(path, "rb") as f:
                found[m.group(1)] = f.read()
    if not found:
        raise source_files.LayoutError(
            f"openi: no {REPORTS_TGZ} and no {REPORTS_DIR}/*.xml in {manual_dir}. Expected:\n{LAYOUT}"
        )
    return found


def _read_labels_csv(path: str) -> dict[str, np.ndarray]:
    rows = source_files.read_csv(path, ["id", *labels_lib.CLASS_NAMES])
    out = {}
    for i, row in enumerate(rows, start=2):
        try:
            out[row["id"].removesuffix(".xml")] = np.array(
                [labels_lib.parse_chexpert_value(row[c]) for c in labels_lib.CLASS_NAMES], np.int8
            )
        except ValueError as e:
            raise ValueError(f"{path}, line {i}: {e}") from None
    return out


class OpenI(manual_builder.ManualBuilder):
    """Indiana University chest X-rays (Open-i) with their reports and MeSH-derived labels."""

    name = "openi"

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [builder_config(224), builder_config(512)]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download NLMCXR_png.tgz and NLMCXR_reports.tgz from "
        "https://openi.nlm.nih.gov/faq#collection, laid out as:\n" + LAYOUT
    )
    code_path = epath.Path(__file__)

    def _index(self, manual_dir: str) -> manual_builder.Index:
        cfg = self.builder_config
        png_tgz = os.path.join(manual_dir, PNG_TGZ)
        if os.path.isfile(png_tgz):
            with tarfile.open(png_tgz) as tar:
                pngs = {
                    m.group(1): f"{PNG_TGZ}:{member.name}"
                    for member in tar
                    if member.isfile() and (m := _PNG.search(member.name))
                }
        else:
            pngs = {m.group(1): path for rel, path in _walk(manual_dir) if (m := _PNG.search(rel.replace(os.sep, "/")))}
        if not pngs:
            raise source_files.LayoutError(f"openi: no {PNG_TGZ} and no CXR*.png in {manual_dir}. Expected:\n{LAYOUT}")
        csv_labels = _read_labels_csv(cfg.labels_csv) if cfg.labels_csv else None

        index = manual_builder.Index()
        for stem, xml in sorted(_read_reports(manual_dir).items(), key=lambda kv: _order(kv[0])):
            try:
                report = mesh.parse_report(xml, fallback_uid=f"CXR{stem}")
            except ValueError:
                index.skip("unparsable report XML", f"{REPORTS_DIR}/{stem}.xml")
                continue
            if not report.images:
                index.skip("report without parentImage", f"{REPORTS_DIR}/{stem}.xml")
                continue
            if csv_labels is not None and stem not in csv_labels:
                index.skip("report not in the labels CSV", f"{REPORTS_DIR}/{stem}.xml")
                continue
            labels = csv_labels[stem] if csv_labels is not None else mesh.mesh_labels(report.mesh)
            text = mesh.report_text(report, cfg.sections)
            index.notes["reports"] += 1
            index.notes["reports with no findings/impression text"] += not text
            index.notes["reports with an empty FINDINGS"] += not report.sections.get("FINDINGS")
            split = manual_builder.seeded_split(report.uid, cfg.split_seed, FRACTIONS)
            for image_id in report.images:
                if image_id not in pngs:
                    index.skip("missing image file", f"{image_id}.png")
                    continue
                index.entries.append(
                    manual_builder.Entry(
                        split=split,
                        image_id=image_id,
                        source=pngs[image_id],
                        subject_id=report.uid,
                        study_id=stem,
                        view="",
                        report=text,
                        labels=labels,
                    )
                )
        return index

    def _image_sources(self, entries, manual_dir):
        """Paths, or PNG bytes streamed from the tgz in one pass (no random access)."""
        wanted = {e.source: e.image_id for e in entries}
        if not any(s.startswith(f"{PNG_TGZ}:") for s in wanted):
            yield from ((key, source) for source, key in wanted.items())
            return
        with tarfile.open(os.path.join(manual_dir, PNG_TGZ)) as tar:
            for member in tar:
                key = wanted.get(f"{PNG_TGZ}:{member.name}")
                if key is not None:
                    yield key, tar.extractfile(member).read()


def _order(stem: str):
    """Report files in numeric order (2.xml before 10.xml), for readable reports."""
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)
