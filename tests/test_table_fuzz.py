"""Fuzzing the table reader (issue 36): generated CSV / TSV tables, plain or gzipped, UTF-8
with or without a BOM or latin-1, quoted minimally or fully, "\\n" or "\\r\\n" line ends, rows of
the right width, too short, too long, or written naively (cells joined without quoting),
label cells in every spelling. The property: a row the reader returns holds exactly what was
written (its cells stripped, blank ones None) and its labels parse to what was meant, or
name the column of a bad one; every other row is skipped and named with its file and line.
(These are the rows the `csv` builder stores, so the build cannot store a misread row.)

Rows are written by a small RFC 4180 writer rather than `csv.writer`, which leaves a lone
"\\r" unquoted when its line terminator is "\\n": that file no longer says what was meant.
"""

import gzip
import os
import re
import tempfile

from hypothesis import event, given, note, settings, strategies as st

from data_pipelines import labels as L
from data_pipelines.table import options as table_options, read, table as table_lib

HEADER = ["path", "report", *L.CLASS_NAMES]
WIDTH = len(HEADER)
GOOD = {"1": 1, "1.0": 1, "1e0": 1, " 1 ": 1, "+1": 1, "0": 0, "0.0": 0, "-0": 0, "-1": -1, "-1.0": -1, "": -2, " ": -2}
BAD = ["0.5", "-0.9", "2", "inf", "-inf", "nan", "1e400", "yes", "TRUE"]
SPECIAL = [",", "\t", '"', "\n", "\r", "\r\n", " ", "é", "Ã©", "\ufeff", "\u2028", "\x85", "\x00"]
TEXT = st.lists(st.one_of(st.sampled_from(SPECIAL), st.characters(exclude_categories=("Cs",))), max_size=6).map("".join)
BREAK = re.compile(r"\r\n|\r|\n")  # The line ends of a file opened with newline="" (csv's).


@st.composite
def _row(draw):
    kind = draw(st.sampled_from(["quoted", "quoted", "naive", "short", "long"]))
    labels = draw(st.lists(st.sampled_from([*GOOD, *BAD]), min_size=L.NUM_CLASSES, max_size=L.NUM_CLASSES))
    cells = [draw(TEXT), draw(TEXT), *labels]
    if kind == "naive":  # A hand-made CSV: no quotes, so no quote or line break in a cell.
        cells = [re.sub(r'["\r\n]', "", c) for c in cells]
    elif kind == "short":
        cells = cells[: draw(st.integers(1, WIDTH - 1))]
    elif kind == "long":
        cells += draw(st.lists(TEXT, min_size=1, max_size=2))
    return kind, cells


def _line(cells, kind: str, delimiter: str, quote_all: bool) -> str:
    if kind == "naive":
        return delimiter.join(cells)
    special = (delimiter, '"', "\r", "\n")
    return delimiter.join(
        '"' + c.replace('"', '""') + '"' if quote_all or any(s in c for s in special) else c for c in cells
    )


def _expect_labels(row: dict, spellings: list[str]) -> None:
    parse = table_lib._label_parser(table_options.DEFAULTS | {"table": "t.csv"})
    bad = [(c, s) for c, s in zip(L.CLASS_NAMES, spellings) if s not in GOOD]
    if not bad:
        assert parse(row).tolist() == [GOOD[s] for s in spellings]
        return
    try:
        parse(row)
    except ValueError as e:
        assert str(e).startswith(f"column {bad[0][0]!r}: {bad[0][1].strip()!r} (expected 1, 0, -1 or blank)")
    else:
        raise AssertionError(f"labels {spellings} were read")


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(_row(), max_size=6),
    suffix=st.sampled_from([".csv", ".tsv", ".csv.gz"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "latin-1"]),
    quote_all=st.booleans(),
    newline=st.sampled_from(["\n", "\r\n"]),
    final_newline=st.booleans(),
)
def test_a_row_is_read_exactly_or_skipped_and_named(rows, suffix, encoding, quote_all, newline, final_newline):
    delimiter = "\t" if suffix.startswith(".tsv") else ","
    lines = [_line(HEADER, "quoted", delimiter, quote_all)] + [_line(c, k, delimiter, quote_all) for k, c in rows]
    text = newline.join(lines) + (newline if final_newline else "")
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:  # latin-1 cannot hold the text: write it as UTF-8.
        encoding, data = "utf-8", text.encode("utf-8")
    note(f"{encoding} {suffix}: {data!r}")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t" + suffix)
        with open(path, "wb") as f:
            f.write(gzip.compress(data) if suffix.endswith(".gz") else data)
        try:
            decoded = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:  # latin-1 beyond ASCII: the file is refused, naming the line.
            line = data.count(b"\n", 0, e.start) + 1
            decoded, want = None, f"{path} line {line}: byte 0x{data[e.start]:02x} is not UTF-8"
        try:
            table = read.read_table(path)
        except ValueError as err:
            assert decoded is None and str(err).startswith(want), err
            return
    assert decoded is not None, "a table that is not UTF-8 was read"
    if decoded != text:  # latin-1 bytes that are also UTF-8 ('Ã©'): read as UTF-8, documented.
        return

    accepted, skipped, start = [], [], 1 + len(BREAK.findall(lines[0] + newline))
    for (kind, cells), written in zip(rows, lines[1:]):
        end = start + len(BREAK.findall(written))  # The last line of the row.
        read_cells = written.split(delimiter) if kind == "naive" else cells
        if any(c.strip() for c in read_cells):  # A blank row holds nothing and is passed over.
            if len(read_cells) == WIDTH:
                accepted.append((start, cells))
            else:
                span = f"{start}" if end == start else f"{start}-{end}"
                got = len(read_cells)
                skipped.append(
                    f"{os.path.basename(path)} line {span}: expected {WIDTH} cells as in the header, got {got} "
                )
        start = end + 1

    event(f"{len(accepted)} rows read, {len(skipped)} skipped")
    assert table.lines == [line for line, _ in accepted]
    for row, (_, cells) in zip(table.rows, accepted):
        assert row == {h: c.strip() or None for h, c in zip(HEADER, cells)}
        _expect_labels(row, cells[2:])
    assert len(table.skipped) == len(skipped)
    for (reason, what), want in zip(table.skipped, skipped):
        assert reason == read.WRONG_WIDTH and what.startswith(want)
