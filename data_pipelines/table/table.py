"""tensorflow-datasets builder `csv`: your own chest X-rays, from a table of image paths,
report text and labels (one row per image; `data_pipelines/table/options.py` lists the
options, the `data.csv` config section):

    python -m data_pipelines.build --dataset=csv --manual_dir=DIR --data_dir=DIR \
        --table=labels.csv --image_column=path --report_columns=report \
        --patient_column=patient_id

Bad rows are skipped, counted and named (file, line and column) in the build report:
a CSV row with more or fewer cells than the header, a blank or missing image, a path
outside the image folder, an image listed twice, a label other than 1, 0, -1 or blank
(0.5, 2, inf, nan, yes), an unknown split value, a missing labels row, a patient in two
splits of the split column. A configured column missing from the table stops the build
at once. An image that is a symlink to a file outside the image folder is kept (a folder
of links into a central store is a common layout) but named in the report's warnings.
A build is reused only while the table and every image's size and mtime are unchanged
(`manual_builder.STAMPS_IMAGES`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import posixpath

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from data_pipelines import labels as labels_lib, manual_builder, source_files
from data_pipelines.table import options as options_lib, read


@dataclasses.dataclass(eq=False)
class TableConfig(manual_builder.ManualConfig):
    options: dict = dataclasses.field(default_factory=dict)


_CONFIGS: dict[str, TableConfig] = {}


def builder_config(image_size: int = 224, **options) -> TableConfig:
    """Config of these options (the rest `options.DEFAULTS`), named by `options.config_name`."""
    options = options_lib.DEFAULTS | options
    options_lib.check(options)
    name = options_lib.config_name(options, image_size)
    if name not in _CONFIGS:
        _CONFIGS[name] = TableConfig(
            name=name,
            description=f"{image_size}px, from the table {options['table']}.",
            image_size=image_size,
            options=options,
        )
    return _CONFIGS[name]


@dataclasses.dataclass
class _Row:
    i: int  # index in the table
    path: str  # image path relative to image_root, '/'-separated
    patient: str
    labels: np.ndarray
    split: str | None  # from the split column, else None


def _values(row: dict, columns: list[str]) -> str:
    return " ".join(" ".join(row[c].split()) for c in columns if row.get(c))


class Table(manual_builder.ManualBuilder):
    """Chest X-rays from a user's table: images, report text and 14 CheXpert labels."""

    name = "csv"
    STAMPS_IMAGES = True  # Indexing is one pass over the table, cheap to redo on a reuse.

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [builder_config(224, table="table.csv")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put your table (data.csv.table, relative to DIR) and your images (their paths in "
        "data.csv.image_column, relative to DIR/data.csv.image_root) under DIR."
    )
    code_path = epath.Path(__file__)

    def cache_dir(self) -> str:
        """One cache per table and its options: image ids of different tables may collide."""
        return os.path.join(super().cache_dir(), self.builder_config.name)

    def source_digests(self, manual_dir: str) -> dict[str, str]:
        o = self.builder_config.options
        digests = {}
        for name in filter(None, (o["table"], o["labels_table"])):
            path = os.path.join(manual_dir, name)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    digests[name] = hashlib.file_digest(f, "sha1").hexdigest()
        return digests

    def _index(self, manual_dir: str) -> manual_builder.Index:
        o = self.builder_config.options
        table = _read(manual_dir, o, "table")
        report_columns = options_lib.names(o["report_columns"])
        own = [o["image_column"], o["patient_column"], *report_columns]
        own += [o[c] for c in ("study_column", "view_column", "split_column") if o[c] and o[c] != options_lib.FOLDER]
        label_cols = [o["findings_column"]] if o["findings_column"] else list(options_lib.label_columns(o))
        table.require(own, "named in data.csv")
        label_table = table
        if o["labels_table"]:
            label_table = _read(manual_dir, o, "labels_table")
            label_table.require([o["image_column"], *label_cols], "named in data.csv")
        else:
            table.require(label_cols, "named in data.csv (the labels)")
        root = os.path.join(manual_dir, o["image_root"])
        if not os.path.isdir(root):
            raise source_files.LayoutError(f"csv: the image folder {root} (data.csv.image_root) is not a directory")

        index = manual_builder.Index()
        for t in [table] if label_table is table else [table, label_table]:  # Rows the reader could not read.
            for reason, what in t.skipped:
                index.skip(reason, what)
        rows = self._rows(table, label_table, root, index)
        by_patient = _splits(rows, table, o, index)
        entries = []
        for r in rows:
            split = by_patient.get(r.patient)
            if split is None:  # A patient in two splits: all their rows were skipped.
                continue
            row = table.rows[r.i]
            image_id = posixpath.splitext(r.path)[0]
            study = _study(o, row, r, image_id)
            report = _values(row, report_columns)
            index.notes["images without report text"] += bool(report_columns) and not report
            entries.append(
                manual_builder.Entry(
                    split=split,
                    image_id=image_id,
                    source=os.path.join(root, r.path),
                    subject_id=r.patient,
                    study_id=study,
                    view=(row.get(o["view_column"]) or "") if o["view_column"] else "",
                    report=report,
                    labels=r.labels,
                )
            )
        _require_every_split(entries, table.path, index)
        index.entries = entries
        return index

    def _rows(self, table: read.Table, label_table: read.Table, root: str, index) -> list[_Row]:
        """The table's usable rows; the others are skipped into `index`, named."""
        o = self.builder_config.options
        col = o["image_column"]
        keep_views = set(options_lib.names(o["views"]))
        label_rows = _label_rows(label_table, col, index) if label_table is not table else None
        parse = _label_parser(o)
        first: dict[str, str] = {}
        real_root = os.path.realpath(root)
        rows = []
        for i, row in enumerate(table.rows):
            where = table.where(i)
            listed = row.get(col)
            if listed is None:
                index.skip("blank image path", f"{where}, column {col!r}")
                continue
            if keep_views and row.get(o["view_column"]) not in keep_views:
                index.notes["images of other views left out"] += 1
                continue
            path = _relative(listed, o["image_extension"])
            if path is None:
                index.skip("image path outside image_root", f"{where}, column {col!r}: {listed}")
                continue
            if path in first:
                index.skip("duplicate image path", f"{where}, column {col!r}: {path} (first on {first[path]})")
                continue
            first[path] = where
            patient = row.get(o["patient_column"])
            if patient is None:
                index.skip("blank patient id", f"{where}, column {o['patient_column']!r}")
                continue
            split = None
            if o["split_column"]:
                value = row.get(o["split_column"]) or ""
                split = options_lib.SPLIT_NAMES.get(value.lower())
                if split is None:
                    index.skip(
                        "unknown split value",
                        f"{where}, column {o['split_column']!r}: {value!r} (expected one of "
                        f"{sorted(set(options_lib.SPLIT_NAMES))})",
                    )
                    continue
            if label_rows is None:
                source, j = table, i
            elif listed in label_rows:
                source, j = label_table, label_rows[listed]
            else:
                index.skip("no labels row", f"{where}: {listed} is not in {os.path.basename(label_table.path)}")
                continue
            try:
                labels = parse(source.rows[j])
            except ValueError as e:
                index.skip("unknown label value", f"{source.where(j)}, {e}")
                continue
            if not os.path.isfile(os.path.join(root, path)):
                index.skip("missing image", f"{where}, column {col!r}: {path} not found under data.csv.image_root")
                continue
            real = os.path.realpath(os.path.join(root, path))
            if os.path.commonpath([real, real_root]) != real_root:
                index.warn("images linked from outside image_root, kept", f"{where}, column {col!r}: {path} -> {real}")
            rows.append(_Row(i, path, patient, labels, split))
        return rows


def _read(manual_dir: str, o: dict, field: str) -> read.Table:
    path = os.path.join(manual_dir, o[field])
    if not os.path.isfile(path):
        raise source_files.LayoutError(f"csv: no table at {path} (data.csv.{field}={o[field]!r}, under --manual_dir)")
    return read.read_table(path)


def _relative(listed: str, extension: str) -> str | None:
    """A listed image path as a '/'-separated path under the image root, with its extension
    replaced by `extension` if given; None for an absolute path or one leaving the root."""
    path = listed.replace("\\", "/")
    if extension:
        path = posixpath.splitext(path)[0] + extension
    normal = os.path.normpath(path).replace(os.sep, "/")
    if os.path.isabs(path) or normal == ".." or normal.startswith("../"):
        return None
    return normal


def _label_rows(label_table: read.Table, column: str, index) -> dict[str, int]:
    """Image path (as listed) -> its row of the labels table; repeats noted, first kept."""
    found: dict[str, int] = {}
    for j, row in enumerate(label_table.rows):
        key = row.get(column)
        if key is None or key in found:
            index.notes["labels rows blank or repeated, not used"] += 1
            continue
        found[key] = j
    return found


def _label_parser(o: dict):
    """row -> int8 [14] label codes; raises ValueError naming the column and the value."""
    if not o["findings_column"]:
        columns = options_lib.label_columns(o)

        def parse(row):
            codes = np.empty(labels_lib.NUM_CLASSES, np.int8)
            for k, column in enumerate(columns):
                value = row.get(column)
                try:
                    codes[k] = labels_lib.parse_chexpert_value(value)
                except ValueError:
                    raise ValueError(f"column {column!r}: {value!r} (expected 1, 0, -1 or blank)") from None
            return codes

        return parse

    mapping = options_lib.findings_map(o)
    known = np.zeros(labels_lib.NUM_CLASSES, bool)
    for target in mapping.values():
        if target is not None:
            known[labels_lib.CLASS_NAMES.index(target)] = True
    absent = np.where(known, labels_lib.NEGATIVE, labels_lib.NOT_MENTIONED).astype(np.int8)
    column, separator = o["findings_column"], o["findings_separator"]

    def parse_findings(row):
        codes = absent.copy()
        for name in (f.strip() for f in (row.get(column) or "").split(separator)):
            if not name:
                continue
            if name not in mapping:
                raise ValueError(
                    f"column {column!r}: unknown finding {name!r} (expected a CheXpert finding "
                    "or a name of data.csv.findings_map)"
                )
            if mapping[name] is not None:
                codes[labels_lib.CLASS_NAMES.index(mapping[name])] = labels_lib.POSITIVE
        return codes

    return parse_findings


def _splits(rows: list[_Row], table: read.Table, o: dict, index) -> dict[str, str]:
    """patient -> split: the split column's (a patient in two splits is skipped, every row
    named), else a seeded patient-level split."""
    if not o["split_column"]:
        fractions = {
            "train": 1 - o["val_fraction"] - o["test_fraction"],
            "validation": o["val_fraction"],
            "test": o["test_fraction"],
        }
        return {r.patient: manual_builder.seeded_split(r.patient, o["split_seed"], fractions) for r in rows}
    first: dict[str, _Row] = {}
    splits: dict[str, set[str]] = {}
    for r in rows:
        first.setdefault(r.patient, r)
        splits.setdefault(r.patient, set()).add(r.split)
    clash = {p for p, s in splits.items() if len(s) > 1}
    for r in rows:
        if r.patient in clash:
            index.skip(
                "patient in two splits",
                f"{table.where(r.i)}, column {o['patient_column']!r}: patient {r.patient} is in {r.split} "
                f"here; their rows are in {' and '.join(sorted(splits[r.patient]))}",
            )
    return {p: r.split for p, r in first.items() if p not in clash}


def _study(o: dict, row: dict, r: _Row, image_id: str) -> str:
    if o["study_column"] == options_lib.FOLDER:
        return r.path.rsplit("/", 1)[0] if "/" in r.path else image_id
    if o["study_column"] and row.get(o["study_column"]):
        return f"{r.patient}/{row[o['study_column']]}"  # Study ids are often per patient.
    return image_id


def _require_every_split(entries: list[manual_builder.Entry], path: str, index) -> None:
    counts = {s: sum(e.split == s for e in entries) for s in manual_builder.SPLITS}
    if all(counts.values()):
        return
    reasons = ", ".join(f"{len(v)} {k}" for k, v in sorted(index.skipped.items())) or "none"
    raise ValueError(
        f"{path}: the usable rows give examples per split {counts}; every split needs some "
        f"(rows skipped: {reasons}). Check the data.csv options, or the split column's values."
    )
