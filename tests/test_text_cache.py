"""The frozen text-feature cache: keyed by study, persistence, and training with it == without it."""

import jax
import numpy as np
import optax
import pytest

from configs import demo
from data_pipelines import input_pipeline
from data_pipelines.tokenizer import load_tokenizer
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

    # Stored by report and reloaded for the same reports: nothing is encoded again.
    stored = text_cache.load_or_build(str(tmp_path), {"encoder": 1}, batches, _encode([]), 4)
    again = text_cache.load_or_build(str(tmp_path), {"encoder": 1}, batches, _fail, 4)
    assert again.path == stored.path and len(list(tmp_path.iterdir())) == 1
    np.testing.assert_array_equal(again.add_to(batch)["text_features"], out["text_features"])
    with np.load(again.path) as f:
        assert f["digests"].shape == (4, 16) and int(f["format"]) == text_cache.FORMAT


def _fail(batch):
    pytest.fail("encoded a report the cache holds")


def test_missing_keys():
    cache = text_cache.build([_reports([(1, [5], 1), (2, [6], 1)])], _encode([]), batch_size=2)
    cache.path = "/cache/dir/abc.npz"
    # A padding row (mask 0) of a layout the build never saw: zeros, the row is masked anyway.
    out = cache.add_to(_reports([(2, [6], 1), (PAD, [1, 2], 0)]))
    np.testing.assert_array_equal(out["text_features"][:, 0], [6, 0])
    with pytest.raises(KeyError, match=r"study key 99 \(row 1 of the batch\).*/cache/dir/abc.npz.*other data"):
        cache.add_to(_reports([(2, [6], 1), (99, [6], 1)]))


def test_a_study_with_two_reports_is_an_error():
    batch = _reports([(1, [5], 1), (1, [6], 1)]) | {"image_id": np.array(["im-a", "im-b"])}
    with pytest.raises(ValueError, match="study key 1: images im-a and im-b have different reports"):
        text_cache.build([batch], _encode([]), batch_size=2)


def test_the_file_is_named_by_the_reports_and_the_encoder():
    cfg = demo.get_config()
    reports = text_cache.read_reports([_reports([(1, [5], 1), (2, [6, 7], 1)])])
    name = text_cache.fingerprint(text_cache.encoder_key(cfg), reports)
    # The same reports under other study keys, in another order: the same features.
    same = text_cache.read_reports([_reports([(9, [6, 7], 1), (8, [5], 1)])])
    assert text_cache.fingerprint(text_cache.encoder_key(cfg), same) == name
    other = text_cache.read_reports([_reports([(1, [5], 1), (2, [6, 8], 1)])])
    assert text_cache.fingerprint(text_cache.encoder_key(cfg), other) != name
    # Nothing of the image build or the data options counts (the reports' tokens do)...
    images = cfg.copy_and_resolve_references()
    images.data.image_size, images.data.build_size, images.data.synthetic.seed = 224, 224, 7
    images.data.augment.rotation = 10.0
    images.model.text_encoder.cache_dir = "/elsewhere"
    assert text_cache.fingerprint(text_cache.encoder_key(images), reports) == name
    # ... the encoder does.
    cfg.model.text_encoder.init_from = ""  # a random encoder: its seed counts too
    name = text_cache.fingerprint(text_cache.encoder_key(cfg), reports)
    pooling = "cls" if cfg.model.text_pooling == "mean" else "mean"
    for field, value in [("model.text_pooling", pooling), ("model.dtype", "bfloat16"), ("seed", cfg.seed + 1)]:
        changed = cfg.copy_and_resolve_references()
        changed.update_from_flattened_dict({field: value})
        assert text_cache.fingerprint(text_cache.encoder_key(changed), reports) != name, field
    original = text_cache.FORMAT
    try:
        text_cache.FORMAT = original - 1
        assert text_cache.fingerprint(text_cache.encoder_key(cfg), reports) != name  # another file name
    finally:
        text_cache.FORMAT = original


def test_a_cache_of_another_format_is_rebuilt(tmp_path):
    batches = [_reports([(1, [5], 1), (2, [6], 1)])]
    name = text_cache.fingerprint({}, text_cache.read_reports(batches))
    path = str(tmp_path / f"{name}.npz")
    np.savez(path, format=np.int64(2), keys=np.array([1, 2]), rows=np.array([0, 1]), features=np.ones((2, 3)))
    with pytest.raises(text_cache.FormatError, match="format 2"):
        text_cache.load(path, text_cache.read_reports(batches))
    cache = text_cache.load_or_build(str(tmp_path), {}, batches, _encode([]), 2)
    np.testing.assert_array_equal(cache.add_to(batches[0])["text_features"][:, 0], [5, 6])
    assert cache.path == path
    np.testing.assert_array_equal(text_cache.load(path, text_cache.read_reports(batches))[:, 0], [5, 6])


def test_two_image_sizes_share_one_cache(tmp_path):
    """The same synthetic reports built at 32 and at 48 px: one cache file, encoded once."""
    cfg = demo.get_config()
    cfg.data.data_dir = str(tmp_path / "tfds")
    cfg.data.synthetic.update(num_train=6, num_validation=3, num_test=3)
    tokenizer = load_tokenizer("synthetic", str(tmp_path / "tok"))
    calls, paths, counts = [], [], []
    for size in (32, 48):
        cfg.data.image_size = cfg.data.build_size = size
        input_pipeline.prepare(cfg.data)
        batches = [
            b
            for split in ("train", "validation", "test")
            for b in input_pipeline.report_batches(cfg.data, split, batch_size=4, tokenizer=tokenizer, max_length=32)
        ]
        # The reports read without images are those the eval batches carry.
        evaluated = input_pipeline.eval_batches(cfg.data, "test", batch_size=4, tokenizer=tokenizer, max_length=32)
        for got, want in zip(batches[-1:], list(evaluated)[-1:]):
            for k in ("input_ids", "attention_mask", "study_id", "image_id"):
                np.testing.assert_array_equal(got[k], want[k])
        encode = _encode(calls)
        cache = text_cache.load_or_build(str(tmp_path / "cache"), text_cache.encoder_key(cfg), batches, encode, 4)
        paths.append(cache.path)
        counts.append(len(calls))
        cache.add_to(batches[0])
    assert paths[0] == paths[1] and len(list((tmp_path / "cache").iterdir())) == 1
    assert counts[0] > 0 and counts[1] == counts[0]  # the second size encoded nothing


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
