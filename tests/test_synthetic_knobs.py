"""The synthetic dataset's benchmark knobs (`data.synthetic.strengths`, `data.synthetic.mild_drop`):
each changes only what it names, the defaults build what was built before, bad values are named."""

import numpy as np
import pytest

from data_pipelines import labels as L
from data_pipelines.synthetic_cxr import generator, report

SEED = 3
N = 300


def _example(i: int, factors: dict | None = None) -> dict:
    strengths = generator.scaled_strengths(factors) if factors is not None else None
    return generator.generate_example(i, seed=SEED, image_size=32, strengths=strengths)


@pytest.fixture(scope="module")
def clean():
    return [_example(i) for i in range(N)]


def _present(example: dict, name: str) -> bool:
    return example["labels"][L.CLASS_NAMES.index(name)] in (L.POSITIVE, L.UNCERTAIN)


# --- strengths --------------------------------------------------------------------------


def test_strengths_parse_to_exact_canonical_factors():
    parsed = generator.parse_strengths(" Pneumothorax=2, Lung Lesion=0.50,Edema=1,")
    assert parsed == {"Lung Lesion": 0.5, "Pneumothorax": 2.0}  # sorted; factors of 1 left out
    assert list(parsed) == ["Lung Lesion", "Pneumothorax"]
    assert generator.strengths_text(parsed) == "Lung Lesion=0.5,Pneumothorax=2.0"
    assert generator.parse_strengths(generator.strengths_text(parsed)) == parsed
    assert generator.parse_strengths("") == {} and generator.strengths_text({}) == ""
    assert generator.parse_strengths("Fracture=0") == {"Fracture": 0.0}  # no trace at all
    strengths = generator.scaled_strengths(parsed)
    assert strengths["Lung Lesion"] == 0.5 * generator.DEFAULT_STRENGTHS["Lung Lesion"]
    assert strengths["Edema"] == generator.DEFAULT_STRENGTHS["Edema"]
    assert generator.scaled_strengths({}) == generator.DEFAULT_STRENGTHS


@pytest.mark.parametrize(
    "text, says",
    [
        ("Pneumonitis=0.5", "unknown finding 'Pneumonitis'"),
        ("lung lesion=0.5", "unknown finding 'lung lesion'"),
        ("No Finding=0.5", "unknown finding 'No Finding'"),
        ("Edema=-1", "'Edema=-1' is not"),
        ("Edema", "'Edema' is not"),
        ("Edema=strong", "'Edema=strong' is not"),
        ("Edema=nan", "'Edema=nan' is not"),
        ("Edema=inf", "'Edema=inf' is not"),
        ("Edema=2,Edema=3", "'Edema' is given twice"),
        (0.5, "strengths must be a string"),
    ],
)
def test_bad_strengths_are_named(text, says):
    with pytest.raises(ValueError, match=says):
        generator.parse_strengths(text)


def test_default_strengths_are_byte_identical(clean):
    for i in range(20):
        ex = _example(i, {})
        for key, value in clean[i].items():
            np.testing.assert_array_equal(ex[key], value)


def test_strengths_change_only_the_images_of_studies_with_that_finding(clean):
    factors = generator.parse_strengths("Lung Lesion=0.5,Pneumothorax=2")
    present, changed = [], []
    for i, c in enumerate(clean):
        ex = _example(i, factors)
        for key in ("report", "labels", "subject_id", "study_id", "image_id", "view"):
            np.testing.assert_array_equal(ex[key], c[key])
        present.append(_present(c, "Lung Lesion") or _present(c, "Pneumothorax"))
        changed.append(not np.array_equal(ex["image"], c["image"]))
    present, changed = np.array(present), np.array(changed)
    assert present.sum() >= 10
    assert not np.any(changed & ~present)  # only studies with a named finding
    assert changed[present].mean() > 0.9  # and (all but traces lost to rounding) those


# --- mild_drop --------------------------------------------------------------------------


def _mild_positive(example_index: int, labels: np.ndarray) -> np.ndarray:
    details = generator.study_of(example_index, seed=SEED).details
    mild = np.zeros(L.NUM_CLASSES, bool)
    for name in report.GRADED:
        mild[L.CLASS_NAMES.index(name)] = details[name].severity == 0
    return mild & (labels == L.POSITIVE)


def test_graded_findings_are_all_but_support_devices():
    assert set(report.GRADED) == set(generator.DEFAULT_STRENGTHS) - {"Support Devices"}


def test_mild_drop_drops_only_mild_positives_at_its_rate():
    labels = [generator.study_of(i, seed=SEED).labels for i in range(3000)]
    mild = np.stack([_mild_positive(i, y) for i, y in enumerate(labels)])
    dropped = np.stack([generator.mild_dropped_labels(y, 0.3, seed=SEED, index=i) for i, y in enumerate(labels)])
    labels = np.stack(labels)
    changed = dropped != labels
    assert np.all(mild[changed]) and np.all(dropped[changed] == L.NOT_MENTIONED)
    assert mild.sum() > 800 and abs(changed[mild].mean() - 0.3) < 0.05
    support = L.CLASS_NAMES.index("Support Devices")
    assert (labels[:, support] == L.POSITIVE).any() and not changed[:, support].any()
    for i in range(50):  # 0 drops nothing, 1 every mild positive; deterministic
        y = labels[i]
        np.testing.assert_array_equal(generator.mild_dropped_labels(y, 0.0, seed=SEED, index=i), y)
        all_dropped = np.where(mild[i], np.int8(L.NOT_MENTIONED), y)
        np.testing.assert_array_equal(generator.mild_dropped_labels(y, 1.0, seed=SEED, index=i), all_dropped)
        np.testing.assert_array_equal(generator.mild_dropped_labels(y, 0.3, seed=SEED, index=i), dropped[i])
    with pytest.raises(ValueError, match=r"mild_drop must be a number in \[0, 1\], got 1.5"):
        generator.mild_dropped_labels(labels[0], 1.5, seed=SEED, index=0)


