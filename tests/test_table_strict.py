"""Strict rows and labels in the `csv` builder's table reader (issue 36): a row with more or
fewer cells than the header, or a label other than 1 / 0 / -1 / blank, is skipped and named
with its file, line and column, never stored shifted or truncated, never a traceback."""

import json
import os

import numpy as np
import pytest

from data_pipelines import build, datasets, labels as L
from data_pipelines.table import options as table_options, read, table as table_lib
from tests.fabricate import common

HEADER = ["path", "patient_id", "report", *L.CLASS_NAMES]
LABELS = ["0", "-1", "-1", "0", "", "1", "0", "", "", "1", "", "0", "", "-1"]
OPTIONS = dict(table="t.csv", image_root="images", val_fraction=0.2, test_fraction=0.2)


def _write(path: str, text: str) -> str:
    common.write(path, text)
    return path


def _csv(*rows: str) -> str:
    return "\n".join([",".join(HEADER), *rows]) + "\n"


def test_a_ragged_row_is_left_out_and_named(tmp_path):
    labels = ",".join(LABELS)
    path = _write(
        str(tmp_path / "t.csv"),
        _csv(
            f"a.png,p1,clear,{labels}",
            f"b.png,p2,Lungs clear, no effusion,{labels}",  # an unquoted comma: 18 cells
            "c.png,p3,clear,1,0",  # a short row: 5 cells
            f'd.png,p4,"two\nlines, quoted",{labels}',
            f'e.png,p5,"two\nlines", unquoted,{labels}',
        ),
    )
    table = read.read_table(path)
    assert [r["path"] for r in table.rows] == ["a.png", "d.png"]
    assert [table.where(i) for i in range(2)] == ["t.csv line 2", "t.csv line 5"]
    assert table.rows[1]["report"] == "two\nlines, quoted"
    assert table.skipped == [
        (
            read.WRONG_WIDTH,
            "t.csv line 3: expected 17 cells as in the header, got 18 (an unquoted separator in a cell?)",
        ),
        (read.WRONG_WIDTH, "t.csv line 4: expected 17 cells as in the header, got 5 (cells missing?)"),
        (
            read.WRONG_WIDTH,
            "t.csv line 7-8: expected 17 cells as in the header, got 18 (an unquoted separator in a cell?)",
        ),
    ]


def test_a_table_that_is_not_utf8_or_not_csv_stops_naming_file_and_line(tmp_path):
    path = str(tmp_path / "t.csv")
    common.write(
        path, _csv("a.png,p1,clear," + ",".join(LABELS), "b.png,p2,Bj\xf6rk," + ",".join(LABELS)).encode("latin-1")
    )
    with pytest.raises(ValueError, match=r"t.csv line 3: byte 0xf6 is not UTF-8 .*save the table as UTF-8"):
        read.read_table(path)
    # An unclosed quote swallows the rest of the file into one cell, past csv's size limit.
    _write(path, _csv('a.png,p1,"unclosed' + "x" * 200_000))
    with pytest.raises(ValueError, match=r"t.csv line 2: not readable as CSV \(field larger than field limit"):
        read.read_table(path)


@pytest.mark.parametrize("value", ["1", "1.0", "1e0", " 1 ", "+1", "-1.0", "-1", "0", "0.0", "-0", ""])
def test_the_label_spellings_read_today_still_read(value):
    want = L.NOT_MENTIONED if not value else int(float(value))
    assert L.parse_chexpert_value(value) == want


@pytest.mark.parametrize("value", ["0.5", "-0.9", "2", "-2", "inf", "-inf", "nan", "1e400", "yes", "TRUE", "1_0"])
def test_a_label_outside_1_0_minus1_blank_is_named_by_its_column(value):
    parse = table_lib._label_parser(table_options.DEFAULTS | {"table": "t.csv"})
    row = dict(zip(L.CLASS_NAMES, LABELS)) | {"Edema": value}
    with pytest.raises(ValueError) as e:
        parse(row)
    assert str(e.value) == f"column 'Edema': {value.strip()!r} (expected 1, 0, -1 or blank)"


def _tree(root: str, *bad_rows: str) -> None:
    rows = []
    for n in range(30):
        common.write(os.path.join(root, "images", f"img{n}.png"), common.image_bytes(n, "PNG", size=(12, 12)))
        rows.append(f"img{n}.png,pt{n},clear," + ",".join(LABELS))
    for n in range(len(bad_rows)):
        common.write(os.path.join(root, "images", f"bad{n}.png"), common.image_bytes(n, "PNG", size=(12, 12)))
    _write(os.path.join(root, "t.csv"), _csv(*rows, *bad_rows))


def test_the_build_skips_and_names_bad_rows_and_labels(tmp_path, capsys):
    labels = ",".join(LABELS)
    with_label = lambda n, column, value: (
        f"bad{n}.png,q{n},clear,"
        + ",".join(  # noqa: E731
            value if c == column else v for c, v in zip(L.CLASS_NAMES, LABELS)
        )
    )
    manual_dir, data_dir = str(tmp_path / "src"), str(tmp_path / "tfds")
    _tree(
        manual_dir,
        f"bad0.png,q0,Lungs clear,,{labels}",  # line 32: the labels would move one column
        "bad1.png,q1,clear,1,0",  # line 33: the missing labels would be blank
        with_label(2, "Edema", "0.5"),  # line 34
        with_label(3, "Atelectasis", "-0.9"),
        with_label(4, "Fracture", "inf"),  # aborted the build with a traceback
        with_label(5, "Pneumonia", "nan"),
        with_label(6, "Edema", "yes"),
    )
    flags = [f"--{k}={v}" for k, v in OPTIONS.items()]
    args = ["--dataset=csv", f"--manual_dir={manual_dir}", f"--data_dir={data_dir}", "--image_size=8", "--workers=1"]
    assert build.main([*args, *flags]) == 0
    out = capsys.readouterr().out
    assert "skipped 2 (wrong number of cells), e.g. t.csv line 32: expected 17 cells" in out
    builder = datasets.real_builder("csv", image_size=8, data_dir=data_dir, **OPTIONS)
    with open(os.path.join(builder.data_dir, "build_report.json")) as f:
        skipped = json.load(f)["skipped"]
    assert skipped["wrong number of cells"]["first"] == [
        "t.csv line 32: expected 17 cells as in the header, got 18 (an unquoted separator in a cell?)",
        "t.csv line 33: expected 17 cells as in the header, got 5 (cells missing?)",
    ]
    assert skipped["unknown label value"]["first"] == [
        f"t.csv line {line}, column {column!r}: {value!r} (expected 1, 0, -1 or blank)"
        for line, column, value in [
            (34, "Edema", "0.5"),
            (35, "Atelectasis", "-0.9"),
            (36, "Fracture", "inf"),
            (37, "Pneumonia", "nan"),
            (38, "Edema", "yes"),
        ]
    ]
    stored = {}
    for split in ("train", "validation", "test"):
        for ex in builder.as_dataset(split=split).as_numpy_iterator():
            stored[ex["image_id"].decode()] = ex["labels"]
    assert sorted(stored) == sorted(f"img{n}" for n in range(30))
    want = np.array([L.parse_chexpert_value(v) for v in LABELS], np.int8)
    assert all((labels == want).all() for labels in stored.values())
