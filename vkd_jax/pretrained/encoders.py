"""Puts pretrained encoder weights (`model.<encoder>.init_from`) into a fresh train state."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import transformers
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vkd_jax import errors
from vkd_jax.models.vkd import reads_report
from vkd_jax.pretrained import files as weights


@dataclasses.dataclass
class PretrainedEncoders:
    text_config: transformers.BertConfig | None = None
    text_params: Any = None
    image_variables: Any = None


def _mode(enc_cfg) -> str:
    if enc_cfg.train_mode == "last_k":
        return f"top {enc_cfg.train_last_k} trainable, the rest frozen"
    return enc_cfg.train_mode


def load(model_cfg, *, image_channels: int) -> PretrainedEncoders:
    """Reads the `init_from` files of the encoders the model kind uses, and logs what it read."""
    out = PretrainedEncoders()
    kw = dict(allow_pickle=model_cfg.init_allow_pickle)
    txt, img = model_cfg.text_encoder, model_cfg.image_encoder
    if txt.init_from and reads_report(model_cfg.kind, model_cfg.posterior_inputs):
        (out.text_config, out.text_params), report = weights.load_bert_with_report(
            txt.init_from, add_pooling_layer=False, **kw
        )
        report.log("text encoder")
        if txt.max_length > out.text_config.max_position_embeddings:
            raise errors.WeightsError(
                f"config.model.text_encoder.max_length={txt.max_length} exceeds the {txt.init_from} checkpoint's "
                f"max_position_embeddings={out.text_config.max_position_embeddings}"
            )
        logging.info(
            "text encoder: %d layers, hidden %d; %s; lr x%g",
            out.text_config.num_hidden_layers,
            out.text_config.hidden_size,
            _mode(txt),
            txt.lr_multiplier,
        )
    if img.init_from and model_cfg.kind != "text_only":
        out.image_variables, report = weights.load_densenet121_with_report(
            img.init_from, in_channels=image_channels, **kw
        )
        report.log("image encoder")
        logging.info(
            "image encoder: DenseNet-121, %d input channel(s); %s; lr x%g",
            image_channels,
            _mode(img),
            img.lr_multiplier,
        )
    return out


def check_vocabulary(pretrained: PretrainedEncoders, tokenizer_size: int, source: str) -> None:
    """Token ids past the embedding table would be clamped silently by XLA: refuse them."""
    if pretrained.text_config is not None and tokenizer_size > pretrained.text_config.vocab_size:
        raise errors.WeightsError(
            f"the tokenizer ({source}) has {tokenizer_size} tokens, more than the text encoder's "
            f"{pretrained.text_config.vocab_size}-row embedding table: use the checkpoint's own tokenizer"
        )


def apply(state, pretrained: PretrainedEncoders, mesh: Mesh):
    """The state with the pretrained encoder variables in place, replicated on `mesh`."""
    params, batch_stats = dict(state.params), dict(state.batch_stats)
    if pretrained.text_params is not None:
        params["text_encoder"] = pretrained.text_params
    if pretrained.image_variables is not None:
        params["image_encoder"] = pretrained.image_variables["params"]
        batch_stats["image_encoder"] = pretrained.image_variables["batch_stats"]
    replicated = NamedSharding(mesh, P())
    _check_structure(state.params, params)
    return state.replace(params=jax.device_put(params, replicated), batch_stats=jax.device_put(batch_stats, replicated))


def _check_structure(expected, got) -> None:
    want = jax.tree.map(lambda x: x.shape, expected)
    have = jax.tree.map(lambda x: x.shape, got)
    if jax.tree.structure(want) != jax.tree.structure(have) or want != have:
        raise errors.WeightsError("pretrained weights do not fit the model built from the config")
