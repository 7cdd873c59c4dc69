"""Reading a user's table: CSV (plain or .gz), TSV, Parquet or JSON lines, as rows of text.

Every cell becomes a `str` (whitespace-stripped) or None where it is empty or missing
(a blank CSV cell, a JSON null, a Parquet null or NaN), so the builder applies one rule
whatever the format. A row is named by `Table.where(i)`: the line of a CSV or JSON-lines
file (the header is line 1 of a CSV), the row of a Parquet file, counting from 1.

A CSV row whose number of cells differs from the header's is not read: zipping it with
the header would shift every later cell (an unquoted comma in a report moves all the
labels one column) or leave the missing ones blank. It is left out and named in
`Table.skipped`, which the builder counts in its report like any other skipped row.
Tables are read as UTF-8 (a BOM is allowed); another encoding stops the build naming
the file, line and byte, since guessing one (latin-1, cp1252) can misread text silently.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import math
import os
from collections.abc import Sequence

CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
JSONL_SUFFIXES = (".json", ".jsonl", ".jsonl.gz", ".json.gz")
SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES + JSONL_SUFFIXES


@dataclasses.dataclass
class Table:
    path: str
    columns: list[str]
    rows: list[dict[str, str | None]]
    lines: list[int]  # The line (or row) number of each row.
    unit: str  # "line" or "row"
    # (reason, "file line N: what was expected") of rows the reader could not read.
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def where(self, i: int) -> str:
        return f"{os.path.basename(self.path)} {self.unit} {self.lines[i]}"

    def require(self, columns: Sequence[str], what: str = "") -> None:
        """Raises ValueError naming the file and the configured columns it lacks."""
        missing = [c for c in columns if c not in self.columns]
        if missing:
            raise ValueError(
                f"{self.path} lacks the column(s) {missing}{' ' + what if what else ''} (its columns: {self.columns})"
            )


def _cell(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _text(path: str) -> io.StringIO:
    """The file's text, read whole so that a byte that is not UTF-8 is named by its line."""
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ValueError(
            f"{path} line {line}: byte 0x{data[e.start]:02x} is not UTF-8 ({e.reason}); save the table as UTF-8"
        ) from None
    # newline="": lines end at \n, \r or \r\n only, as csv expects; a quoted cell keeps its own.
    return io.StringIO(text, newline="")


WRONG_WIDTH = "wrong number of cells"


def _read_csv(path: str) -> Table:
    delimiter = "\t" if path.endswith((".tsv", ".tsv.gz")) else ","
    name = os.path.basename(path)
    reader = csv.reader(_text(path), delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path} is empty; expected a header row of column names")
        header = [h.strip() for h in header]
        rows, lines, skipped, start = [], [], [], reader.line_num + 1
        for row in reader:
            if not any(cell.strip() for cell in row):
                pass  # A blank line holds no image: nothing to name.
            elif len(row) != len(header):
                span = f"{start}" if reader.line_num == start else f"{start}-{reader.line_num}"
                why = "an unquoted separator in a cell?" if len(row) > len(header) else "cells missing?"
                skipped.append(
                    (
                        WRONG_WIDTH,
                        f"{name} line {span}: expected {len(header)} cells as in the header, got {len(row)} ({why})",
                    )
                )
            else:
                rows.append({h: _cell(v) for h, v in zip(header, row)})
                lines.append(start)  # Its first line, if a quoted cell spans several.
            start = reader.line_num + 1
    except csv.Error as e:  # e.g. a cell over csv's size limit: an unclosed quote ate the file.
        raise ValueError(f"{path} line {reader.line_num}: not readable as CSV ({e})") from None
    return Table(path, header, rows, lines, unit="line", skipped=skipped)


def _read_jsonl(path: str) -> Table:
    rows, lines, columns = [], [], {}
    for line_number, line in enumerate(_text(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} line {line_number}: not a JSON object ({e.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path} line {line_number}: expected a JSON object, got {type(record).__name__}")
        columns.update(dict.fromkeys(record))
        rows.append({k: _cell(v) for k, v in record.items()})
        lines.append(line_number)
    return Table(path, list(columns), rows, lines, unit="line")


def _read_parquet(path: str) -> Table:
    import pyarrow.parquet as pq  # A tensorflow-datasets dependency.

    table = pq.read_table(path)
    columns = table.column_names
    data = table.to_pydict()
    rows = [{c: _cell(data[c][i]) for c in columns} for i in range(table.num_rows)]
    return Table(path, columns, rows, list(range(1, table.num_rows + 1)), unit="row")


def read_table(path: str) -> Table:
    """The rows of the table at `path`, by its suffix (`SUFFIXES`)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no table at {path}")
    if path.endswith(CSV_SUFFIXES):
        return _read_csv(path)
    if path.endswith(PARQUET_SUFFIXES):
        return _read_parquet(path)
    if path.endswith(JSONL_SUFFIXES):
        return _read_jsonl(path)
    raise ValueError(f"{path}: a table must end in one of {SUFFIXES}")
