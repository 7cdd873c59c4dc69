import pytest

from configs import demo, demo_scratch, mimic
from vkd_jax.config_checks import ConfigError, validate


def test_shipped_configs_are_valid():
    validate(demo.get_config(), num_devices=1)
    validate(demo_scratch.get_config(), num_devices=1)
    cfg = mimic.get_config()
    cfg.model.text_encoder.tokenizer = "/some/local/Bio_ClinicalBERT"
    validate(cfg, num_devices=8)


@pytest.mark.parametrize("path, value, match", [
    ("model.kind", "resnet", "model.kind"),
    ("model.posterior_inputs", "image", "posterior_inputs"),
    ("model.dtype", "float8", "model.dtype"),
    ("train.kl_schedule", "sawtooth", "kl_schedule"),
    ("train.pos_weight", "inverse", "pos_weight"),
    ("optim.name", "sgd", "optim.name"),
    ("data.uncertainty_policy", "maybe", "uncertainty_policy"),
    ("model.latent_dim", 0, "latent_dim"),
    ("model.dropout", 1.0, "dropout"),
    ("data.image_size", 16, "image_size"),
    ("train.batch_size", 12, "batch_size"),
    ("model.text_encoder.tokenizer", "", "tokenizer"),
    ("model.text_encoder.num_heads", 3, "num_heads"),
    ("model.text_encoder.max_length", 512, "max_length"),
    ("model.text_encoder.train_mode", "partial", "train_mode"),
    ("model.image_encoder.train_last_k", 0, "train_last_k"),
    ("model.text_encoder.init_from", "/no/such/bert", "/no/such/bert"),
    ("model.image_encoder.init_from", __file__, "DenseNet-121"),
    ("eval.threshold_method", "median", "threshold_method"),
    ("eval.bootstrap_samples", -1, "bootstrap_samples"),
    ("eval.calibration_bins", 0, "calibration_bins"),
    ("eval.refer_fraction", 1.0, "refer_fraction"),
])
def test_bad_values_are_rejected_by_name(path, value, match):
    cfg = demo_scratch.get_config()
    *parents, leaf = path.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    node[leaf] = value
    with pytest.raises(ConfigError, match=match):
        validate(cfg, num_devices=8)
