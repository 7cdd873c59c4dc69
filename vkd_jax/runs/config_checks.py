"""Rejects a bad config before any work starts, naming the field and what was expected."""

from __future__ import annotations

import math
import os

from data_pipelines import detail_parsers, labels, preprocess  # numpy only, no TensorFlow
from data_pipelines.synthetic_cxr import generator as synthetic
from data_pipelines.table import options as table_options
from vkd_jax import optim, schedules
from vkd_jax.errors import ConfigError
from vkd_jax.models import ATTENTION_IMPLS, DTYPES
from vkd_jax.models.vkd import DETAILS_FROM, KINDS, POSTERIOR_INPUTS, TEXT_POOLING, has_posterior, reads_report

POS_WEIGHTS = ("none", "balanced", "reference")
THRESHOLD_METHODS = ("youden", "f1")
# data.augment: each range's upper limit (uniform draws in +- the value).
AUGMENT_LIMITS = {"rotation": 45.0, "scale": 0.5, "translate": 0.5, "brightness": 1.0, "contrast": 0.9}


def _choice(config, path: str, choices) -> None:
    value = config
    for part in path.split("."):
        value = value[part]
    if value not in choices:
        raise ConfigError(f"config.{path} must be one of {tuple(choices)}, got {value!r}")


def _positive(value, path: str) -> None:
    if not value > 0:
        raise ConfigError(f"config.{path} must be > 0, got {value!r}")


def _finite(config, prefix: str = "") -> None:
    """Every float of the config (nested sections and tuples included) is finite: a NaN or
    an infinity would otherwise train until the NaN guard stops it."""
    for key, value in config.items():
        path = f"{prefix}{key}"
        if hasattr(value, "items"):
            _finite(value, f"{path}.")
            continue
        for v in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"config.{path} must be a finite number, got {value!r}")


def _check_data(data) -> None:
    """The data section (the input pipeline trusts it: it is checked here only)."""

    def require(ok: bool, field: str, expected: str) -> None:
        if not ok:
            raise ConfigError(f"config.data.{field} must be {expected}, got {data[field]!r}")

    require(isinstance(data.name, str) and data.name != "", "name", "a dataset name")
    require(data.data_dir is None or isinstance(data.data_dir, str), "data_dir", "a directory or None")
    require(
        isinstance(data.image_size, int) and data.image_size >= 32,
        "image_size",
        "an int >= 32 (DenseNet downsamples 32x)",
    )
    require(isinstance(data.mean, (int, float)), "mean", "a number")
    require(isinstance(data.std, (int, float)) and data.std > 0, "std", "> 0")
    require(
        data.uncertainty_policy in labels.UNCERTAINTY_POLICIES,
        "uncertainty_policy",
        f"one of {labels.UNCERTAINTY_POLICIES}",
    )
    require(isinstance(data.no_finding_rule, bool), "no_finding_rule", "a bool")
    require(isinstance(data.shuffle_buffer, int) and data.shuffle_buffer >= 1, "shuffle_buffer", "an int >= 1")
    for field in ("train_split", "val_split", "test_split"):
        require(isinstance(data[field], str) and data[field] != "", field, "a split name")
    require(data.channels in (1, 3), "channels", "1 or 3")
    require(data.normalization in preprocess.NORMALIZATIONS, "normalization", f"one of {preprocess.NORMALIZATIONS}")
    require(
        data.normalization != "imagenet" or data.channels == 3,
        "normalization",
        "'scalar' or 'torchxrayvision' with data.channels=1 (ImageNet statistics are per RGB channel)",
    )
    require(
        data.normalization != "torchxrayvision" or data.channels == 1,
        "normalization",
        "'scalar' or 'imagenet' with data.channels=3 (torchxrayvision's models take one channel: set data.channels=1)",
    )
    require(data.label_set in labels.LABEL_SETS, "label_set", f"one of {labels.LABEL_SETS}")
    require(
        data.label_set == "chexpert" or not data.no_finding_rule,
        "no_finding_rule",
        "False with data.label_set='nih' (its 14 classes have no 'No Finding')",
    )
    require(
        data.build_size is None or (isinstance(data.build_size, int) and data.build_size >= 8),
        "build_size",
        "None or an int >= 8",
    )
    if data.name == "csv":
        try:
            table_options.check(data.csv.to_dict())
        except ValueError as e:
            raise ConfigError(f"config.{e}") from None
    if data.name == "synthetic_cxr":
        try:
            synthetic.check_rate("label_noise", data.synthetic.label_noise)
            synthetic.check_rate("mild_drop", data.synthetic.mild_drop)
            synthetic.parse_strengths(data.synthetic.strengths)
        except ValueError as e:
            raise ConfigError(f"config.data.synthetic.{e}") from None
    for field, limit in AUGMENT_LIMITS.items():
        value = data.augment[field]
        if not (isinstance(value, (int, float)) and 0 <= value <= limit):
            raise ConfigError(f"config.data.augment.{field} must be a number in [0, {limit}], got {value!r}")
    if not isinstance(data.augment.hflip, bool):
        raise ConfigError(f"config.data.augment.hflip must be a bool, got {data.augment.hflip!r}")


