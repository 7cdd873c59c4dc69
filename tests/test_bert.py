"""Tests for vkd_jax.models.bert: HF BertModel architecture, names, dtypes, dropout."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transformers import BertConfig

from vkd_jax.models import bert
from vkd_jax.pretrained import files as weights

B, L = 3, 8


def _config(**overrides):
    kw = dict(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=16,
        type_vocab_size=2,
    )
    return BertConfig(**{**kw, **overrides})


def _flat(tree):
    return {tuple(k.key for k in path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


_JITTED = {}


def _apply(model, params, ids, mask, types=None, *, deterministic=True, rng=None):
    """Jitted apply, compiled once per (model, deterministic): compiling dominates here."""
    key = (id(model), deterministic)
    if key not in _JITTED:
        _JITTED[key] = (
            model,
            jax.jit(
                lambda p, ids, mask, types, rngs: model.apply(
                    p, ids, mask, types, deterministic=deterministic, rngs=rngs
                )
            ),
        )
    rngs = None if rng is None else {"dropout": rng}
    return _JITTED[key][1](params, ids, mask, types, rngs)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 100, (B, L)).astype(np.int32)
    lengths = np.array([L, 5, 2])
    mask = (np.arange(L)[None] < lengths[:, None]).astype(np.int32)
    types = (np.arange(L)[None] >= 3).astype(np.int32).repeat(B, 0)
    return ids, mask, types


@pytest.fixture(scope="module")
def model_and_params(batch):
    """Pooling model with every param perturbed, so biases and LN params are not trivial."""
    model = bert.Bert(_config(), add_pooling_layer=True)
    params = jax.jit(model.init)(jax.random.key(0), batch[0])
    rng = np.random.default_rng(1)
    params = jax.tree.map(lambda x: (x + 0.1 * rng.standard_normal(x.shape)).astype(np.float32), params)
    return model, params


def _hf_torch_shapes(cfg, pooler=False):
    """Key -> shape of HF `BertModel.state_dict()` (torch Linear weight is [out, in])."""
    h, f = cfg.hidden_size, cfg.intermediate_size
    shapes = {
        "embeddings.word_embeddings.weight": (cfg.vocab_size, h),
        "embeddings.position_embeddings.weight": (cfg.max_position_embeddings, h),
        "embeddings.token_type_embeddings.weight": (cfg.type_vocab_size, h),
        "embeddings.LayerNorm.weight": (h,),
        "embeddings.LayerNorm.bias": (h,),
    }
    for i in range(cfg.num_hidden_layers):
        p = f"encoder.layer.{i}"
        for name, out, inp in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", f, h),
            ("output.dense", h, f),
        ]:
            shapes[f"{p}.{name}.weight"] = (out, inp)
            shapes[f"{p}.{name}.bias"] = (out,)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[f"{p}.{name}.weight"] = (h,)
            shapes[f"{p}.{name}.bias"] = (h,)
    if pooler:
        shapes["pooler.dense.weight"] = (h, h)
        shapes["pooler.dense.bias"] = (h,)
    return shapes


@pytest.mark.parametrize("pooler", [False, True])
def test_torch_keys_and_shapes_match_hf(pooler):
    cfg = _config()
    model = bert.Bert(cfg, add_pooling_layer=pooler)
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, L), jnp.int32))
    ours = {}
    for path, leaf in _flat(params["params"]).items():
        key = bert.torch_key(path)
        assert key not in ours
        ours[key] = bert.torch_to_flax(path, np.zeros(leaf.shape)).shape
    expected = _hf_torch_shapes(cfg, pooler)
    assert len(expected) == 5 + 16 * 2 + 2 * pooler
    assert ours == expected
    assert params["params"]["encoder"]["layer"]["0"]["intermediate"]["dense"]["kernel"].shape == (32, 64)
    assert (
        bert.torch_key(("encoder", "layer", "1", "attention", "self", "query", "kernel"))
        == "encoder.layer.1.attention.self.query.weight"
    )


def test_output_shape_and_dtype(batch):
    ids, mask, _ = batch
    model = bert.Bert(_config())
    params = jax.jit(model.init)(jax.random.key(0), ids)
    out = _apply(model, params, ids, mask)
    assert out.shape == (B, L, 32) and out.dtype == jnp.float32
    out_pool, pooled = _apply(
        bert.Bert(_config(), add_pooling_layer=True),
        {"params": {**params["params"], "pooler": {"dense": {"kernel": jnp.eye(32), "bias": jnp.zeros(32)}}}},
        ids,
        mask,
    )
    np.testing.assert_array_equal(out_pool, out)
    np.testing.assert_allclose(pooled, np.tanh(out[:, 0]), rtol=1e-6, atol=1e-6)


def test_padding_invariance(model_and_params, batch):
    model, params = model_and_params
    ids, mask, types = batch
    other = np.where(mask == 1, ids, (ids + 17) % 100)
    assert (other != ids).any()
    out_a, _ = _apply(model, params, ids, mask, types)
    out_b, _ = _apply(model, params, other, mask, types)
    real = mask.astype(bool)
    np.testing.assert_allclose(out_a[real], out_b[real], rtol=1e-6, atol=1e-6)


def _np_reference(params, cfg, ids, mask, types):
    """HF BertModel forward, eval mode, in float64 numpy."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    erf = np.vectorize(math.erf)

    def dense(x, d):
        return x @ d["kernel"] + d["bias"]

    def layer_norm(x, d):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + cfg.layer_norm_eps) * d["scale"] + d["bias"]

    n, hd = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
    heads = lambda t: t.reshape(B, L, n, hd).transpose(0, 2, 1, 3)
    e = p["embeddings"]
    x = (
        e["word_embeddings"]["embedding"][ids]
        + e["position_embeddings"]["embedding"][:L]
        + e["token_type_embeddings"]["embedding"][types]
    )
    x = layer_norm(x, e["LayerNorm"])
    additive = (1.0 - mask[:, None, None, :]) * np.finfo(np.float32).min
    for i in range(cfg.num_hidden_layers):
        lp = p["encoder"]["layer"][str(i)]
        s = lp["attention"]["self"]
        q, k, v = (heads(dense(x, s[name])) for name in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd) + additive
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(B, L, -1)
        o = lp["attention"]["output"]
        x = layer_norm(dense(ctx, o["dense"]) + x, o["LayerNorm"])
        h = dense(x, lp["intermediate"]["dense"])
        h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
        x = layer_norm(dense(h, lp["output"]["dense"]) + x, lp["output"]["LayerNorm"])
    return x, np.tanh(dense(x[:, 0], p["pooler"]["dense"]))


