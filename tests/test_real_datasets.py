"""Builds of mimic_cxr, openi and chestxray14 from tiny fabricated trees in their real
layouts (tests/fabricate): counts, labels, report text, ids, the build report,
restarts and bad input."""

import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_pipelines import build, dataset_options, datasets, images, labels as L
from tests.fabricate import chestxray14 as fab_nih, mimic_cxr as fab_mimic, openi as fab_openi

SIZE = 32
FABRICATE = {"mimic_cxr": fab_mimic.write, "openi": fab_openi.write, "chestxray14": fab_nih.write}
OPTIONS = {"chestxray14": ["--val_fraction=0.3"]}


def _build(dataset, manual_dir, data_dir, *extra):
    return build.main(
        [
            f"--dataset={dataset}",
            f"--manual_dir={manual_dir}",
            f"--data_dir={data_dir}",
            f"--image_size={SIZE}",
            "--workers=1",
            *OPTIONS.get(dataset, []),
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """dataset -> (manual_dir, data_dir, Expected), each built once."""
    root = tmp_path_factory.mktemp("real")
    out = {}
    for name, fabricate in FABRICATE.items():
        manual_dir = str(root / f"{name}_source")
        expected = fabricate(manual_dir)
        assert _build(name, manual_dir, str(root / "tfds")) == 0
        out[name] = (manual_dir, str(root / "tfds"), expected)
    return out


def _builder(name, data_dir, **options):
    if name == "chestxray14":
        options.setdefault("val_fraction", 0.3)
    return datasets.real_builder(name, image_size=SIZE, data_dir=data_dir, **options)


def _records(builder):
    return {
        split: {ex["image_id"].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split))}
        for split in ("train", "validation", "test")
    }


@pytest.mark.parametrize("name", list(FABRICATE))
def test_records_match_the_fixture(built, name):
    _, data_dir, expected = built[name]
    records = _records(_builder(name, data_dir))
    for split in records:
        want = {k for k, e in expected.examples.items() if e.split == split}
        assert set(records[split]) == want, split
        assert want, f"the fixture leaves {split} empty"
    for split_records in records.values():
        for image_id, ex in split_records.items():
            e = expected.examples[image_id]
            assert ex["image"].shape == (SIZE, SIZE, 1) and ex["image"].dtype == np.uint8
            assert ex["report"].decode() == e.report
            np.testing.assert_array_equal(ex["labels"], e.labels)
            assert ex["labels"].dtype == np.int8
            assert (ex["subject_id"].decode(), ex["study_id"].decode(), ex["view"].decode()) == (
                e.subject_id,
                e.study_id,
                e.view,
            )
            for key, value in e.extra.items():
                np.testing.assert_array_equal(ex[key], value)


@pytest.mark.parametrize("name", list(FABRICATE))
def test_build_report_counts_skips_and_notes(built, name):
    _, data_dir, expected = built[name]
    builder = _builder(name, data_dir)
    with open(os.path.join(builder.data_dir, "build_report.json")) as f:
        report = json.load(f)
    counts = {}
    for e in expected.examples.values():
        counts[e.split] = counts.get(e.split, 0) + 1
    assert report["examples"] == {s: counts.get(s, 0) for s in ("train", "validation", "test")}
    assert {r: v["count"] for r, v in report["skipped"].items()} == expected.skipped
    for note, count in expected.notes.items():
        assert report["notes"][note] == count, note
    assert builder.info.metadata["class_names"] == list(L.CLASS_NAMES)
    # Ids and counts only: no report text in the report.
    texts = [e.report for e in expected.examples.values() if e.report]
    assert not any(t[:20] in json.dumps(report) for t in texts)


def test_stored_image_is_the_resized_centre_crop(built):
    manual_dir, data_dir, _ = built["mimic_cxr"]
    ex = _records(_builder("mimic_cxr", data_dir))["train"]["d1"]
    source = os.path.join(manual_dir, "files/p10/p10000001/s50000001/d1.jpg")
    np.testing.assert_array_equal(ex["image"], images.square_gray(source, SIZE))


