"""Tests of the tf.data input pipeline on a tiny synthetic_cxr build."""

import hashlib
import itertools

import ml_collections
import numpy as np
import pytest

from configs import default
from data_pipelines import input_pipeline, labels as L, tokenizer as tokenizer_lib
from data_pipelines.synthetic_cxr import generator

SIZE, NUM_TRAIN, NUM_VAL, NUM_TEST, SEED = 32, 26, 11, 5, 2
MAX_LENGTH = 48
KEYS = {"image", "input_ids", "attention_mask", "labels", "label_mask", "mask", "study_id"}


def _config(data_dir, **overrides) -> ml_collections.ConfigDict:
    """`configs/default.py`'s data section on a tiny synthetic_cxr build, with `overrides`."""
    cfg = default.get_config().data
    cfg.update(dict(name="synthetic_cxr", data_dir=str(data_dir), image_size=SIZE, shuffle_buffer=64))
    cfg.synthetic.update(dict(num_train=NUM_TRAIN, num_validation=NUM_VAL, num_test=NUM_TEST, seed=SEED))
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    cfg = _config(tmp_path_factory.mktemp("tfds"))
    input_pipeline.prepare(cfg)
    return cfg


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return tokenizer_lib.load_tokenizer("synthetic", str(tmp_path_factory.mktemp("tok")))


def _example(image_id: str) -> dict:
    """The generator's example behind a stored `image_id` ("synthetic-cxr-SEED-INDEX")."""
    return generator.generate_example(int(image_id.rsplit("-", 1)[1]), seed=SEED, image_size=SIZE)


def _train(cfg, tok, n, **kwargs):
    kwargs = dict(batch_size=4, tokenizer=tok, max_length=MAX_LENGTH, seed=0) | kwargs
    return list(itertools.islice(input_pipeline.train_batches(cfg, **kwargs), n))


def _eval(cfg, tok, split="validation", **kwargs):
    kwargs = dict(batch_size=4, tokenizer=tok, max_length=MAX_LENGTH) | kwargs
    return list(input_pipeline.eval_batches(cfg, split, **kwargs))


def _rows(batches) -> list[bytes]:
    """One hashable key per real example (its image), in order."""
    return [b["image"][i].tobytes() for b in batches for i in np.flatnonzero(b["mask"])]


def test_prepare(cfg, capsys):
    meta = input_pipeline.prepare(cfg)  # Already built: must not generate again.
    assert "Generating" not in capsys.readouterr().out
    assert meta.num_examples == {"train": NUM_TRAIN, "validation": NUM_VAL, "test": NUM_TEST}
    assert meta.class_names == L.CLASS_NAMES and meta.image_size == SIZE and meta.name == cfg.name


def test_train_batch_layout(cfg, tok):
    (batch,) = _train(cfg, tok, 1)
    assert set(batch) == KEYS
    assert batch["image"].shape == (4, SIZE, SIZE, 1) and batch["image"].dtype == np.float32
    for key in ("input_ids", "attention_mask"):
        assert batch[key].shape == (4, MAX_LENGTH) and batch[key].dtype == np.int32
    for key in ("labels", "label_mask"):
        assert batch[key].shape == (4, 14) and batch[key].dtype == np.float32
    assert batch["mask"].dtype == np.float32
    np.testing.assert_array_equal(batch["mask"], 1.0)
    assert batch["study_id"].shape == (4,) and batch["study_id"].dtype == np.int64
    assert (batch["input_ids"][:, 0] == tok.cls_token_id).all()


def test_eval_rows_match_the_generator(cfg, tok):
    for batch in _eval(cfg, tok):
        assert set(batch) == KEYS | {"image_id"}
        assert batch["study_id"].dtype == np.int64
        for i in np.flatnonzero(batch["mask"]):
            ex = _example(batch["image_id"][i])
            assert batch["study_id"][i] == input_pipeline.study_keys([ex["study_id"]])[0]
            pixels = batch["image"][i] * cfg.std + cfg.mean  # Undo the normalisation.
            np.testing.assert_allclose(pixels * 255, ex["image"], atol=1e-3)
            targets, label_mask = L.apply_uncertainty_policy(ex["labels"], "zeros", True)
            np.testing.assert_array_equal(batch["labels"][i], targets)
            np.testing.assert_array_equal(batch["label_mask"][i], label_mask)
            tokens = tok(ex["report"], padding="max_length", truncation=True, max_length=MAX_LENGTH)
            np.testing.assert_array_equal(batch["input_ids"][i], tokens["input_ids"])
            np.testing.assert_array_equal(batch["attention_mask"][i], tokens["attention_mask"])


