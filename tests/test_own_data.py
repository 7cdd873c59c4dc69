"""`examples.own_data`: synthetic examples exported to PNG + CSV build with `--dataset=csv`
into the records the generator made, and the training config reads that build. (The
example command then trains and evaluates; `tests/test_real_configs_run.py` trains on a
`csv` build, CheXpert Plus's.)"""

import csv

import numpy as np

from configs import demo_scratch
from data_pipelines import datasets, labels as L
from data_pipelines.synthetic_cxr import generator
from examples import own_data
from tests.test_real_datasets import _records
from vkd_jax.runs import config_checks

SIZE = 32


def test_export_builds_into_the_generated_examples(tmp_path):
    manual_dir, data_dir = str(tmp_path / "export"), str(tmp_path / "tfds")
    own_data.export(manual_dir, 40, image_size=SIZE)
    with open(tmp_path / "export" / "table.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40
    assert [L.parse_chexpert_value(rows[3][name]) for name in L.CLASS_NAMES] == generator.generate_example(
        3, image_size=SIZE
    )["labels"].tolist()
    assert own_data.build_export(manual_dir, data_dir, SIZE) == 0

    base = demo_scratch.get_config()
    base.data.image_size = SIZE
    config = own_data.train_config(base, data_dir)
    config_checks.validate(config, num_devices=1)
    builder = datasets.builder(config.data)  # the build training reads
    records = _records(builder)
    assert sum(map(len, records.values())) == 40 and all(records.values())
    for i in range(40):
        ex = generator.generate_example(i, image_size=SIZE)
        image_id = f"{ex['subject_id']}/{ex['study_id']}"
        (got,) = [recs[image_id] for recs in records.values() if image_id in recs]
        assert got["report"].decode() == ex["report"] and got["subject_id"].decode() == ex["subject_id"]
        np.testing.assert_array_equal(got["labels"], ex["labels"])
        np.testing.assert_array_equal(got["image"], ex["image"])  # PNG round trip, same size: exact
