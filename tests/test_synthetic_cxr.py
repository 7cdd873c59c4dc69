"""Tests of the synthetic paired chest X-ray dataset: generator, reports, tfds builder."""

import re
import time

import numpy as np
import pytest

from data_pipelines import labels as L
from data_pipelines.synthetic_cxr import findings, generator, render, report

UNCERTAIN_MARKERS = ("possible", "cannot exclude", "not excluded", "questionable", "may represent", "suspected")
# Words that any mention of a finding uses; absent findings must not be mentioned.
KEYWORDS = {
    "Atelectasis": r"atelectasis",
    "Cardiomegaly": r"cardiomegaly|heart|cardiac silhouette",
    "Consolidation": r"consolidation",
    "Edema": r"edema",
    "Enlarged Cardiomediastinum": r"mediastin",
    "Fracture": r"fracture|osseous",
    "Lung Lesion": r"nodule|mass",
    "Lung Opacity": r"opacit",
    "Pleural Effusion": r"effusion|costophrenic",
    "Pleural Other": r"pleural (thickening|scarring)",
    "Pneumonia": r"pneumonia|infection",
    "Pneumothorax": r"pneumothorax",
    "Support Devices": r"tube|line|catheter|pacemaker|devices",
}
# Keywords no other finding's phrases share, so that silence can be checked too.
UNSHARED = (
    "Atelectasis",
    "Consolidation",
    "Edema",
    "Pneumothorax",
    "Pneumonia",
    "Lung Opacity",
    "Pleural Effusion",
    "Fracture",
)


@pytest.fixture(scope="module")
def examples():
    return [generator.generate_example(i, seed=3, image_size=32) for i in range(300)]


def test_deterministic_in_seed_and_index():
    a = generator.generate_example(7, seed=1, image_size=32)
    b = generator.generate_example(7, seed=1, image_size=32)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    other_seed = generator.generate_example(7, seed=2, image_size=32)
    other_index = generator.generate_example(8, seed=1, image_size=32)
    for other in (other_seed, other_index):
        assert not np.array_equal(a["image"], other["image"])
        assert a["image_id"] != other["image_id"]


def test_image_parameters_change_only_the_image():
    a = generator.generate_example(4, image_size=32)
    b = generator.generate_example(4, image_size=48, image_signal=2.0, noise=0.5)
    assert b["image"].shape == (48, 48, 1)
    assert a["report"] == b["report"] and a["view"] == b["view"]
    np.testing.assert_array_equal(a["labels"], b["labels"])


def test_shapes_dtypes_and_codes(examples):
    for ex in examples:
        assert ex["image"].shape == (32, 32, 1) and ex["image"].dtype == np.uint8
        assert ex["labels"].shape == (14,) and ex["labels"].dtype == np.int8
        assert set(ex["labels"].tolist()) <= {L.POSITIVE, L.NEGATIVE, L.UNCERTAIN, L.NOT_MENTIONED}
        assert ex["view"] in ("PA", "AP")
        assert isinstance(ex["report"], str) and ex["report"].startswith("FINDINGS:")
        assert all(isinstance(ex[k], str) for k in ("subject_id", "study_id", "image_id"))
        assert ex["image"].std() > 10  # Not a blank image.
    assert len({ex["image_id"] for ex in examples}) == len(examples)


def test_no_finding_iff_nothing_present(examples):
    for ex in examples:
        others = np.delete(ex["labels"], L.NO_FINDING)
        present = np.isin(others, (L.POSITIVE, L.UNCERTAIN)).any()
        no_finding = ex["labels"][L.NO_FINDING]
        assert no_finding == (L.NOT_MENTIONED if present else L.POSITIVE)


def test_prevalences_roughly_like_mimic():
    draws = np.stack([findings.sample_study(np.random.default_rng([0, i])).labels for i in range(2000)])
    present = np.isin(draws, (L.POSITIVE, L.UNCERTAIN)).mean(0)
    for name, p in findings.PREVALENCE.items():
        assert abs(present[L.CLASS_NAMES.index(name)] - p) < 0.03 + 0.2 * p, name
    assert 0.1 < present[L.NO_FINDING] < 0.4
    coded = draws[:, [L.CLASS_NAMES.index(n) for n in findings.FINDINGS]]
    uncertain_share = (coded == L.UNCERTAIN).sum() / np.isin(coded, (1, -1)).sum()
    assert 0.05 < uncertain_share < 0.2
    assert 0 < (coded == L.NEGATIVE).mean() < (coded == L.NOT_MENTIONED).mean()