@pytest.mark.parametrize("split, num", [("validation", NUM_VAL), ("test", NUM_TEST)])
def test_eval_scores_every_example_once(cfg, tok, split, num):
    batches = _eval(cfg, tok, split)
    assert len(batches) == -(-num // 4)
    assert all(b["image"].shape[0] == 4 and b["mask"].shape == (4,) for b in batches)
    real = [i for b in batches for i, m in zip(b["image_id"], b["mask"]) if m]
    offset = 1_000_000_000 if split == "validation" else 2_000_000_000
    expected = {
        generator.generate_example(i, seed=SEED, image_size=SIZE)["image_id"] for i in range(offset, offset + num)
    }
    assert sorted(real) == sorted(expected)
    last = batches[-1]
    pad = last["mask"] == 0
    assert pad.sum() == len(batches) * 4 - num
    assert (last["image_id"][pad] == "").all()
    assert (last["study_id"][pad] == input_pipeline.study_keys([""])[0]).all()
    np.testing.assert_array_equal(last["label_mask"][pad], 0.0)
    np.testing.assert_array_equal(last["labels"][pad], 0.0)
    assert (last["attention_mask"][pad].sum(-1) > 0).all()  # No all-masked attention rows.


def test_eval_processes_share_the_global_batches(cfg, tok):
    """Three processes' batches, side by side, are one process's batches of three times the
    size (11 examples in global batches of 9: the last one is split 2 / 0 / 0 plus padding)."""
    whole = _eval(cfg, tok, batch_size=9)
    shards = [_eval(cfg, tok, batch_size=3, process_index=p, process_count=3) for p in range(3)]
    assert all(len(s) == len(whole) == 2 for s in shards)  # Same number of batches: lockstep.
    for step, batch in enumerate(whole):
        for key in KEYS | {"image_id"}:
            np.testing.assert_array_equal(np.concatenate([s[step][key] for s in shards]), batch[key])
    ids = [i for s in shards for b in s for i, m in zip(b["image_id"], b["mask"]) if m]
    assert len(ids) == len(set(ids)) == NUM_VAL


def test_train_batches_carry_the_study_keys(cfg, tok):
    """An epoch's rows carry distinct study keys of the split, each with its study's report."""
    examples = [generator.generate_example(i, seed=SEED, image_size=SIZE) for i in range(NUM_TRAIN)]
    by_key = dict(zip(input_pipeline.study_keys([ex["study_id"] for ex in examples]).tolist(), examples))
    epoch = _train(cfg, tok, NUM_TRAIN // 4)
    keys = [k for b in epoch for k in b["study_id"].tolist()]
    assert len(set(keys)) == len(keys) == NUM_TRAIN // 4 * 4 and set(keys) <= set(by_key)
    for b in epoch:
        for key, ids in zip(b["study_id"].tolist(), b["input_ids"]):
            tokens = tok(by_key[key]["report"], padding="max_length", truncation=True, max_length=MAX_LENGTH)
            np.testing.assert_array_equal(ids, tokens["input_ids"])


def test_study_keys_are_fixed():
    """Keys saved in text-feature caches must keep their meaning: the first 8 bytes of the id's
    SHA-1, little-endian (the study digests the bootstrap grouped by before)."""
    keys = input_pipeline.study_keys(["s2-0000000001", b"12345678", ""])
    assert keys.dtype == np.int64
    expected = [
        int.from_bytes(hashlib.sha1(i).digest()[:8], "little", signed=True)
        for i in (b"s2-0000000001", b"12345678", b"")
    ]
    assert keys.tolist() == expected
    assert keys[0] == int(np.frombuffer(hashlib.sha1(b"s2-0000000001").digest()[:8], np.int32).view(np.int64)[0])
    assert keys[2] == 957977401221134810  # a literal: a change here makes every saved cache stale
    assert input_pipeline.study_keys([]).shape == (0,)


def _assert_same_batches(expected, actual):
    assert len(expected) == len(actual)
    for a, b in zip(expected, actual):
        for key in KEYS:
            np.testing.assert_array_equal(a[key], b[key])


def test_resume_matches_uninterrupted_run(cfg, tok):
    # 26 examples, batch 4: 6 steps per epoch, so steps 3..6 cross an epoch boundary.
    _assert_same_batches(_train(cfg, tok, 7)[3:], _train(cfg, tok, 4, start_step=3))
    uninterrupted = _train(cfg, tok, 15)
    for start in (6, 11):  # At an epoch's start, and inside a later epoch.
        _assert_same_batches(uninterrupted[start:], _train(cfg, tok, 15 - start, start_step=start))


def test_epochs_are_reshuffled_and_seeded(cfg, tok):
    batches = _train(cfg, tok, 12)
    epoch0, epoch1 = _rows(batches[:6]), _rows(batches[6:])
    assert len(set(epoch0)) == len(epoch0) == 24  # Whole batches of distinct examples.
    assert epoch0 != epoch1 and len(set(epoch0) & set(epoch1)) >= 22
    assert _rows(_train(cfg, tok, 6)) == epoch0  # Deterministic.
    assert _rows(_train(cfg, tok, 6, seed=1)) != epoch0


def test_train_processes_share_the_global_batches(cfg, tok):
    """Two processes' batches, side by side, are one process's batches of twice the size."""
    whole = _train(cfg, tok, 9, batch_size=4)  # 6 global steps per epoch: crosses an epoch
    shards = [_train(cfg, tok, 9, batch_size=2, process_index=p, process_count=2) for p in range(2)]
    for step, batch in enumerate(whole):
        for key in KEYS:
            np.testing.assert_array_equal(np.concatenate([shards[0][step][key], shards[1][step][key]]), batch[key])
    resumed = _train(cfg, tok, 4, batch_size=2, process_index=1, process_count=2, start_step=5)
    _assert_same_batches(shards[1][5:], resumed)


def test_uncertainty_policy_and_prevalence(cfg, tok):
    raw = np.stack(
        [_example(i)["labels"] for b in _eval(cfg, tok, "train") for i, m in zip(b["image_id"], b["mask"]) if m]
    )
    for policy in ("zeros", "ones", "ignore"):
        policy_cfg = _config(cfg.data_dir, uncertainty_policy=policy, no_finding_rule=False)
        targets, mask = L.apply_uncertainty_policy(raw, policy, False)
        expected = (targets * mask).sum(0) / np.maximum(mask.sum(0), 1)
        prevalence = input_pipeline.label_prevalence(policy_cfg, "train")
        assert prevalence.dtype == np.float32 and prevalence.shape == (14,)
        np.testing.assert_allclose(prevalence, expected, rtol=1e-6)
    ignore = _eval(_config(cfg.data_dir, uncertainty_policy="ignore"), tok)
    assert any((b["label_mask"][b["mask"] == 1] == 0).any() for b in ignore)


def test_unknown_dataset_is_a_clear_error(tmp_path, tok):
    cfg = _config(tmp_path, name="mimic_cxr")
    with pytest.raises(FileNotFoundError, match="mimic_cxr") as err:
        input_pipeline.prepare(cfg)
    assert str(tmp_path) in str(err.value) and "data_pipelines.build" in str(err.value)
    with pytest.raises(FileNotFoundError, match="mimic_cxr"):
        _train(cfg, tok, 1)


def test_too_few_examples_for_a_batch(cfg, tok):
    with pytest.raises(ValueError, match="batch"):
        _train(cfg, tok, 1, batch_size=NUM_TRAIN + 1)


def test_image_batches_preprocess_like_eval_batches(cfg, tok):
    """Predict mode's path (stored uint8 images -> model input) equals the eval pipeline's."""
    batches = _eval(cfg, tok, "test")
    ids = [i for b in batches for i, m in zip(b["image_id"], b["mask"]) if m]
    expected = np.concatenate([b["image"][b["mask"] == 1] for b in batches])
    stored = np.stack([_example(i)["image"] for i in ids])
    got = np.concatenate(list(input_pipeline.image_batches(cfg, stored, batch_size=2)))
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    assert list(input_pipeline.image_batches(cfg, stored[:0], batch_size=2)) == []