def test_chestxray14_keeps_both_label_sets(built):
    _, data_dir, _ = built["chestxray14"]
    builder = _builder("chestxray14", data_dir)
    assert builder.info.metadata["nih_class_names"] == list(L.NIH_CLASS_NAMES)
    ex = _records(builder)["test"]["00000002_000"]  # Effusion|Infiltration|Mass
    nih = dict(zip(L.NIH_CLASS_NAMES, ex["nih_labels"]))
    assert nih["Effusion"] == nih["Infiltration"] == nih["Mass"] == 1 and sum(nih.values()) == 3
    chexpert = dict(zip(L.CLASS_NAMES, ex["labels"]))
    assert chexpert["Pleural Effusion"] == 1 and chexpert["No Finding"] == 0
    assert chexpert["Cardiomegaly"] == 0 and chexpert["Lung Opacity"] == L.NOT_MENTIONED


def test_openi_split_is_by_patient(built):
    _, data_dir, _ = built["openi"]
    records = _records(_builder("openi", data_dir))
    subjects = [{ex["subject_id"] for ex in r.values()} for r in records.values()]
    assert not (subjects[0] & subjects[1] or subjects[0] & subjects[2] or subjects[1] & subjects[2])
    train = records["train"] | records["validation"] | records["test"]
    assert train["CXR1_1_IM-0001-3001"]["study_id"] == train["CXR1_1_IM-0001-4001"]["study_id"]