def test_report_mentions_agree_with_labels(examples):
    for ex in examples:
        text = ex["report"].lower()
        for name, pattern in KEYWORDS.items():
            code = ex["labels"][L.CLASS_NAMES.index(name)]
            sentences = [s for s in re.split(r"[.:]", text) if re.search(pattern, s)]
            if code in (L.POSITIVE, L.UNCERTAIN, L.NEGATIVE):
                assert sentences, (name, code, text)
            if code == L.UNCERTAIN:
                assert any(m in s for s in sentences for m in UNCERTAIN_MARKERS), (name, text)
            if code == L.NOT_MENTIONED and name in UNSHARED:
                assert not sentences, (name, text)
        if ex["labels"][L.NO_FINDING] == L.POSITIVE:
            impression = text.split("impression:")[1]
            assert "no acute" in impression or "normal" in impression


def test_reports_are_varied(examples):
    positives = [ex["report"] for ex in examples if ex["labels"][L.NO_FINDING] != L.POSITIVE]
    assert len(set(positives)) == len(positives)
    sentences = {s.strip() for ex in examples for s in ex["report"].split(".")}
    assert len(sentences) > 100


def test_vocabulary_covers_every_report(examples):
    vocab = generator.vocabulary()
    assert vocab == sorted(set(vocab)) and all(w == w.lower() for w in vocab)
    for ex in examples:
        assert set(report.tokens(ex["report"])) <= set(vocab), ex["report"]


def test_tokenizer_has_no_unknown_tokens(examples, tmp_path):
    from data_pipelines import tokenizer as tokenizer_lib

    tok = tokenizer_lib.load_tokenizer("synthetic", str(tmp_path))
    assert tok.pad_token_id == 0 and (tmp_path / "vocab.txt").exists()
    ids = tok([ex["report"] for ex in examples])["input_ids"]
    assert all(tok.unk_token_id not in row for row in ids)
    assert max(len(row) for row in ids) <= 160  # Fits the usual 256 (or 128) token budget.


def test_tokenizer_directory_must_exist(tmp_path):
    from data_pipelines import tokenizer as tokenizer_lib

    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        tokenizer_lib.load_tokenizer(str(tmp_path / "no_such_dir"), str(tmp_path))


def _render(study, index, finding, code, signal):
    """Renders `study` with only `finding` set to `code`, with a fixed image stream."""
    labels = np.full(14, L.NOT_MENTIONED, np.int8)
    labels[L.CLASS_NAMES.index(finding)] = code
    image = render.render_image(
        study._replace(labels=labels),
        np.random.default_rng([99, index]),
        image_size=64,
        image_signal=signal,
        noise=1.0,
        strengths=render.DEFAULT_STRENGTHS,
    )
    return image.astype(np.float32)


@pytest.mark.parametrize("finding", ["Cardiomegaly", "Pleural Effusion", "Lung Lesion"])
def test_image_signal_scales_the_trace(finding):
    def trace(signal):
        diffs = []
        for i in range(10):
            study = findings.sample_study(np.random.default_rng([5, i]))
            diff = _render(study, i, finding, L.POSITIVE, signal) - _render(study, i, finding, L.NEGATIVE, signal)
            diffs.append(np.abs(diff).mean())
        return np.mean(diffs)

    assert trace(0.0) == 0.0  # No signal: the label does not show at all.
    assert 0 < trace(0.5) < trace(2.0)


def test_strengths_are_validated():
    with pytest.raises(ValueError, match="Pneumonitis"):
        generator.generate_example(0, strengths={"Pneumonitis": 1.0})
    assert generator.strengths_with_defaults({"Edema": 2.0})["Edema"] == 2.0


def test_generation_is_fast():
    generator.generate_example(0)  # Warm the coordinate caches.
    start = time.perf_counter()
    for i in range(200):
        generator.generate_example(i, image_size=64)
    # About 1.5 ms per example on one core; the bound leaves room for slow machines.
    assert time.perf_counter() - start < 4.0


# --- tfds builder --------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from data_pipelines.synthetic_cxr import synthetic_cxr

    config = synthetic_cxr.builder_config(image_size=32, num_train=12, num_validation=5, num_test=7, seed=4)
    data_dir = tmp_path_factory.mktemp("tfds")
    builder = synthetic_cxr.SyntheticCxr(config=config, data_dir=str(data_dir))
    builder.download_and_prepare()
    return builder