def _without_reports(data) -> str | None:
    """Why the dataset's builds hold no report text, or None if they do."""
    if data.name == "chestxray14":
        return "ChestX-ray14 has no reports"
    if data.name == "csv" and not table_options.names(data.csv.report_columns):
        return "config.data.csv.report_columns is '' (the table gives no reports)"
    return None


def validate(config, *, num_devices: int, num_processes: int = 1) -> None:
    """Raises `ConfigError` for the first field that is out of range or inconsistent.
    The one check of a config: run once, before any work (`vkd_jax.runs.sessions`)."""
    _finite(config)
    _check_data(config.data)
    _choice(config, "model.kind", KINDS)
    _choice(config, "model.posterior_inputs", POSTERIOR_INPUTS)
    _choice(config, "model.text_pooling", TEXT_POOLING)
    _choice(config, "model.details_from", DETAILS_FROM)
    _choice(config, "model.dtype", DTYPES)
    _choice(config, "model.text_encoder.attention_impl", ATTENTION_IMPLS)
    _choice(config, "train.kl_schedule", schedules.KL_SCHEDULES)
    _choice(config, "train.pos_weight", POS_WEIGHTS)
    _choice(config, "optim.name", optim.OPTIMIZERS)
    _choice(config, "optim.schedule", optim.LR_SCHEDULES)
    _choice(config, "eval.threshold_method", THRESHOLD_METHODS)
    _positive(config.eval.calibration_bins, "eval.calibration_bins")
    if config.eval.bootstrap_samples < 0:
        raise ConfigError(f"config.eval.bootstrap_samples must be >= 0, got {config.eval.bootstrap_samples}")
    if not 0 <= config.eval.refer_fraction < 1:
        raise ConfigError(f"config.eval.refer_fraction must be in [0, 1), got {config.eval.refer_fraction}")
    for path in (
        "model.latent_dim",
        "model.hidden_dim",
        "model.num_samples",
        "model.eval_samples",
        "train.num_epochs",
        "optim.learning_rate",
        "train.kl_cycles_per_epoch",
    ):
        section, field = path.split(".")
        _positive(config[section][field], path)
    tr = config.train
    for field in ("beta", "free_bits", "prior_weight", "report_aux_weight", "details_weight"):
        if not (isinstance(tr[field], (int, float)) and math.isfinite(tr[field]) and tr[field] >= 0):
            raise ConfigError(f"config.train.{field} must be a finite number >= 0, got {tr[field]!r}")
    if tr.kl_balance is not None and not 0 <= tr.kl_balance <= 1:
        raise ConfigError(f"config.train.kl_balance must be None (the plain KL) or in [0, 1], got {tr.kl_balance}")
    if not 0 <= tr.distill_weight <= 1:
        raise ConfigError(f"config.train.distill_weight must be in [0, 1], got {tr.distill_weight}")
    _positive(tr.distill_temperature, "train.distill_temperature")
    if config.model.posterior_inputs == "none" and config.model.kind != "vkd":
        raise ConfigError(
            "config.model.posterior_inputs='none' (the no-report control) needs model.kind='vkd', "
            f"got {config.model.kind!r}"
        )
    no_reports = _without_reports(config.data)
    if no_reports and (reads_report(config.model.kind, config.model.posterior_inputs) or tr.report_aux_weight):
        raise ConfigError(
            f"config.model.kind={config.model.kind!r} (report_aux_weight={tr.report_aux_weight}) learns from "
            f"reports, but {no_reports}: only model.kind='image_only' (report_aux_weight=0) can train on it"
        )
    _check_details(config)
    img = config.model.image_encoder
    if not (isinstance(img.pool_grid, int) and img.pool_grid >= 1):
        raise ConfigError(f"config.model.image_encoder.pool_grid must be an int >= 1, got {img.pool_grid!r}")
    if config.model.kind != "text_only":
        # The stem convolution halves the side, its max-pool and each transition halve it again.
        stride = 2 * (2 if img.stem_pool else 1) * 2 ** (len(img.block_sizes) - 1)
        side = config.data.image_size // stride
        if side < 1 or side % img.pool_grid:
            raise ConfigError(
                f"config.model.image_encoder.pool_grid={img.pool_grid} must divide the final feature map, "
                f"{side}x{side} for data.image_size={config.data.image_size} (downsampled {stride}x by the stem"
                f"{' and its max-pool' if img.stem_pool else ''} and {len(img.block_sizes) - 1} transitions)"
            )
    if not 0 <= config.model.dropout < 1:
        raise ConfigError(f"config.model.dropout must be in [0, 1), got {config.model.dropout}")
    for field in ("batch_size", "eval_batch_size"):
        size = config.train[field]
        if size <= 0 or size % num_devices or size % num_processes:
            raise ConfigError(
                f"config.train.{field}={size} must be a positive multiple of the {num_devices} devices "
                f"and {num_processes} processes"
            )
    txt, img = config.model.text_encoder, config.model.image_encoder
    for name, enc in (("text_encoder", txt), ("image_encoder", img)):
        _choice(config, f"model.{name}.train_mode", optim.TRAIN_MODES)
        _positive(enc.train_last_k, f"model.{name}.train_last_k")
        _positive(enc.lr_multiplier, f"model.{name}.lr_multiplier")
        if enc.init_from and not os.path.exists(enc.init_from):
            raise ConfigError(f"config.model.{name}.init_from: {enc.init_from} does not exist")
    differ = _not_densenet121(img) if img.init_from else []
    if any(field in SHAPING for field, _ in differ):
        differs = ", ".join(what for _, what in differ)
        raise ConfigError(
            f"config.model.image_encoder.init_from ({img.init_from}) holds DenseNet-121 weights, but the config's "
            f"image encoder differs in {differs}: set those fields, or start from a config with the "
            "DenseNet-121 shape (configs/torchxrayvision.py for torchxrayvision's weights, configs/mimic.py)"
        )
    if not (txt.tokenizer or txt.init_from):
        raise ConfigError(
            "config.model.text_encoder.tokenizer is empty: set it (or text_encoder.init_from) to a "
            "local Hugging Face directory (e.g. a downloaded Bio_ClinicalBERT), or 'synthetic'"
        )
    if txt.hidden_size % txt.num_heads:
        raise ConfigError(
            f"config.model.text_encoder.hidden_size={txt.hidden_size} is not a multiple of num_heads={txt.num_heads}"
        )
    if txt.max_length > txt.max_position_embeddings:
        raise ConfigError(
            f"config.model.text_encoder.max_length={txt.max_length} exceeds "
            f"max_position_embeddings={txt.max_position_embeddings}"
        )


