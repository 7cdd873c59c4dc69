"""The benchmark scripts (CPU smoke runs, no timing assertions) and the attention paths
they exercise: padding as key lengths vs a dense mask, 'auto' resolution, bf16 dtypes."""

import json
import os
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from transformers import BertConfig

from configs import anchor, demo_scratch
from tests.e2e import FAST_XLA
from vkd_jax import losses
from vkd_jax.models import bert as bert_lib, create_model
from vkd_jax.runs import config_checks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config=configs/anchor.py:tiny", "--steps=2", "--warmup=1"]
# The bfloat16 run's config overrides, reported back in its lines (float32: tiny's batch 2, 16 tokens).
OVERRIDES = {"float32": [], "bfloat16": ["--config.train.batch_size=4", "--config.model.text_encoder.max_length=8"]}
VARIANTS = ("frozen", "finetune", "frozen_cached", "image_only")
REQUIRED_KEYS = {
    "device_kind",
    "jax_version",
    "variant",
    "dtype",
    "batch",
    "compile_s",
    "step_ms_median",
    "samples_per_s",
    "gflop_per_sample",
    "tflops_achieved",
    "bf16_matmul_tflops",
    "frac_of_bf16_peak",
    "peak_bytes_in_use",
    "xla_peak_bytes",
    "xla_temp_bytes",
    "xla_alias_bytes",
    "attention_impl",
}
# Runs benchmarks.train_step as __main__ (python -m) and then reports what it imported.
TRAIN_STEP_WRAPPER = """
import json, runpy, sys
sys.argv = ["benchmarks/train_step.py"] + sys.argv[1:]
code = 0
try:
    runpy.run_module("benchmarks.train_step", run_name="__main__")
except SystemExit as e:
    code = e.code or 0
mods = [m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow.")
        or m == "data_pipelines.input_pipeline"]
print(json.dumps({"imported": mods, "exit": code}))
"""