def test_mimic_from_an_extracted_reports_folder_with_options(tmp_path, capsys):
    expected = fab_mimic.write(str(tmp_path / "src"), reports="folder")
    args = ("--sections=impression", "--views=all", "--keep_cache")
    assert _build("mimic_cxr", tmp_path / "src", tmp_path / "tfds", *args) == 0
    builder = _builder("mimic_cxr", str(tmp_path / "tfds"), sections="impression", views="all")
    assert builder.builder_config.name == "s32_views-all_impression"
    records = {k: v for r in _records(builder).values() for k, v in r.items()}
    assert set(records) == set(expected.examples) | {"d2"}  # The lateral view too.
    assert records["d1"]["report"].decode() == "Small left effusion and cardiomegaly."
    assert records["d3"]["report"].decode() == fab_mimic.REPORT_NO_FINDINGS_TEXT
    assert records["d6"]["report"].decode() == ""  # The study without a report.

    # Built: a rerun only prints the saved report.
    capsys.readouterr()
    assert _build("mimic_cxr", tmp_path / "src", tmp_path / "tfds", *args) == 0
    assert "already built" in capsys.readouterr().out
    # Interrupted after preprocessing (records lost, cache kept): nothing is decoded again.
    tfds_dir = tmp_path / "tfds" / "mimic_cxr" / builder.builder_config.name
    for path in sorted(tfds_dir.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    assert _build("mimic_cxr", tmp_path / "src", tmp_path / "tfds", *args) == 0
    out = capsys.readouterr().out
    assert "9 images indexed, 8 already preprocessed" in out  # All but the corrupt d5.
    assert _builder("mimic_cxr", str(tmp_path / "tfds"), sections="impression", views="all").is_prepared()


def test_mimic_negbio_labels(built, tmp_path):
    manual_dir, _, expected = built["mimic_cxr"]
    assert _build("mimic_cxr", manual_dir, tmp_path, "--labeler=negbio") == 0
    builder = _builder("mimic_cxr", str(tmp_path), labeler="negbio")
    assert builder.builder_config.name == "s32_negbio"
    edema = L.CLASS_NAMES.index("Edema")
    for split in _records(builder).values():
        for image_id, ex in split.items():
            want = np.array(expected.examples[image_id].labels)
            if image_id not in ("d4",):  # d4's study has no label row: all -2.
                want[edema] = L.POSITIVE
            np.testing.assert_array_equal(ex["labels"], want)


def test_openi_from_extracted_folders(built, tmp_path):
    _, data_dir, _ = built["openi"]
    expected = fab_openi.write(str(tmp_path / "src"), archives=False)
    assert _build("openi", tmp_path / "src", tmp_path / "tfds") == 0
    from_archives = _records(_builder("openi", data_dir))
    from_folders = _records(_builder("openi", str(tmp_path / "tfds")))
    for split in from_archives:
        assert set(from_folders[split]) == set(from_archives[split])
        for k, ex in from_folders[split].items():
            np.testing.assert_array_equal(ex["image"], from_archives[split][k]["image"])
            assert ex["report"].decode() == expected.examples[k].report


def test_parallel_workers_build_the_same_images(built, tmp_path):
    manual_dir, data_dir, _ = built["chestxray14"]
    assert _build("chestxray14", manual_dir, tmp_path, "--workers=2") == 0
    serial = _records(_builder("chestxray14", data_dir))
    parallel = _records(_builder("chestxray14", str(tmp_path)))
    for split in serial:
        assert set(serial[split]) == set(parallel[split])
        for k in serial[split]:
            np.testing.assert_array_equal(serial[split][k]["image"], parallel[split][k]["image"])


@pytest.mark.parametrize("name", list(FABRICATE))
def test_wrong_manual_dir_names_the_expected_layout(name, tmp_path, capsys):
    assert _build(name, tmp_path / "nowhere", tmp_path / "tfds") == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "Expected" in err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README").write_text("not the data")
    assert _build(name, tmp_path / "empty", tmp_path / "tfds") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and ("csv" in err.lower() or ".tgz" in err)


def test_csv_without_required_columns_names_them(built, tmp_path, capsys):
    manual_dir, _, _ = built["chestxray14"]
    src = tmp_path / "src"
    fab_nih.write(str(src))
    (src / "Data_Entry_2017_v2020.csv").write_text("Image Index,Labels,Patient ID\nx.png,a,1\n")
    assert _build("chestxray14", src, tmp_path / "tfds") == 2
    err = capsys.readouterr().err
    assert "Data_Entry_2017_v2020.csv" in err and "Finding Labels" in err and "View Position" in err


def test_mimic_without_any_report_says_where_it_looked(tmp_path, capsys):
    fab_mimic.write(str(tmp_path / "src"))
    os.remove(tmp_path / "src" / "mimic-cxr-reports.zip")
    assert _build("mimic_cxr", tmp_path / "src", tmp_path / "tfds") == 2
    assert "mimic-cxr-reports.zip" in capsys.readouterr().err


def test_openi_labels_from_a_labeler_csv(built, tmp_path):
    manual_dir, _, expected = built["openi"]
    csv_path = tmp_path / "labels.csv"
    rows = ["id," + ",".join(f'"{c}"' if " " in c else c for c in L.CLASS_NAMES)]
    for n in range(1, 19):
        rows.append(f"{n}.xml," + ",".join("-1.0" if c == "Edema" else "" for c in L.CLASS_NAMES))
    csv_path.write_text("\n".join(rows) + "\n")
    assert _build("openi", manual_dir, tmp_path / "tfds", f"--labels_csv={csv_path}") == 0
    builder = _builder("openi", str(tmp_path / "tfds"), labels_csv=str(csv_path))
    assert builder.builder_config.name.startswith("s32_labels-")
    records = {k: v for r in _records(builder).values() for k, v in r.items()}
    assert set(records) == set(expected.examples)
    want = [L.UNCERTAIN if c == "Edema" else L.NOT_MENTIONED for c in L.CLASS_NAMES]
    for ex in records.values():
        np.testing.assert_array_equal(ex["labels"], want)


def test_every_dataset_has_its_options_section():
    """configs/default.py names the `data` section of each dataset `data.name` can name."""
    from configs import default

    config = default.get_config()
    assert set(dataset_options.DATASET_OPTIONS) == set(datasets.NAMES)
    for section in dataset_options.DATASET_OPTIONS.values():
        assert isinstance(config.data[section], type(config.data)), section
