"""Input-pipeline options added for the real datasets: channels and ImageNet (or
torchxrayvision) normalisation, training augmentation (seeded, resumable, off in eval), a
stored size other than the training size, and ChestX-ray14's own label set."""

import importlib.util
import itertools

import ml_collections
import numpy as np
import pytest

from configs import default
from data_pipelines import build, input_pipeline, labels as L, tokenizer as tokenizer_lib
from tests.fabricate import chestxray14

SIZE = 32
AUGMENT = dict(rotation=10.0, scale=0.1, translate=0.05, brightness=0.1, contrast=0.2, hflip=False)


def _config(data_dir, **overrides) -> ml_collections.ConfigDict:
    """`configs/default.py`'s data section on a tiny synthetic_cxr build, with `overrides`."""
    cfg = default.get_config().data
    cfg.update(dict(name="synthetic_cxr", data_dir=str(data_dir), image_size=SIZE, shuffle_buffer=64))
    cfg.synthetic.update(dict(num_train=20, num_validation=6, num_test=4))
    cfg.chestxray14.update(dict(val_fraction=0.3))
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tfds")
    input_pipeline.prepare(_config(d))
    return d


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return tokenizer_lib.load_tokenizer("synthetic", str(tmp_path_factory.mktemp("tok")))


def _train(cfg, tok, n, **kwargs):
    kwargs = dict(batch_size=4, tokenizer=tok, max_length=16, seed=0) | kwargs
    return list(itertools.islice(input_pipeline.train_batches(cfg, **kwargs), n))


def _eval(cfg, tok, split="validation"):
    return list(input_pipeline.eval_batches(cfg, split, batch_size=4, tokenizer=tok, max_length=16))


def test_three_channels_with_imagenet_statistics(data_dir, tok):
    plain = _eval(_config(data_dir, mean=0.0, std=1.0), tok)  # x / 255
    rgb_cfg = _config(data_dir, channels=3, normalization="imagenet")
    assert input_pipeline.prepare(rgb_cfg).channels == 3
    rgb = _eval(rgb_cfg, tok)
    for a, b in zip(plain, rgb):
        assert b["image"].shape == a["image"].shape[:3] + (3,)
        real = a["mask"] == 1
        for c in range(3):
            want = (a["image"][real, ..., 0] - input_pipeline.IMAGENET_MEAN[c]) / input_pipeline.IMAGENET_STD[c]
            np.testing.assert_allclose(b["image"][real, ..., c], want, rtol=1e-5, atol=1e-5)


def test_one_channel_scaled_as_torchxrayvision(data_dir, tok):
    plain = _eval(_config(data_dir, mean=0.0, std=1.0), tok)  # x / 255
    xrv = _eval(_config(data_dir, normalization="torchxrayvision"), tok)
    for a, b in zip(plain, xrv):
        assert b["image"].shape == a["image"].shape
        real = a["mask"] == 1
        want = (2 * a["image"][real] - 1) * 1024  # xrv.utils.normalize(x, 255)
        np.testing.assert_allclose(b["image"][real], want, rtol=1e-5, atol=1e-3)
        assert -1024 <= b["image"][real].min() and b["image"][real].max() <= 1024


def test_augmentation_is_seeded_resumable_and_train_only(data_dir, tok):
    plain_cfg, aug_cfg = _config(data_dir), _config(data_dir, augment=AUGMENT)
    plain, augmented = _train(plain_cfg, tok, 6), _train(aug_cfg, tok, 6)
    for a, b in zip(plain, augmented):
        np.testing.assert_array_equal(a["labels"], b["labels"])  # Same examples, same order.
        assert not np.allclose(a["image"], b["image"])
        assert np.isfinite(b["image"]).all()
        assert b["image"].min() >= -0.5 / 0.25 - 1e-6 and b["image"].max() <= 0.5 / 0.25 + 1e-6
    again = _train(aug_cfg, tok, 6)
    resumed = _train(aug_cfg, tok, 3, start_step=3)  # 20 examples: 5 steps per epoch.
    for a, b in zip(augmented, again):
        np.testing.assert_array_equal(a["image"], b["image"])
    for a, b in zip(augmented[3:], resumed):
        np.testing.assert_array_equal(a["image"], b["image"])
    for a, b in zip(_eval(plain_cfg, tok), _eval(aug_cfg, tok)):
        np.testing.assert_array_equal(a["image"], b["image"])


def test_reads_a_larger_build_resized(data_dir, tok):
    cfg = _config(data_dir, build_size=48)
    input_pipeline.prepare(cfg)
    (batch,) = _train(cfg, tok, 1)
    assert batch["image"].shape == (4, SIZE, SIZE, 1)


@pytest.fixture(scope="module")
def nih_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("nih")
    expected = chestxray14.write(str(root / "src"))
    assert (
        build.main(
            [
                "--dataset=chestxray14",
                f"--manual_dir={root / 'src'}",
                f"--data_dir={root / 'tfds'}",
                f"--image_size={SIZE}",
                "--workers=1",
                "--val_fraction=0.3",
            ]
        )
        == 0
    )
    return str(root / "tfds"), expected


@pytest.mark.parametrize("label_set", ["nih", "chexpert"])
def test_chestxray14_label_sets(nih_dir, tok, label_set):
    data_dir, expected = nih_dir
    cfg = _config(data_dir, name="chestxray14", label_set=label_set, no_finding_rule=False, uncertainty_policy="ignore")
    meta = input_pipeline.prepare(cfg)
    assert meta.class_names == L.class_names(label_set)
    batches = _eval(cfg, tok, "test")
    rows = [
        (i, b["labels"][k], b["label_mask"][k]) for b in batches for k, i in enumerate(b["image_id"]) if b["mask"][k]
    ]
    assert len(rows) == sum(e.split == "test" for e in expected.examples.values())
    for image_id, targets, mask in rows:
        e = expected.examples[image_id]
        raw = np.array(e.extra["nih_labels"] if label_set == "nih" else e.labels)
        np.testing.assert_array_equal(targets, raw == 1)
        np.testing.assert_array_equal(mask, raw >= 0)  # 'ignore' masks the unshared classes.
    prevalence = input_pipeline.label_prevalence(cfg, "train")
    assert prevalence.shape == (14,)


def test_nih_label_set_needs_its_feature(data_dir):
    with pytest.raises(ValueError, match="nih_labels"):
        input_pipeline.prepare(_config(data_dir, label_set="nih", no_finding_rule=False))


def test_the_build_command_reads_its_options_from_the_training_config(tmp_path):
    """`build --config=FILE` builds what that config trains on: one list of build options."""
    chestxray14.write(str(tmp_path / "src"))
    config_file = tmp_path / "nih_small.py"
    config_file.write_text(
        "from configs import chestxray14\n\n\n"
        "def get_config():\n"
        "    config = chestxray14.get_config()\n"
        f"    config.data.data_dir = {str(tmp_path / 'tfds')!r}\n"
        f"    config.data.image_size = {SIZE}\n"
        "    config.data.chestxray14.val_fraction = 0.3\n"
        "    return config\n"
    )
    assert build.main([f"--config={config_file}", f"--manual_dir={tmp_path / 'src'}", "--workers=1"]) == 0
    spec = importlib.util.spec_from_file_location("nih_small", config_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    meta = input_pipeline.prepare(module.get_config().data)  # raises if it is not the build made
    assert meta.name == "chestxray14" and meta.stored_image_size == SIZE
    assert build.main([f"--config={config_file}", "--dataset=openi"]) == 2  # the config names another