def _start(args, cache_dir):
    # A compilation cache shared by the runs: side_by_side's JAX steps are the float32 run's.
    env = dict(
        os.environ,
        XLA_FLAGS=FAST_XLA,
        JAX_PLATFORMS="cpu",
        PYTHONPATH=ROOT,
        JAX_COMPILATION_CACHE_DIR=str(cache_dir),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    )
    env.pop("OUT", None)
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _has_side_by_side_deps():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    from benchmarks import anchor_side

    return anchor_side.find_anchor(None) is not None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The smoke runs: one process per dtype side by side (compiling is mostly
    single-threaded), then side_by_side, whose JAX steps come from the compilation cache."""
    cache = tmp_path_factory.mktemp("jax_cache")
    procs = {
        dtype: _start(
            [
                "-c",
                TRAIN_STEP_WRAPPER,
                *TINY,
                *OVERRIDES[dtype],
                f"--variants={','.join(VARIANTS)}",
                f"--dtypes={dtype}",
            ],
            cache,
        )
        for dtype in ("float32", "bfloat16")
    }
    out = {}

    def finish(name):
        stdout, stderr = procs[name].communicate(timeout=600)
        out[name] = (procs[name].returncode, stdout, stderr)

    finish("float32")
    if _has_side_by_side_deps():
        procs["side_by_side"] = _start(
            ["-m", "benchmarks.side_by_side", "--size=tiny", "--steps=2", "--warmup=1", "--out_dir="], cache
        )
        finish("side_by_side")
    finish("bfloat16")
    return out


def _json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_train_step_prints_a_json_line_per_run_without_tensorflow(runs, dtype):
    code, stdout, stderr = runs[dtype]
    lines = _json_lines(stdout)
    assert code == 0, stderr[-3000:]
    imported = lines.pop()
    assert imported == {"imported": [], "exit": 0}, imported
    assert [line["variant"] for line in lines] == list(VARIANTS)
    for line in lines:
        assert "error" not in line, line
        assert REQUIRED_KEYS <= set(line), REQUIRED_KEYS - set(line)
        assert line["dtype"] == dtype
        assert line["samples_per_s"] > 0 and line["gflop_per_sample"] > 0 and np.isfinite(line["loss"])
        assert line["peak_bytes_in_use"] is None  # CPU keeps no allocator statistics
        # The state is donated: XLA writes the new state into the old one's buffers.
        assert 0 < line["xla_alias_bytes"] <= line["xla_peak_bytes"] and line["xla_temp_bytes"] > 0
        assert line["attention_impl"] == (None if line["variant"] in ("frozen_cached", "image_only") else "xla")
    by = {line["variant"]: line for line in lines}
    # The cached features skip BERT: no more work than the frozen step that runs it.
    assert by["frozen_cached"]["gflop_per_sample"] <= by["frozen"]["gflop_per_sample"]
    assert by["finetune"]["gflop_per_sample"] > by["frozen"]["gflop_per_sample"]


def test_config_overrides_reach_the_runs(runs):
    """`--config.a.b=value` reaches the config every run is built from."""
    for dtype, (batch, max_length) in {"float32": (2, 16), "bfloat16": (4, 8)}.items():
        lines = _json_lines(runs[dtype][1])[:-1]
        assert lines and all(
            (line["batch"], line["max_length"], line["image_size"], line["text_layers"], line["text_hidden"])
            == (batch, max_length, 32, 1, 32)
            for line in lines
        ), lines


def test_anchor_config_holds_the_anchors_shapes_and_step():
    cfg = anchor.get_config()
    data, model, img, txt = cfg.data, cfg.model, cfg.model.image_encoder, cfg.model.text_encoder
    assert (data.image_size, data.channels) == (224, 3)
    assert (tuple(img.block_sizes), img.growth_rate, img.bn_size, img.num_init_features) == ((6, 12, 24, 16), 32, 4, 64)
    assert (img.init_from, img.train_mode, img.remat) == ("", "full", False)
    assert (txt.hidden_size, txt.num_layers, txt.num_heads, txt.intermediate_size) == (768, 12, 12, 3072)
    assert (txt.max_length, txt.dropout, txt.attention_dropout, txt.init_from) == (256, 0.1, 0.1, "")
    assert (model.kind, model.latent_dim, model.hidden_dim, model.dropout) == ("vkd", 256, 512, 0.0)
    assert (model.posterior_inputs, model.text_pooling, model.num_samples) == ("image_text", "cls", 1)
    assert (cfg.optim.name, cfg.optim.learning_rate, cfg.optim.schedule) == ("adam", 1e-4, "constant")
    assert (cfg.optim.warmup_steps, cfg.optim.grad_clip_norm) == (0, 0.0)
    assert (cfg.train.kl_schedule, cfg.train.beta, cfg.train.prior_weight, cfg.train.pos_weight) == (
        "constant",
        0.014,
        1.0,
        "none",
    )
    assert cfg.train.batch_size == 64
    for size in anchor.SIZES:
        config_checks.validate(anchor.get_config(size), num_devices=1)
    small = anchor.get_config("small")
    assert (small.data.image_size, small.model.text_encoder.num_layers, small.train.batch_size) == (64, 2, 8)
    assert small.optim.learning_rate == 1e-4 and tuple(small.model.image_encoder.block_sizes) == (6, 12, 24, 16)
    with pytest.raises(ValueError, match="paper, small, tiny"):
        anchor.get_config("huge")


def test_side_by_side_tiny_prints_ratios(runs):
    if "side_by_side" not in runs:
        pytest.skip("needs torch and the anchor torch_vkd_bench.py (.anchors/ or shared/anchors/)")
    code, stdout, stderr = runs["side_by_side"]
    assert code == 0, stderr[-3000:]
    assert "ratio JAX/torch" in stdout
    ratios = [line for line in _json_lines(stdout) if line.get("side") == "ratio"]
    assert {r["variant"] for r in ratios} == {"frozen", "finetune"}
    # The frozen step against the anchor as published and against its dropout-free frozen BERT.
    assert sorted((r["variant"], r["vs_torch"]) for r in ratios) == [
        ("finetune", "finetune"),
        ("frozen", "frozen"),
        ("frozen", "frozen_eval"),
    ]
    assert all(r["ratio"] > 0 for r in ratios)


# ----------------------------------------------------------------------------
# Attention: cuDNN's padding-as-lengths path, checked through XLA on CPU.


def _qkv_mask(dtype=jnp.float32):
    kq, kk, kv = jax.random.split(jax.random.key(0), 3)
    shape = (3, 7, 2, 8)
    q, k, v = (jax.random.normal(key, shape, dtype) for key in (kq, kk, kv))
    lengths = np.array([7, 4, 1])
    mask = jnp.asarray(np.arange(7)[None, :] < lengths[:, None])[:, None, None, :]  # right-padded
    return q, k, v, mask


def test_key_lengths_equal_the_dense_mask_with_xla():
    q, k, v, mask = _qkv_mask()
    dense = bert_lib.padded_attention(q, k, v, mask, implementation="xla", use_lengths=False)
    lengths = bert_lib.padded_attention(q, k, v, mask, implementation="xla", use_lengths=True)
    explicit = bert_lib.softmax_attention(q, k, v, mask)
    np.testing.assert_allclose(lengths, dense, atol=1e-6)
    np.testing.assert_allclose(dense, explicit, atol=1e-5)


def test_auto_picks_xla_on_cpu_and_names_are_checked():
    assert jax.default_backend() == "cpu"
    assert bert_lib.resolve_attention_impl("auto", jnp.bfloat16, 64) == "xla"
    assert bert_lib.resolve_attention_impl("auto", jnp.float32, 64) == "xla"
    assert bert_lib.resolve_attention_impl("xla", jnp.bfloat16, 64) == "xla"
    assert bert_lib.resolve_attention_impl("cudnn", jnp.bfloat16, 64) == "cudnn"
    with pytest.raises(ValueError, match="attention_impl"):
        bert_lib.resolve_attention_impl("flash", jnp.bfloat16, 64)


def test_bert_cudnn_path_matches_the_mask_path(monkeypatch):
    """The whole encoder with 'cudnn' resolved (padding passed as key lengths), the kernel
    swapped for XLA's, equals the dense-mask encoder on right-padded batches."""
    cfg = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    ids = jax.random.randint(jax.random.key(1), (3, 9), 0, 50)
    mask = jnp.asarray(np.arange(9)[None, :] < np.array([9, 5, 2])[:, None], jnp.int32)
    model = bert_lib.Bert(cfg, attention_impl="xla")
    params = model.init(jax.random.key(0), ids, mask)["params"]
    reference = model.apply({"params": params}, ids, mask)

    calls = []
    real = jax.nn.dot_product_attention

    def as_xla(*args, implementation=None, **kwargs):
        calls.append((implementation, kwargs.get("mask") is None, kwargs.get("key_value_seq_lengths")))
        return real(*args, implementation="xla", **kwargs)

    monkeypatch.setattr(jax.nn, "dot_product_attention", as_xla)
    monkeypatch.setattr(bert_lib, "resolve_attention_impl", lambda impl, dtype, head_dim: "cudnn")
    out = bert_lib.Bert(cfg, attention_impl="auto").apply({"params": params}, ids, mask)
    assert len(calls) == 2 and all(impl == "cudnn" and no_mask for impl, no_mask, _ in calls)
    np.testing.assert_array_equal(calls[0][2], [9, 5, 2])
    np.testing.assert_allclose(out, reference, atol=1e-5)


