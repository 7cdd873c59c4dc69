"""The `csv` builder (your own table): records, every bad row named in the build report,
CSV / Parquet / JSON lines alike, a findings column with a mapping, the seeded patient
split, and the config checks of the `data.csv` section."""

import json
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from configs import chexpert_plus, default
from data_pipelines import build, datasets, labels as L
from data_pipelines.table import options as table_options, read
from tests.fabricate import chexpert_plus as fab_chexpert_plus, common, table as fab
from tests.test_real_datasets import _records
from vkd_jax.runs import config_checks

SIZE = 32


def _build(manual_dir, data_dir, *flags):
    return build.main(
        [
            "--dataset=csv",
            f"--manual_dir={manual_dir}",
            f"--data_dir={data_dir}",
            f"--image_size={SIZE}",
            "--workers=1",
            *flags,
        ]
    )


def _builder(data_dir, **options):
    return datasets.real_builder("csv", image_size=SIZE, data_dir=data_dir, **(fab.OPTIONS | options))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("table")
    manual_dir, data_dir = str(root / "export"), str(root / "tfds")
    expected = fab.write(manual_dir)
    assert _build(manual_dir, data_dir, *fab.FLAGS) == 0
    return manual_dir, data_dir, expected


def _assert_stored(ex, e: common.Example) -> None:
    """A record holds what the fixture says: image size, report, labels, ids, view."""
    assert ex["image"].shape == (SIZE, SIZE, 1)
    assert ex["report"].decode() == e.report
    np.testing.assert_array_equal(ex["labels"], e.labels)
    assert (ex["subject_id"].decode(), ex["study_id"].decode(), ex["view"].decode()) == (
        e.subject_id,
        e.study_id,
        e.view,
    )


def test_records_match_the_table(built):
    _, data_dir, expected = built
    records = _records(_builder(data_dir))
    for split, got in records.items():
        want = {k for k, e in expected.examples.items() if e.split == split}
        assert set(got) == want and want, split
        for image_id, ex in got.items():
            _assert_stored(ex, expected.examples[image_id])


def test_every_bad_row_is_named_and_counted(built):
    _, data_dir, expected = built
    with open(os.path.join(_builder(data_dir).data_dir, "build_report.json")) as f:
        report = json.load(f)
    assert {reason: v["count"] for reason, v in report["skipped"].items()} == expected.skipped
    first = {reason: v["first"] for reason, v in report["skipped"].items()}
    # 13 good rows on lines 2-26 (a quoted newline in most reports), then the bad ones in order.
    assert first["blank image path"] == ["table.csv line 27, column 'path'"]
    assert first["duplicate image path"] == [
        "table.csv line 28, column 'path': p1/s3/v13.png (first on table.csv line 25)"
    ]
    assert first["image path outside image_root"] == ["table.csv line 30, column 'path': ../secret.png"]
    assert first["missing image"] == [
        "table.csv line 31, column 'path': p7/s1/gone.png not found under data.csv.image_root"
    ]
    assert first["unknown label value"] == ["table.csv line 32, column 'Edema': '2' (expected 1, 0, -1 or blank)"]
    assert first["patient in two splits"] == [
        "table.csv line 33, column 'patient_id': patient p9 is in train here; their rows are in test and train",
        "table.csv line 34, column 'patient_id': patient p9 is in test here; their rows are in test and train",
    ]
    assert first["unknown split value"][0].startswith("table.csv line 35, column 'split': 'holdout' (expected one of")
    assert first["unreadable image"][0].startswith("images/p11/s1/a.png (")
    # Ids and counts only: no report text.
    assert "normal" not in json.dumps(report) and "Clear" not in json.dumps(report)


def _rewrite(manual_dir, name, write):
    rows = read.read_table(os.path.join(manual_dir, "table.csv")).rows
    write(rows, os.path.join(manual_dir, name))