def _check_details(config) -> None:
    """model.details_from and train.details_weight: both on or both off, on a kind that has
    the path the details are predicted from, and a dataset whose reports have a parser."""
    source, weight, kind = config.model.details_from, config.train.details_weight, config.model.kind
    if (source != "none") != (weight > 0):
        raise ConfigError(
            f"config.train.details_weight={weight} and config.model.details_from={source!r} disagree: "
            "set details_weight > 0 with details_from 'image' or 'posterior', or 0 with 'none'"
        )
    if source == "image" and kind == "text_only":
        raise ConfigError("config.model.details_from='image' needs a kind with an image encoder, got 'text_only'")
    if source == "posterior" and not has_posterior(kind):
        with_posterior = tuple(k for k in KINDS if has_posterior(k))
        raise ConfigError(
            f"config.model.details_from='posterior' needs a kind with a posterior {with_posterior}, got {kind!r}"
        )
    if source != "none" and config.data.name not in detail_parsers.PARSERS:
        raise ConfigError(
            f"config.model.details_from={source!r} learns the reports' details, but config.data.name="
            f"{config.data.name!r} has no report-details parser: only {tuple(detail_parsers.PARSERS)} do"
        )


# DenseNet-121's fields of config.model.image_encoder: what pretrained weights need. The first
# four shape the parameters (a difference is an error); stem_pool and pool_grid change only what
# the pretrained features mean (named beside them).
DENSENET121 = {
    "block_sizes": (6, 12, 24, 16),
    "growth_rate": 32,
    "bn_size": 4,
    "num_init_features": 64,
    "stem_pool": True,
    "pool_grid": 1,
}
SHAPING = ("block_sizes", "growth_rate", "bn_size", "num_init_features")


def _not_densenet121(img) -> list[tuple[str, str]]:
    """`(field, "field=value (DenseNet-121: value)")` for each field of `img` that differs from DenseNet-121."""
    have = lambda f: tuple(img[f]) if f == "block_sizes" else img[f]
    return [(f, f"{f}={have(f)!r} (DenseNet-121: {want!r})") for f, want in DENSENET121.items() if have(f) != want]
