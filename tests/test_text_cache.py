"""The frozen text-feature cache: keyed by study, persistence, and training with it == without it."""

import jax
import numpy as np
import optax
import pytest

from configs import demo
from tests.test_train import _batch, _config, _setup
from vkd_jax import inference, sharding
from vkd_jax.runs import text_cache

PAD = -7  # the padding rows' study key in these batches (the pipeline's is that of "")


def _reports(rows):
    """Host batch rows `(study key, token ids, mask)` -> a batch (the token rows padded to 4)."""
    ids = np.array([r[1] + [0] * (4 - len(r[1])) for r in rows])
    return {
        "input_ids": ids,
        "attention_mask": (ids > 0).astype(np.int32),
        "study_id": np.array([r[0] for r in rows], np.int64),
        "mask": np.array([r[2] for r in rows], np.float32),
    }


def _encode(calls):
    def encode(b):
        calls.append(b["input_ids"].shape)
        return b["input_ids"].sum(axis=1, keepdims=True).astype(np.float32) * np.ones((1, 3))

    return encode


def test_cache_is_keyed_by_study_and_round_trips(tmp_path):
    # Studies 2**40 and -3 have the same report (5 6 7), studies 10 and 11 differ.
    big = 2**40
    batches = [
        _reports([(big, [5, 6, 7], 1), (10, [5, 6], 1), (-3, [5, 6, 7], 1), (big, [5, 6, 7], 1)]),
        _reports([(11, [9], 1), (PAD, [1, 2], 0), (PAD, [1, 2], 0), (PAD, [1, 2], 0)]),
    ]
    calls = []
    cache = text_cache.build(batches, _encode(calls), batch_size=4, length_bucket=2)
    # 4 distinct reports of 5 keys, in one call cut to the longest (3 tokens -> 4 by the bucket).
    assert calls == [(4, 4)] and len(cache.keys) == 5 and len(cache.features) == 4
    assert cache.keys.dtype == np.int64
    # Shuffled batches with duplicates and padding rows: each row gets its study's features.
    batch = _reports(
        [(11, [9], 1), (-3, [5, 6, 7], 1), (big, [5, 6, 7], 1), (10, [5, 6], 1), (-3, [5, 6, 7], 1), (PAD, [1, 2], 0)]
    )
    out = cache.add_to(batch)
    np.testing.assert_array_equal(out["text_features"][:, 0], [9, 18, 18, 11, 18, 3])
    assert out["text_features"].dtype == np.float32 and out["text_features"].shape == (6, 3)

    path = str(tmp_path / "c.npz")
    cache.save(path)
    again = text_cache.load_or_build(path, lambda: pytest.fail("rebuilt"), None, 4)
    np.testing.assert_array_equal(again.add_to(batch)["text_features"], out["text_features"])
    with np.load(path) as f:
        assert f["keys"].dtype == np.int64 and int(f["format"]) == text_cache.FORMAT


def test_missing_keys():
    cache = text_cache.build([_reports([(1, [5], 1), (2, [6], 1)])], _encode([]), batch_size=2)
    cache.path = "/cache/dir/abc.npz"
    # A padding row (mask 0) of a layout the build never saw: zeros, the row is masked anyway.
    out = cache.add_to(_reports([(2, [6], 1), (PAD, [1, 2], 0)]))
    np.testing.assert_array_equal(out["text_features"][:, 0], [6, 0])
    with pytest.raises(KeyError, match=r"study key 99 \(row 1 of the batch\).*/cache/dir/abc.npz.*Delete"):
        cache.add_to(_reports([(2, [6], 1), (99, [6], 1)]))


def test_a_study_with_two_reports_is_an_error():
    batch = _reports([(1, [5], 1), (1, [6], 1)]) | {"image_id": np.array(["im-a", "im-b"])}
    with pytest.raises(ValueError, match="study key 1: images im-a and im-b have different reports"):
        text_cache.build([batch], _encode([]), batch_size=2)


def test_a_cache_of_the_old_format_is_not_used(tmp_path):
    cfg = demo.get_config()
    tokenizer = list(range(100))  # the fingerprint reads its length
    name = text_cache.fingerprint(cfg, {"train": 8}, tokenizer)
    assert text_cache.fingerprint(cfg, {"train": 8}, tokenizer) == name
    assert text_cache.fingerprint(cfg, {"train": 9}, tokenizer) != name
    other = cfg.copy_and_resolve_references()
    other.data.csv.table = "elsewhere.csv"  # another dataset's build options: the same features
    other.data.augment.rotation = 10.0  # image-only settings: the same features
    assert text_cache.fingerprint(other, {"train": 8}, tokenizer) == name
    assert other.data.name == "synthetic_cxr"
    other.data.synthetic.seed = 7  # its own dataset's options: other reports, other features
    assert text_cache.fingerprint(other, {"train": 8}, tokenizer) != name
    original = text_cache.FORMAT
    try:
        text_cache.FORMAT = original - 1
        assert text_cache.fingerprint(cfg, {"train": 8}, tokenizer) != name  # another file name
    finally:
        text_cache.FORMAT = original
    # And an old file found under the new name (copied by hand) is rebuilt, not misread.
    path = str(tmp_path / f"{name}.npz")
    np.savez(path, keys=np.zeros((2, 16), np.uint8), features=np.ones((2, 3), np.float32))
    with pytest.raises(text_cache.FormatError, match="format 1"):
        text_cache.TextFeatureCache.load(path)
    batches = [_reports([(1, [5], 1), (2, [6], 1)])]
    cache = text_cache.load_or_build(path, lambda: batches, _encode([]), 2)
    np.testing.assert_array_equal(cache.add_to(batches[0])["text_features"][:, 0], [5, 6])
    np.testing.assert_array_equal(text_cache.TextFeatureCache.load(path).keys, [1, 2])


def test_training_with_the_cache_equals_training_without():
    cfg = _config("vkd")
    cfg.model.text_encoder.train_mode = "frozen"
    cfg.model.text_encoder.dropout = 0.1  # a frozen encoder runs deterministically anyway
    runs = []
    for cached in (False, True):
        mesh, model, state, step = _setup(cfg, 2, optax.sgd(0.1))  # Adam would amplify float noise
        encode = inference.make_text_encode_step(model, mesh)
        batches = [_batch(i) | {"study_id": np.arange(16) + 100 * i} for i in range(3)]
        if cached:
            # Short length buckets: chunks are cut below the batches' padded length.
            cache = text_cache.build(
                batches, lambda b: encode(state, sharding.shard_batch(b, mesh)), 16, sharding.to_host, length_bucket=4
            )
            full_length = sharding.to_host(encode(state, sharding.shard_batch(batches[0], mesh)))
            batches = list(cache.wrap(batches))
            np.testing.assert_allclose(batches[0]["text_features"], full_length, rtol=1e-4, atol=5e-5)
            assert batches[0]["text_features"].shape == (16, cfg.model.text_encoder.hidden_size)
        losses = []
        for batch in batches:
            state, metrics = step(state, sharding.shard_batch(batch, mesh))
            losses.append(float(metrics["loss"]))
        runs.append((losses, jax.device_get(state.params)))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), runs[1][1], runs[0][1])
