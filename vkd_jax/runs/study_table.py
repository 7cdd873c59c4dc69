"""Per-study arrays looked up by the batches' study keys: the one keyed lookup of a run's tables.

A training or eval batch names its studies by `study_id` (int64 keys, made by the input
pipeline); a table maps each key to one row of some named arrays and adds those rows to the
batch (`add_to`, `wrap`): one `searchsorted` per batch. The text-feature cache
(`text_cache.TextFeatureCache`) and the report-details table (`report_details`) are tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import numpy as np


class StudyTable:
    """Study key -> a row of each of `columns` (name -> `[M, ...]`): `add_to(batch)` adds
    every column as `[B, ...]` under its name.

    `keys` int64 `[N]` (distinct, N > 0), `rows` `[N]` their rows of the columns (M <= N:
    studies may share a row); `name` and `path` name the table in errors."""

    def __init__(self, keys: np.ndarray, rows: np.ndarray, columns: Mapping[str, np.ndarray], name: str, path=""):
        order = np.argsort(keys, kind="stable")
        self.keys = np.asarray(keys, np.int64)[order]
        self.rows = np.asarray(rows, np.int64)[order]
        self.columns = dict(columns)
        self.name = name
        self.path = path

    def add_to(self, batch: dict) -> dict:
        """`batch` plus the columns' rows of its `study_id`s. Padding rows (`mask` 0) whose
        key is not in the table (an eval batch layout the build did not see) get zeros."""
        keys = np.asarray(batch["study_id"], np.int64)
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        found = self.keys[pos] == keys
        rows = self.rows[pos]
        added = {name: column[rows] for name, column in self.columns.items()}
        if not found.all():
            missing = np.flatnonzero(~found & (np.asarray(batch.get("mask", 1.0)) > 0))
            if len(missing):
                more = f", and {len(missing) - 1} more" if len(missing) > 1 else ""
                raise KeyError(
                    f"study key {int(keys[missing[0]])} (row {missing[0]} of the batch{more}) is not in the "
                    f"{self.name} {self.path or '(in memory)'}: the batches come from other data "
                    "than the reports it read"
                )
            for values in added.values():
                values[~found] = 0
        return dict(batch, **added)

    def wrap(self, batches: Iterable[dict]) -> Iterator[dict]:
        for batch in batches:
            yield self.add_to(batch)
