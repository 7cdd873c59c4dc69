"""The options of the `csv` dataset (a user's table of images, reports and labels).

They are the `data.csv` section of a training config (`configs/default.py` takes
`DEFAULTS`) and the flags of `python -m data_pipelines.build --dataset=csv`; `check`
rejects a bad value naming the field, before any work. Only the standard library here:
config checks and the build's worker processes import it.
"""

from __future__ import annotations

import hashlib
import json
import re

from data_pipelines import labels as labels_lib

FOLDER = ":folder"  # study_column value: the folder of the image path is the study.

DEFAULTS: dict = dict(
    # The table, relative to --manual_dir (or absolute): .csv/.tsv (optionally .gz),
    # .parquet, or JSON lines (.json/.jsonl). One row per image.
    table="",
    # Names the build (records in <data_dir>/csv/<tag>_s<size>_<hash of the options>);
    # '' = the table's file name.
    tag="",
    image_column="path",  # the image path, relative to image_root
    image_root="",  # folder under --manual_dir that image paths start from ('' = manual_dir)
    image_extension="",  # e.g. '.png': replaces the listed paths' extension ('' = as listed)
    # Columns whose text, joined with spaces, is the report ('' = no reports: only
    # model.kind='image_only' can train on the build).
    report_columns="report",
    # A second table with the label columns, joined to the table on image_column
    # ('' = the labels are in the table).
    labels_table="",
    # Labels, either the 14 CheXpert columns holding 1 / 0 / -1 / blank:
    label_columns="",  # '' = columns named as the CheXpert findings; else 14 names in that order
    # or one column listing each image's findings by name (then the 14 columns are not read):
    findings_column="",
    findings_separator="|",
    # The names the findings column may hold ('' = the 14 CheXpert names), comma-separated:
    # a CheXpert name, 'name=CheXpert name' ('Effusion=Pleural Effusion') or 'name=' (a
    # finding to ignore, 'Hernia='). Classes no name maps to are stored as not mentioned;
    # the others as 1 where listed, else 0.
    findings_map="",
    patient_column="patient_id",
    # The study of an image (a study has one report): a column (read within the patient),
    # ':folder' (the image path's folder), or '' (each image is its own study).
    study_column="",
    view_column="",  # '' = no view stored
    views="",  # comma-separated values of view_column to keep ('' = all)
    # A column of train / validation / test (also 'valid', 'val', 'dev'); '' = a seeded
    # patient-level split with the fractions below.
    split_column="",
    split_seed=0,
    val_fraction=0.1,
    test_fraction=0.2,
)

SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}


def names(value: str) -> list[str]:
    """A comma-separated option as a list (blanks dropped)."""
    return [v.strip() for v in value.split(",") if v.strip()]


def label_columns(options: dict) -> tuple[str, ...]:
    """The 14 label columns, in CheXpert order."""
    return tuple(names(options["label_columns"])) or labels_lib.CLASS_NAMES


def findings_map(options: dict) -> dict[str, str | None]:
    """A findings-column name -> its CheXpert class, or None for a finding to ignore.

    '' maps the 14 CheXpert names to themselves. Otherwise the option lists the whole
    vocabulary: 'name=CheXpert name' pairs, a CheXpert name alone (itself), 'name=' (a
    finding to ignore)."""
    if not options["findings_map"].strip():
        return {name: name for name in labels_lib.CLASS_NAMES}
    mapping: dict[str, str | None] = {}
    for pair in names(options["findings_map"]):
        name, sep, target = (p.strip() for p in pair.partition("="))
        target = target if sep else name
        if not name or (target and target not in labels_lib.CLASS_NAMES):
            raise ValueError(
                f"data.csv.findings_map: {pair!r} is not 'name=CheXpert name', 'name=' or a CheXpert name "
                f"(the CheXpert names: {', '.join(labels_lib.CLASS_NAMES)})"
            )
        mapping[name] = target or None
    return mapping


def check(options: dict) -> None:
    """Raises ValueError naming the `data.csv` field of a value that cannot work."""

    def require(ok: bool, field: str, expected: str) -> None:
        if not ok:
            raise ValueError(f"data.csv.{field} must be {expected}, got {options.get(field)!r}")

    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"data.csv has no field(s) {unknown}; its fields: {sorted(DEFAULTS)}")
    for field, default in DEFAULTS.items():
        require(isinstance(options[field], type(default)), field, f"a {type(default).__name__}")
    require(options["table"] != "", "table", "the path of your table (relative to --manual_dir)")
    require(re.fullmatch(r"[A-Za-z0-9_.-]*", options["tag"]) is not None, "tag", "letters, digits, '_', '.', '-'")
    require(options["image_column"] != "", "image_column", "a column name")
    require(options["patient_column"] != "", "patient_column", "a column name")
    require(
        options["image_extension"] == "" or options["image_extension"].startswith("."),
        "image_extension",
        "'' or a suffix such as '.png'",
    )
    require(
        len(label_columns(options)) == labels_lib.NUM_CLASSES,
        "label_columns",
        f"'' or {labels_lib.NUM_CLASSES} comma-separated names",
    )
    require(options["findings_separator"] != "", "findings_separator", "a non-empty separator")
    findings_map(options)
    require(not options["views"] or options["view_column"], "views", "'' unless data.csv.view_column is set")
    for field in ("val_fraction", "test_fraction"):
        require(0 < options[field] < 1, field, "in (0, 1)")
    require(options["val_fraction"] + options["test_fraction"] < 1, "test_fraction", "< 1 - val_fraction")


def config_name(options: dict, image_size: int) -> str:
    """The build's tfds config name: `<tag>_s<size>_<8 hex of the options>`."""
    stem = options["table"].replace("\\", "/").rsplit("/", 1)[-1].split(".")[0]
    tag = options["tag"] or re.sub(r"[^A-Za-z0-9_.-]", "_", stem)
    digest = hashlib.sha1(json.dumps(options, sort_keys=True).encode()).hexdigest()[:8]
    return f"{tag}_s{image_size}_{digest}"