def test_mild_drop_and_label_noise_draw_from_their_own_streams():
    """Composing the two drops a positive that either drops, and they drop different ones."""
    both = only_one = 0
    for i in range(200):
        y = generator.study_of(i, seed=SEED).labels
        noisy = generator.noisy_labels(y, 0.5, seed=SEED, index=i)
        mild = generator.mild_dropped_labels(y, 0.5, seed=SEED, index=i)
        composed = generator.mild_dropped_labels(noisy, 0.5, seed=SEED, index=i)
        np.testing.assert_array_equal(composed, np.minimum(noisy, mild))  # -2 < 1
        both += int(((noisy != y) & (mild != y)).sum())
        only_one += int(((noisy != y) != (mild != y)).sum())
    assert both > 0 and only_one > 0


# --- the tfds builder ---------------------------------------------------------------------


def test_builder_names_are_unchanged_at_the_defaults():
    from configs import default
    from data_pipelines import datasets
    from data_pipelines.synthetic_cxr import synthetic_cxr

    name = "s64_n4000-1000-1000_seed0_sig1p0_noise1p0"  # the builds that predate the knobs
    assert synthetic_cxr.builder_config().name == name
    assert synthetic_cxr.builder_config(strengths="", mild_drop=0.0).name == name
    assert synthetic_cxr.builder_config(strengths="Edema=1").name == name  # renders the same images
    data = default.get_config().data
    data.name = "synthetic_cxr"
    assert datasets.builder(data).builder_config.name == "s224_n4000-500-1000_seed0_sig1p0_noise1p0"


def test_builder_names_tell_the_knobs_apart():
    from data_pipelines.synthetic_cxr import synthetic_cxr

    make = synthetic_cxr.builder_config
    a = make(strengths="Lung Lesion=0.5,Pneumothorax=2")
    assert make(strengths=" Pneumothorax=2.0 ,Lung Lesion=0.50") is a  # one setting, one build
    assert a.strengths == "Lung Lesion=0.5,Pneumothorax=2.0" and a.strengths in a.description
    names = {
        make().name,
        a.name,
        make(strengths="Lung Lesion=0.5").name,
        make(strengths="Lung Lesion=0.25,Pneumothorax=2").name,
        make(mild_drop=0.5).name,
        make(mild_drop=0.25).name,
        make(mild_drop=0.5, strengths="Lung Lesion=0.5").name,
    }
    assert len(names) == 7
    assert make(mild_drop=0.5).name.endswith("_mild0p5")
    for kw, says in [
        (dict(mild_drop=1.5), r"mild_drop must be a number in \[0, 1\]"),
        (dict(mild_drop=-0.1), "mild_drop"),
        (dict(strengths="Pneumonitis=2"), "unknown finding 'Pneumonitis'"),
        (dict(strengths="Edema=-1"), "'Edema=-1' is not"),
    ]:
        with pytest.raises(ValueError, match=says):
            make(**kw)


def test_built_knobs_change_only_what_they_name(tmp_path):
    """A tiny build of each knob beside the clean one: strengths change images only (of the studies
    with the finding); mild_drop=1 drops exactly the mild positives of train and validation."""
    import tensorflow_datasets as tfds

    from data_pipelines.synthetic_cxr import synthetic_cxr

    def records(**kw):
        config = synthetic_cxr.builder_config(image_size=16, num_train=30, num_validation=30, num_test=30, **kw)
        builder = synthetic_cxr.SyntheticCxr(config=config, data_dir=str(tmp_path))
        builder.download_and_prepare()
        return {
            split: {r["image_id"].decode(): r for r in tfds.as_numpy(builder.as_dataset(split=split))}
            for split in ("train", "validation", "test")
        }

    clean, strong, mild = records(seed=SEED), records(seed=SEED, strengths="Edema=3"), records(seed=SEED, mild_drop=1.0)
    num_dropped = {}
    for split in synthetic_cxr.SPLIT_OFFSETS:
        assert clean[split].keys() == strong[split].keys() == mild[split].keys()
        num_dropped[split] = 0
        for key, c in clean[split].items():
            s, m = strong[split][key], mild[split][key]
            assert c["report"] == s["report"] == m["report"]
            np.testing.assert_array_equal(c["labels"], s["labels"])
            np.testing.assert_array_equal(c["image"], m["image"])
            edema = c["labels"][L.CLASS_NAMES.index("Edema")] in (L.POSITIVE, L.UNCERTAIN)
            assert np.array_equal(c["image"], s["image"]) != edema
            expected = c["labels"]
            if split in synthetic_cxr.NOISY_SPLITS:
                index = int(key.rsplit("-", 1)[1])  # the split's offset included
                expected = np.where(_mild_positive(index, c["labels"]), np.int8(L.NOT_MENTIONED), c["labels"])
            np.testing.assert_array_equal(m["labels"], expected)
            num_dropped[split] += int((m["labels"] != c["labels"]).sum())
    assert num_dropped["test"] == 0 and num_dropped["train"] > 0 and num_dropped["validation"] > 0
