"""Reading the source files of the real datasets: CSV tables and layout checks.

Errors name the file and what was expected, so a wrong `--manual_dir` or a different
release of a dataset is diagnosed at once rather than half-way through a long build.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Sequence


class LayoutError(FileNotFoundError):
    """The manual directory does not hold the files a builder expects."""


def require_dir(manual_dir: str | None, dataset: str, layout: str) -> str:
    """Returns `manual_dir` as a str, or raises LayoutError describing `layout`."""
    if not manual_dir or not os.path.isdir(manual_dir):
        raise LayoutError(
            f"{dataset}: manual_dir {manual_dir!r} is not a directory. "
            f"Expected the manual download laid out as:\n{layout}"
        )
    return os.fspath(manual_dir)


def find_first(manual_dir: str, names: Sequence[str], dataset: str, layout: str) -> str:
    """The first of `names` (paths relative to `manual_dir`) that exists."""
    for name in names:
        candidate = os.path.join(manual_dir, name)
        if os.path.exists(candidate):
            return candidate
    raise LayoutError(
        f"{dataset}: none of {list(names)} found in {manual_dir}. Expected the manual download laid out as:\n{layout}"
    )


def read_csv(path: str, required: Sequence[str], aliases: dict[str, str] | None = None) -> list[dict[str, str]]:
    """Rows of a CSV (plain or .gz) as dicts keyed by (stripped) header names.

    `aliases` maps alternative header names to the name used in the rows (e.g.
    'Patient Sex' -> 'Patient Gender'). Raises ValueError naming the file and the missing
    columns if any of `required` is absent. Extra columns, including an empty trailing
    one, are kept under their names and ignored by callers.

    A row must have as many cells as the header (it may leave out the header's trailing
    empty-named columns): a dataset's own table with a ragged row is damaged, and reading it
    by position would give one row's cells to another's columns, so it raises ValueError
    naming the file, the line and both widths rather than building on shifted labels.
    """
    aliases = aliases or {}
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        text = io.TextIOWrapper(f, encoding="utf-8-sig", newline="")
        reader = csv.reader(text)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path} is empty; expected a header with columns {list(required)}")
        header = [aliases.get(h.strip(), h.strip()) for h in header]
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(f"{path} lacks the required columns {missing} (its header: {header})")
        named = len(header)
        while named and not header[named - 1]:
            named -= 1  # A trailing comma in the header names no column; rows may leave it out.
        rows, start = [], reader.line_num + 1
        for row in reader:
            if row:
                if not named <= len(row) <= len(header):
                    width = f"{len(header)}" if named == len(header) else f"{named} to {len(header)}"
                    why = "an unquoted comma in a cell?" if len(row) > len(header) else "cells missing?"
                    raise ValueError(
                        f"{path} line {start}: expected {width} cells as in the header, got {len(row)} ({why}); "
                        "the file looks damaged: fetch it again from the dataset's source"
                    )
                rows.append(dict(zip(header, row)))
            start = reader.line_num + 1
        return rows