def test_parquet_and_json_lines_tables_build_the_same_records(built, tmp_path):
    manual_dir, data_dir, _ = built
    want = {
        s: {k: (r["report"], r["labels"].tolist()) for k, r in recs.items()}
        for s, recs in _records(_builder(data_dir)).items()
    }
    _rewrite(manual_dir, "table.parquet", lambda rows, path: pq.write_table(pa.Table.from_pylist(rows), path))
    _rewrite(
        manual_dir, "table.jsonl", lambda rows, path: common.write(path, "".join(json.dumps(r) + "\n" for r in rows))
    )
    for name in ("table.parquet", "table.jsonl"):
        data = str(tmp_path / name)
        assert _build(manual_dir, data, *fab.FLAGS, f"--table={name}") == 0
        got = _records(_builder(data, table=name))
        assert {s: {k: (r["report"], r["labels"].tolist()) for k, r in recs.items()} for s, recs in got.items()} == want


def test_findings_column_with_a_mapping_and_a_seeded_patient_split(tmp_path):
    manual_dir = tmp_path / "nih_like"
    rows = []
    for n in range(30):
        path = f"img{n}.png"
        common.write(str(manual_dir / path), common.image_bytes(n, "PNG"))
        findings = ["Effusion|Cardiomegaly", "No Finding", "", "Hernia"][n % 4]
        rows.append([path, f"pt{n // 2}", findings])
    common.write(str(manual_dir / "bad.png"), common.image_bytes(99, "PNG"))
    rows.append(["bad.png", "pt99", "Effusion|Mass"])  # Mass: not in the mapping
    common.write_csv(str(manual_dir / "list.csv"), ["Image Index", "Patient ID", "Finding Labels"], rows)
    options = dict(
        table="list.csv",
        image_column="Image Index",
        patient_column="Patient ID",
        report_columns="",
        findings_column="Finding Labels",
        findings_map="Cardiomegaly,No Finding,Effusion=Pleural Effusion,Hernia=",
        val_fraction=0.2,
        test_fraction=0.2,
    )
    assert _build(manual_dir, tmp_path / "tfds", *[f"--{k}={v}" for k, v in options.items()]) == 0
    records = _records(_builder(str(tmp_path / "tfds"), **{**{k: "" for k in fab.OPTIONS}, **options}))
    split_of = {}
    for split, recs in records.items():
        for image_id, ex in recs.items():
            n = int(image_id.removeprefix("img"))
            assert split_of.setdefault(ex["subject_id"].decode(), split) == split  # a patient in one split
            want = np.full(14, L.NOT_MENTIONED, np.int8)
            want[[L.CLASS_NAMES.index(c) for c in ("Cardiomegaly", "No Finding", "Pleural Effusion")]] = L.NEGATIVE
            for name in {0: ("Cardiomegaly", "Pleural Effusion"), 1: ("No Finding",)}.get(n % 4, ()):
                want[L.CLASS_NAMES.index(name)] = L.POSITIVE
            np.testing.assert_array_equal(ex["labels"], want)
            assert ex["report"].decode() == "" and ex["study_id"].decode() == image_id
    assert sum(map(len, records.values())) == 30 and all(records.values())
    with open(
        tmp_path / "tfds" / "csv" / os.listdir(tmp_path / "tfds" / "csv")[0] / "1.0.0" / "build_report.json"
    ) as f:
        skipped = json.load(f)["skipped"]
    assert skipped == {
        "unknown label value": {
            "count": 1,
            "first": [
                "list.csv line 32, column 'Finding Labels': unknown finding 'Mass' (expected a CheXpert "
                "finding or a name of data.csv.findings_map)"
            ],
        }
    }


def test_a_missing_column_stops_the_build_naming_it(built, tmp_path, capsys):
    manual_dir, _, _ = built
    assert _build(manual_dir, tmp_path, *fab.FLAGS, "--image_column=file") == 2
    err = capsys.readouterr().err
    assert "table.csv lacks the column(s) ['file'] named in data.csv" in err
    assert _build(manual_dir, tmp_path, *fab.FLAGS, "--table=tabel.csv") == 2
    assert "tabel.csv (data.csv.table='tabel.csv', under --manual_dir)" in capsys.readouterr().err
    assert _build(manual_dir, tmp_path, *fab.FLAGS, "--val_fraction=0.9") == 2
    assert "data.csv.test_fraction must be < 1 - val_fraction" in capsys.readouterr().err


