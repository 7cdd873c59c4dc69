"""The datasets whose reports have a details parser (numpy only, no TensorFlow).

A parser is a module with `DETAIL_NAMES` (the D facts, one owner) and `parse(report) ->
(targets, mask)`, float32 `[D]` each: what the report's text states beyond the labels (a
finding's side, severity, ...), mask 1 where it states it. Methods that learn the details
(`model.details_from`) train only on these datasets.
"""

from __future__ import annotations

from types import ModuleType

from data_pipelines.synthetic_cxr import report_details as synthetic_cxr

PARSERS: dict[str, ModuleType] = {"synthetic_cxr": synthetic_cxr}


def parser(dataset: str) -> ModuleType:
    """The details parser of `dataset` (`data.name`); `ValueError` if it has none."""
    if dataset not in PARSERS:
        raise ValueError(f"data.name={dataset!r} has no report-details parser; only {tuple(PARSERS)} do")
    return PARSERS[dataset]