def test_config_names_encode_every_parameter():
    from data_pipelines.synthetic_cxr import synthetic_cxr

    base = dict(image_size=32, num_train=10, num_validation=2, num_test=3, seed=0, image_signal=1.0, noise=1.0)
    changes = dict(
        image_size=48,
        num_train=11,
        num_validation=4,
        num_test=5,
        seed=1,
        image_signal=0.5,
        noise=2.0,
        label_noise=0.2,
        strengths="Edema=2",
        mild_drop=0.3,
    )
    names = {synthetic_cxr.builder_config(**base).name}
    for field, value in changes.items():
        names.add(synthetic_cxr.builder_config(**(base | {field: value})).name)
    assert len(names) == 1 + len(changes)
    assert synthetic_cxr.builder_config(**base) is synthetic_cxr.builder_config(**base)
    assert synthetic_cxr.SyntheticCxr.name == "synthetic_cxr"


def test_builder_splits_and_features(built):
    assert {k: v.num_examples for k, v in built.info.splits.items()} == {"train": 12, "validation": 5, "test": 7}
    features = built.info.features
    assert features["image"].shape == (32, 32, 1)
    assert features["labels"].shape == (14,) and features["labels"].np_dtype == np.int8
    assert set(features.keys()) == {"image", "report", "labels", "subject_id", "study_id", "image_id", "view"}
    assert built.info.metadata["class_names"] == list(L.CLASS_NAMES)
    assert "Pleural Effusion" in built.info.description


def test_builder_stores_generator_output(built):
    import tensorflow_datasets as tfds

    from data_pipelines.synthetic_cxr import synthetic_cxr

    records = list(tfds.as_numpy(built.as_dataset(split="validation")))
    offset = synthetic_cxr.SPLIT_OFFSETS["validation"]
    expected = {generator.generate_example(i, seed=4, image_size=32)["image_id"]: i for i in range(offset, offset + 5)}
    assert sorted(r["image_id"].decode() for r in records) == sorted(expected)
    for record in records:
        ex = generator.generate_example(expected[record["image_id"].decode()], seed=4, image_size=32)
        np.testing.assert_array_equal(record["image"], ex["image"])  # PNG is lossless.
        np.testing.assert_array_equal(record["labels"], ex["labels"])
        assert record["report"].decode() == ex["report"]
        assert record["view"].decode() == ex["view"]


def test_label_noise_drops_positives_only_at_its_rate():
    labels = np.array([1, 0, -1, -2] * 25000, np.int8)
    noisy = generator.noisy_labels(labels, 0.2, seed=0, index=7)
    changed = noisy != labels
    assert np.all(labels[changed] == 1) and np.all(noisy[changed] == -2)
    assert abs(changed[labels == 1].mean() - 0.2) < 0.01
    np.testing.assert_array_equal(generator.noisy_labels(labels, 0.2, seed=0, index=7), noisy)  # deterministic
    np.testing.assert_array_equal(generator.noisy_labels(labels, 0.0, seed=0, index=7), labels)
    with pytest.raises(ValueError, match="label_noise"):
        generator.noisy_labels(labels, 1.5, seed=0, index=7)


def test_label_noise_and_data_seed_change_only_what_they_name(tmp_path):
    """label_noise corrupts the training and validation labels only; images, reports and the
    test split stay those of the clean build. The data seed changes the examples."""
    import tensorflow_datasets as tfds

    from data_pipelines.synthetic_cxr import synthetic_cxr

    def records(**kw):
        config = synthetic_cxr.builder_config(image_size=16, num_train=150, num_validation=150, num_test=150, **kw)
        builder = synthetic_cxr.SyntheticCxr(config=config, data_dir=str(tmp_path))
        builder.download_and_prepare()
        return {
            split: {r["image_id"]: r for r in tfds.as_numpy(builder.as_dataset(split=split))}
            for split in ("train", "validation", "test")
        }

    clean, noisy = records(), records(label_noise=0.5)
    for split in ("train", "validation", "test"):
        assert clean[split].keys() == noisy[split].keys()
        num_dropped = 0
        for key, c in clean[split].items():
            n = noisy[split][key]
            np.testing.assert_array_equal(c["image"], n["image"])
            assert c["report"] == n["report"]
            changed = c["labels"] != n["labels"]
            assert np.all(c["labels"][changed] == 1) and np.all(n["labels"][changed] == -2)
            num_dropped += changed.sum()
        if split == "test":
            assert num_dropped == 0
        else:
            assert num_dropped > 20
    other_seed = records(seed=1)
    assert not set(other_seed["train"]) & set(clean["train"])  # other examples (ids carry the seed)