def test_findings_map_and_options_are_checked():
    options = table_options.DEFAULTS | {"table": "t.csv"}
    assert table_options.findings_map(options | {"findings_map": "Edema,Effusion=Pleural Effusion,Hernia="}) == {
        "Edema": "Edema",
        "Effusion": "Pleural Effusion",
        "Hernia": None,
    }
    with pytest.raises(ValueError, match="'Mass=Lung Mass' is not"):
        table_options.check(options | {"findings_map": "Mass=Lung Mass"})
    with pytest.raises(ValueError, match=r"data.csv has no field\(s\) \['colour'\]"):
        table_options.check(options | {"colour": "red"})
    with pytest.raises(ValueError, match="data.csv.label_columns must be '' or 14"):
        table_options.check(options | {"label_columns": "a,b"})
    table_options.check(options)


@pytest.mark.parametrize(
    "kind, posterior_inputs, ok", [("image_only", "text", True), ("vkd", "none", True), ("vkd", "text", False)]
)
def test_a_table_without_reports_trains_image_only(kind, posterior_inputs, ok):
    config = default.get_config()
    config.data.name = "csv"
    config.data.csv.table = "t.csv"
    config.data.csv.report_columns = ""
    config.model.text_encoder.tokenizer = "synthetic"
    config.model.kind = kind
    config.model.posterior_inputs = posterior_inputs
    if ok:
        config_checks.validate(config, num_devices=1)
    else:
        with pytest.raises(config_checks.ConfigError, match="only model.kind='image_only'"):
            config_checks.validate(config, num_devices=1)
    config.data.csv.table = ""
    with pytest.raises(config_checks.ConfigError, match="config.data.csv.table must be the path of your table"):
        config_checks.validate(config, num_devices=1)


def test_chexpert_plus_release_builds_from_its_config(tmp_path):
    manual_dir = str(tmp_path / "chexpert_plus")
    expected = fab_chexpert_plus.write(manual_dir)
    data_dir = str(tmp_path / "tfds")
    flags = ["--config=configs/chexpert_plus.py", f"--manual_dir={manual_dir}", f"--data_dir={data_dir}"]
    assert build.main([*flags, f"--image_size={SIZE}", "--workers=1"]) == 0
    config = chexpert_plus.get_config()
    builder = datasets.real_builder("csv", image_size=SIZE, data_dir=data_dir, **config.data.csv.to_dict())
    assert builder.builder_config.name.startswith(f"chexpert_plus_s{SIZE}_")
    records = _records(builder)
    got = {image_id: ex for recs in records.values() for image_id, ex in recs.items()}
    assert set(got) == set(expected.examples) and all(records.values())
    for image_id, ex in got.items():
        _assert_stored(ex, expected.examples[image_id])
    with open(os.path.join(builder.data_dir, "build_report.json")) as f:
        report = json.load(f)
    assert report["skipped"] == {
        "no labels row": {
            "count": 1,
            "first": [
                f"{fab_chexpert_plus.TABLE} line 48: valid/patient00024/study1/view1_frontal.jpg is not in "
                "impression_fixed.json"
            ],
        }
    }
    assert report["notes"] == expected.notes


def test_the_build_command_lists_the_registered_datasets():
    assert build.REAL == tuple(datasets.REAL)  # build.py keeps its imports light, so it repeats them


def test_a_changed_table_is_not_mistaken_for_its_build(built, tmp_path, capsys):
    manual_dir, _, _ = built
    copy = tmp_path / "export"
    shutil.copytree(manual_dir, copy)
    data_dir = str(tmp_path / "tfds")
    assert _build(copy, data_dir, *fab.FLAGS) == 0
    assert _build(copy, data_dir, *fab.FLAGS) == 0  # unchanged: found built
    assert "is already built" in capsys.readouterr().out
    with open(copy / "table.csv", "a") as f:
        f.write("p1/s1/v1.png,p1,s1,PA,train,,,1,,,,,,,,,,,,,\n")
    assert _build(copy, data_dir, *fab.FLAGS) == 2
    assert "table.csv changed since" in capsys.readouterr().err