def test_config_field_reaches_the_encoder_and_is_validated():
    cfg = demo_scratch.get_config()
    assert cfg.model.text_encoder.attention_impl == "auto"
    cfg.model.text_encoder.attention_impl = "xla"
    model = create_model(cfg.model, num_classes=14, vocab_size=50)
    assert model.text_encoder.attention_impl == "xla"
    cfg = demo_scratch.get_config()
    cfg.model.text_encoder.attention_impl = "flash"
    with pytest.raises(config_checks.ConfigError, match="attention_impl"):
        config_checks.validate(cfg, num_devices=1)


# ----------------------------------------------------------------------------
# bf16 compute keeps float32 parameters, optimiser state, logits and loss.


def test_bf16_compute_keeps_float32_where_it_matters():
    cfg = demo_scratch.get_config()
    cfg.model.dtype = "bfloat16"
    cfg.model.posterior_inputs = "image_text"
    cfg.model.image_encoder.block_sizes = (1, 1, 1, 1)
    cfg.model.text_encoder.num_layers = 1
    model = create_model(cfg.model, num_classes=14, vocab_size=50)
    images = jnp.zeros((2, 32, 32, 1))
    ids = jnp.ones((2, 8), jnp.int32)
    noise = jnp.zeros((1, 2, cfg.model.latent_dim))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), images, ids, ids, noise, train=False))
    params = variables["params"]
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}

    def loss_fn(params, batch_stats):
        out, _ = model.apply(
            {"params": params, "batch_stats": batch_stats},
            images,
            ids,
            ids,
            noise,
            train=True,
            rngs={"dropout": jax.random.key(1)},
            mutable=["batch_stats"],
        )
        loss, _ = losses.vkd_loss(
            out, jnp.zeros((2, 14)), jnp.ones((2, 14)), jnp.ones(2), losses.Objective(beta=0.014, prior_weight=1.0)
        )
        return loss, out

    (loss, out), grads = jax.eval_shape(jax.value_and_grad(loss_fn, has_aux=True), params, variables["batch_stats"])
    assert loss.dtype == jnp.float32
    assert {x.dtype for x in jax.tree.leaves(out)} == {jnp.dtype(jnp.float32)}  # logits, mu, logvar
    assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}
    opt_state = jax.eval_shape(optax.adam(1e-4).init, params)
    assert {x.dtype for x in jax.tree.leaves(opt_state) if x.ndim} == {jnp.dtype(jnp.float32)}


def test_gpu_check_script_parses():
    result = subprocess.run(
        ["bash", "-n", os.path.join(ROOT, "benchmarks", "gpu_check.sh")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_frozen_eval_anchor_turns_off_dropout_in_its_frozen_bert_only():
    torch = pytest.importorskip("torch")
    from benchmarks import anchor_side, side_by_side

    class VKD(torch.nn.Module):  # the anchor's constructor and submodule names
        def __init__(self, bert_trainable, latent=256, bert_cfg=None):
            super().__init__()
            self.trainable = bert_trainable
            self.cnn, self.bert = torch.nn.Dropout(0.5), torch.nn.Dropout(0.1)

    anchor = types.SimpleNamespace(VKD=VKD)
    size = anchor_side.shapes(anchor_side.size_config("tiny"))
    published, evaluated, tuned = (
        anchor_side.torch_model(anchor, v, size) for v in ("frozen", "frozen_eval", "finetune")
    )
    assert (published.trainable, evaluated.trainable, tuned.trainable) == (False, False, True)
    assert published.bert.training and published.cnn.training
    assert not evaluated.bert.training and evaluated.cnn.training and evaluated.training
    with pytest.raises(SystemExit):
        side_by_side.parse_args(["--torch_variants=frozen,frozen_nodrop"])
