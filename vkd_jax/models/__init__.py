"""Pure Flax (linen) modules, and `create_model` that builds one from the config.

Nothing here imports TensorFlow: accelerator machines and inference-only users may lack it.
"""

from __future__ import annotations

import jax.numpy as jnp
import transformers

from vkd_jax.models.bert import ATTENTION_IMPLS, Bert
from vkd_jax.models.densenet import DenseNet
from vkd_jax.models.vkd import DETAILS_FROM, KINDS, VKDModel, reads_report

__all__ = [
    "ATTENTION_IMPLS",
    "Bert",
    "DenseNet",
    "DETAILS_FROM",
    "KINDS",
    "VKDModel",
    "create_model",
    "reads_report",
    "bert_config",
]

# The auxiliary task's output size: token ids are hashed into this many buckets (see
# `losses.report_words`), so a 30k-token vocabulary does not need a 30k-wide head.
REPORT_BUCKETS = 1024
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def compute_dtype(name: str):
    if name not in DTYPES:
        raise ValueError(f"model.dtype must be one of {tuple(DTYPES)}, got {name!r}")
    return DTYPES[name]


def bert_config(text_cfg, vocab_size: int) -> transformers.BertConfig:
    """The `transformers.BertConfig` of the `model.text_encoder` config section."""
    return transformers.BertConfig(
        vocab_size=vocab_size,
        hidden_size=text_cfg.hidden_size,
        num_hidden_layers=text_cfg.num_layers,
        num_attention_heads=text_cfg.num_heads,
        intermediate_size=text_cfg.intermediate_size,
        hidden_dropout_prob=text_cfg.dropout,
        attention_probs_dropout_prob=text_cfg.attention_dropout,
        max_position_embeddings=text_cfg.max_position_embeddings,
    )


def create_model(
    model_cfg,
    *,
    num_classes: int,
    vocab_size: int,
    axis_name: str | None = None,
    text_config: transformers.BertConfig | None = None,
    report_aux: bool = False,
    num_details: int = 0,
) -> VKDModel:
    """Builds the `VKDModel` of `model_cfg` (the config's `model` section).

    `axis_name` is the mapped axis over which BatchNorm averages its statistics, so that
    they are those of the global batch under `shard_map`. `text_config` (a pretrained
    checkpoint's) replaces the BERT sizes of the config. `report_aux` adds the auxiliary
    head that predicts the report's words (hashed into `REPORT_BUCKETS`) from the image features.
    `num_details` is the width of the report-details head of `model_cfg.details_from` (its
    dataset's parser's D; unused with `details_from='none'`).
    """
    dtype = compute_dtype(model_cfg.dtype)
    kind = model_cfg.kind
    image_encoder = text_encoder = None
    if kind != "text_only":
        img = model_cfg.image_encoder
        image_encoder = DenseNet(
            block_sizes=tuple(img.block_sizes),
            growth_rate=img.growth_rate,
            bn_size=img.bn_size,
            num_init_features=img.num_init_features,
            dtype=dtype,
            bn_axis_name=axis_name,
            remat=img.remat,
            stem_pool=img.stem_pool,
            pool_grid=img.pool_grid,
        )
    if reads_report(kind, model_cfg.posterior_inputs):
        txt = model_cfg.text_encoder
        text_config = text_config or bert_config(txt, vocab_size)
        text_encoder = Bert(text_config, dtype=dtype, remat=txt.remat, attention_impl=txt.attention_impl)
    return VKDModel(
        kind=kind,
        image_encoder=image_encoder,
        text_encoder=text_encoder,
        num_classes=num_classes,
        latent_dim=model_cfg.latent_dim,
        hidden_dim=model_cfg.hidden_dim,
        dropout_rate=model_cfg.dropout,
        posterior_inputs=model_cfg.posterior_inputs,
        text_pooling=model_cfg.text_pooling,
        freeze_image_encoder=model_cfg.image_encoder.train_mode == "frozen",
        freeze_text_encoder=model_cfg.text_encoder.train_mode == "frozen",
        report_vocab_size=min(vocab_size, REPORT_BUCKETS) if report_aux else 0,
        details_from=model_cfg.details_from,
        num_details=num_details if model_cfg.details_from != "none" else 0,
        dtype=dtype,
    )
