"""The frozen text-feature cache: keys, persistence, and training with it == without it."""

import jax
import numpy as np
import optax

from tests.test_train import _batch, _config, _setup
from vkd_jax import text_cache, train


def test_keys_ignore_padding_and_cache_round_trips(tmp_path):
    ids = np.array([[5, 6, 7, 0], [5, 6, 7, 9], [5, 6, 0, 0]])
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 0, 0]])
    keys = text_cache.row_keys(ids, mask)
    assert keys[0] == keys[1] != keys[2]  # the padded position does not count
    batches = [{"input_ids": ids, "attention_mask": mask, "mask": np.array([1, 1, 1])}]
    calls = []

    def encode(b):
        calls.append(len(b["input_ids"]))
        return b["input_ids"].sum(axis=1, keepdims=True).astype(np.float32) * np.ones((1, 3))

    cache = text_cache.build(batches, encode, batch_size=4, length_bucket=2)
    assert len(cache.keys) == 2 and calls == [4]  # two distinct reports, one padded call
    out = cache.add_to(batches[0])
    np.testing.assert_array_equal(out["text_features"][:, 0], [18, 18, 11])
    path = str(tmp_path / "c.npz")
    cache.save(path)
    again = text_cache.load_or_build(path, lambda: [], None, 4)
    np.testing.assert_array_equal(again.add_to(batches[0])["text_features"], out["text_features"])


def test_training_with_the_cache_equals_training_without():
    cfg = _config("vkd")
    cfg.model.text_encoder.train_mode = "frozen"
    cfg.model.text_encoder.dropout = 0.1  # a frozen encoder runs deterministically anyway
    runs = []
    for cached in (False, True):
        mesh, model, state, step = _setup(cfg, 2, optax.sgd(0.1))  # Adam would amplify float noise
        encode = train.make_text_encode_step(model, mesh)
        batches = [_batch(i) for i in range(3)]
        if cached:
            # Short length buckets: chunks are cut below the batches' padded length.
            cache = text_cache.build(batches, lambda b: encode(state, train.shard_batch(b, mesh)), 16, train.to_host,
                                     length_bucket=4)
            full_length = train.to_host(encode(state, train.shard_batch(batches[0], mesh)))
            batches = list(cache.wrap(batches))
            np.testing.assert_allclose(batches[0]["text_features"], full_length, rtol=1e-4, atol=5e-5)
            assert batches[0]["text_features"].shape == (16, cfg.model.text_encoder.hidden_size)
        losses = []
        for batch in batches:
            state, metrics = step(state, train.shard_batch(batch, mesh))
            losses.append(float(metrics["loss"]))
        runs.append((losses, jax.device_get(state.params)))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), runs[1][1], runs[0][1])