def test_matches_numpy_reference(model_and_params, batch):
    model, params = model_and_params
    ids, mask, types = batch
    out, pooled = _apply(model, params, ids, mask, types)
    ref, ref_pooled = _np_reference(params, model.config, ids, mask, types)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pooled, ref_pooled, rtol=1e-5, atol=1e-5)


def test_softmax_attention_equals_dot_product_attention():
    kq, kk, kv, km = jax.random.split(jax.random.key(0), 4)
    q, k, v = (jax.random.normal(key, (2, 6, 4, 8)) for key in (kq, kk, kv))
    mask = (jax.random.uniform(km, (2, 1, 1, 6)) < 0.6).at[..., 0].set(True)
    np.testing.assert_allclose(
        jax.jit(bert.softmax_attention)(q, k, v, mask),
        jax.jit(jax.nn.dot_product_attention)(q, k, v, mask=mask),
        rtol=1e-5,
        atol=1e-6,
    )


def test_explicit_attention_path_matches_fused_path(model_and_params, batch):
    model, params = model_and_params
    ids, mask, types = batch
    fused, _ = _apply(model, params, ids, mask, types)
    # A rate this small takes the explicit (dropout) path but keeps every probability.
    cfg = _config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=1e-9)
    explicit, _ = _apply(
        bert.Bert(cfg, add_pooling_layer=True),
        params,
        ids,
        mask,
        types,
        deterministic=False,
        rng=jax.random.key(0),
    )
    np.testing.assert_allclose(explicit, fused, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hidden_p,attn_p", [(0.1, 0.0), (0.0, 0.5)])
def test_dropout_only_when_not_deterministic(model_and_params, batch, hidden_p, attn_p):
    _, params = model_and_params
    ids, mask, types = batch
    model = bert.Bert(
        _config(hidden_dropout_prob=hidden_p, attention_probs_dropout_prob=attn_p), add_pooling_layer=True
    )
    det, _ = _apply(model, params, ids, mask, types)
    det_again, _ = _apply(model, params, ids, mask, types, rng=jax.random.key(5))
    np.testing.assert_array_equal(det, det_again)
    drop1, _ = _apply(model, params, ids, mask, types, deterministic=False, rng=jax.random.key(1))
    drop2, _ = _apply(model, params, ids, mask, types, deterministic=False, rng=jax.random.key(2))
    assert not np.allclose(drop1, det, atol=1e-3)
    assert not np.allclose(drop1, drop2, atol=1e-3)


def test_bfloat16_compute_close_to_float32(model_and_params, batch):
    model, params = model_and_params
    ids, mask, types = batch
    ref, _ = _apply(model, params, ids, mask, types)
    out, pooled = _apply(bert.Bert(_config(), dtype=jnp.bfloat16, add_pooling_layer=True), params, ids, mask, types)
    assert out.dtype == jnp.float32 and pooled.dtype == jnp.float32
    rel = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    assert rel < 3e-2, rel


def test_remat_same_outputs_and_grads(model_and_params, batch):
    model, params = model_and_params
    ids, mask, types = batch
    remat = bert.Bert(_config(), add_pooling_layer=True, remat=True)

    def loss(m, p):
        out, pooled = m.apply(p, ids, mask, types)
        return jnp.sum(out**2) + jnp.sum(pooled)

    g_ref = jax.jit(jax.grad(lambda p: loss(model, p)))(params)
    g_remat = jax.jit(jax.grad(lambda p: loss(remat, p)))(params)
    scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(g_ref))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale), g_remat, g_ref)


