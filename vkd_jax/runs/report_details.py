"""The report-details table of a run that learns the reports' details (`model.details_from`).

At the start of training every report of the training split is parsed once by its
dataset's parser (`data_pipelines.detail_parsers`) into the facts it states (a finding's
side, severity, ...), and `wrap` adds them to each training batch by study key
(`study_table.StudyTable`): `report_details` and `report_details_mask`, float32 `[B, D]`.
Evaluation and prediction never read them: the details are a training signal only.
"""

from __future__ import annotations

import numpy as np
from absl import logging

from data_pipelines import detail_parsers, input_pipeline
from vkd_jax.runs import log, study_table


def wanted(config) -> bool:
    """Whether a run of `config` learns the reports' details."""
    return config.model.details_from != "none"


def table(studies: dict[int, tuple[np.ndarray, np.ndarray]], path: str = "") -> study_table.StudyTable:
    """The table of `{study key: (targets, mask)}` (non-empty)."""
    keys = np.fromiter(studies, np.int64, len(studies))
    targets, masks = (np.stack([v[i] for v in studies.values()]).astype(np.float32) for i in (0, 1))
    columns = {"report_details": targets, "report_details_mask": masks}
    return study_table.StudyTable(keys, np.arange(len(keys)), columns, "report-details table", path)


def build(config, num_examples: int, split: str | None = None) -> study_table.StudyTable:
    """The details of every report of `split` (default: the training split; `num_examples`
    of them), parsed with progress lines in the log. A study key with two reports that state
    different details is a `ValueError`: the table holds one row per study."""
    parse = detail_parsers.parser(config.data.name).parse
    split = split or config.data.train_split
    logging.info("report details: parsing the %d reports of %s...", num_examples, split)
    progress = log.progress(f"report details parsed ({split})", num_examples, "reports")
    studies: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for batch in input_pipeline.report_texts(config.data, split):
        for key, report in zip(batch["study_id"].tolist(), batch["report"]):
            details = parse(report)
            seen = studies.setdefault(key, details)
            if seen is not details and not all(np.array_equal(a, b) for a, b in zip(seen, details)):
                raise ValueError(f"study key {key}: two reports of one study state different details")
        progress.update(len(batch["report"]))
    if not studies:
        raise ValueError(f"report details: the {split} split has no reports")
    stated = np.mean([m.sum() for _, m in studies.values()])
    logging.info(
        "report details: %d studies, %.1f of %d facts stated per report on average",
        len(studies),
        stated,
        len(next(iter(studies.values()))[1]),
    )
    return table(studies, f"{config.data.name}:{split}")