def test_activations(model_and_params, batch):
    model, params = model_and_params
    ids, mask, types = batch
    exact, _ = _apply(model, params, ids, mask, types)
    approx, _ = _apply(bert.Bert(_config(hidden_act="gelu_new"), add_pooling_layer=True), params, ids, mask, types)
    assert not np.array_equal(exact, approx)
    np.testing.assert_allclose(approx, exact, atol=5e-2)
    with pytest.raises(ValueError, match="hidden_act"):
        bert.Bert(_config(hidden_act="mish")).init(jax.random.key(0), ids)


def test_load_torch_state_dict(model_and_params):
    _, params = model_and_params
    # A pre-training checkpoint: 'bert.' prefix, old LayerNorm gamma/beta names, heads.
    state_dict = {"cls.predictions.bias": np.zeros(100), "bert.embeddings.position_ids": np.arange(16)}
    for path, leaf in _flat(params["params"]).items():
        key = "bert." + bert.torch_key(path)
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        state_dict[key] = bert.torch_to_flax(path, np.asarray(leaf))
    loaded, report = weights.bert_params_from_state_dict(params["params"], state_dict)
    jax.tree.map(np.testing.assert_array_equal, loaded, jax.device_get(params["params"]))
    assert report.unused == ("cls.predictions.bias",)
    del state_dict["bert.pooler.dense.bias"]
    with pytest.raises(weights.WeightsError, match="pooler.dense.bias"):
        weights.bert_params_from_state_dict(params["params"], state_dict)


def test_matches_transformers_bert_model(model_and_params, batch):
    torch = pytest.importorskip("torch")
    import transformers  # pylint: disable=g-import-not-at-top

    model, params = model_and_params
    ids, mask, types = batch
    cfg = _config()
    hf = transformers.BertModel(cfg, add_pooling_layer=True).eval()
    state = {
        bert.torch_key(path): torch.from_numpy(np.ascontiguousarray(bert.torch_to_flax(path, np.asarray(leaf))))
        for path, leaf in _flat(params["params"]).items()
    }
    missing, _ = hf.load_state_dict(state, strict=False)
    assert not [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    with torch.no_grad():
        ref = hf(
            input_ids=torch.from_numpy(ids).long(),
            attention_mask=torch.from_numpy(mask).long(),
            token_type_ids=torch.from_numpy(types).long(),
        )
    out, pooled = _apply(model, params, ids, mask, types)
    real = mask.astype(bool)
    np.testing.assert_allclose(out[real], ref.last_hidden_state.numpy()[real], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pooled, ref.pooler_output.numpy(), rtol=1e-5, atol=1e-5)
