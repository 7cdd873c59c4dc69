import pytest

from configs import demo, demo_scratch, mimic
from vkd_jax.runs.config_checks import ConfigError, validate


def test_shipped_configs_are_valid():
    validate(demo.get_config(), num_devices=1)
    validate(demo_scratch.get_config(), num_devices=1)
    cfg = mimic.get_config()
    cfg.model.text_encoder.tokenizer = "/some/local/Bio_ClinicalBERT"
    validate(cfg, num_devices=8)


@pytest.mark.parametrize(
    "path, value, match",
    [
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
        ("train.beta", -1.0, "train.beta"),
        ("train.beta", float("nan"), "train.beta"),
        ("train.free_bits", float("inf"), "free_bits"),
        ("train.report_aux_weight", -0.5, "report_aux_weight"),
        ("train.kl_balance", 1.5, "kl_balance"),
        ("train.distill_weight", 2.0, "distill_weight"),
        ("train.distill_temperature", 0.0, "distill_temperature"),
        ("model.image_encoder.pool_grid", 0, "pool_grid"),
        ("optim.learning_rate", float("inf"), "optim.learning_rate"),
        ("optim.b1", float("nan"), "optim.b1"),
        ("data.mean", float("-inf"), "data.mean"),
        ("data.augment.rotation", float("nan"), "data.augment.rotation"),
        ("train.kl_balance", float("nan"), "train.kl_balance"),
        ("eval.refer_fraction", float("nan"), "refer_fraction"),
        # The data section (checked here only, not again by the input pipeline).
        ("data.name", "", "data.name"),
        ("data.uncertainty_policy", "maybe", "uncertainty_policy"),
        ("data.std", 0.0, "data.std"),
        ("data.shuffle_buffer", 0, "shuffle_buffer"),
        ("data.val_split", "", "val_split"),
        ("data.channels", 2, "channels"),
        ("data.normalization", "imagenet", "normalization"),
        ("data.normalization", "zscore", "normalization"),
        ("data.augment.rotation", 90.0, "augment.rotation"),
        ("data.build_size", 4, "build_size"),
        ("data.label_set", "nih", "no_finding_rule"),
        ("data.label_set", "padchest", "label_set"),
        # The synthetic dataset's build options (demo_scratch's dataset).
        ("data.synthetic.label_noise", 1.5, r"config\.data\.synthetic\.label_noise must be a number in \[0, 1\]"),
        ("data.synthetic.mild_drop", -0.1, r"config\.data\.synthetic\.mild_drop must be a number in \[0, 1\]"),
        ("data.synthetic.mild_drop", 2.0, "data.synthetic.mild_drop"),
        ("data.synthetic.strengths", "Pneumonitis=2", "config.data.synthetic.strengths: unknown finding 'Pneumonitis'"),
        ("data.synthetic.strengths", "Edema=-1", "config.data.synthetic.strengths must be 'Finding=factor"),
        ("data.synthetic.strengths", "Edema 2", "config.data.synthetic.strengths must be"),
    ],
)
def test_bad_values_are_rejected_by_name(path, value, match):
    cfg = demo_scratch.get_config()
    *parents, leaf = path.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    node[leaf] = value
    with pytest.raises(ConfigError, match=match):
        validate(cfg, num_devices=8)


def test_synthetic_knobs_are_checked_only_for_the_synthetic_dataset():
    cfg = demo_scratch.get_config()
    cfg.data.synthetic.strengths = "Lung Lesion=0.5, Pneumothorax=2"
    cfg.data.synthetic.mild_drop = 0.5
    validate(cfg, num_devices=8)
    cfg.data.synthetic.strengths = "Pneumonitis=2"  # a section no build reads
    cfg.data.name = "mimic_cxr"
    validate(cfg, num_devices=8)


def test_torchxrayvision_scaling_needs_one_channel():
    cfg = demo_scratch.get_config()
    cfg.data.update({"channels": 1, "normalization": "torchxrayvision"})
    validate(cfg, num_devices=1)
    cfg.data.channels = 3
    with pytest.raises(ConfigError, match=r"config\.data\.normalization .*data\.channels=1"):
        validate(cfg, num_devices=1)


def test_the_no_report_control_is_a_vkd_option():
    cfg = demo_scratch.get_config()
    cfg.model.posterior_inputs = "none"
    validate(cfg, num_devices=1)
    cfg.model.kind = "multimodal"
    with pytest.raises(ConfigError, match="posterior_inputs='none'"):
        validate(cfg, num_devices=1)


def test_report_details_need_a_weight_a_path_and_a_parser():
    cfg = demo_scratch.get_config()  # synthetic_cxr: its reports have a parser
    cfg.model.details_from, cfg.train.details_weight = "posterior", 0.5
    validate(cfg, num_devices=1)
    cfg.model.kind, cfg.model.details_from = "image_only", "image"
    validate(cfg, num_devices=1)
    for model, weight, match in (
        ({"details_from": "text"}, 0.5, r"config\.model\.details_from must be one of"),
        ({"details_from": "none"}, 0.5, r"details_weight=0.5 and config\.model\.details_from='none' disagree"),
        ({"details_from": "image"}, 0.0, r"details_weight=0.0 and config\.model\.details_from='image' disagree"),
        ({"details_from": "image"}, -1.0, r"config\.train\.details_weight must be a finite number >= 0"),
        ({"details_from": "posterior"}, 0.5, r"details_from='posterior' needs a kind with a posterior"),
        ({"kind": "text_only", "details_from": "image"}, 0.5, r"details_from='image' needs a kind with an image"),
    ):
        bad = cfg.copy_and_resolve_references()
        bad.model.update(model)
        bad.train.details_weight = weight
        with pytest.raises(ConfigError, match=match):
            validate(bad, num_devices=1)
    cfg.data.name = "openi"
    with pytest.raises(ConfigError, match=r"config\.data\.name='openi' has no report-details parser"):
        validate(cfg, num_devices=1)


def test_a_saved_kl_weight_becomes_beta(tmp_path):
    """Workdirs of 0.1.0 saved `train.kl_weight` on a per-label mean BCE: beta = 14 x it."""
    import json

    from vkd_jax.runs import workdir

    cfg = demo_scratch.get_config().to_dict()
    cfg["train"].pop("beta")
    cfg["train"]["kl_weight"] = 0.5
    del cfg["model"]["text_encoder"]["attention_impl"]  # added since: read as its default
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    loaded = workdir.read_config(str(tmp_path))
    assert loaded.train.beta == 7.0 and "kl_weight" not in loaded.train
    assert loaded.model.text_encoder.attention_impl == "auto"


def test_the_grid_must_divide_the_final_feature_map():
    cfg = demo.get_config()  # 64 px, no stem max-pool, blocks 2-2: a 16 x 16 map, grid 8
    validate(cfg, num_devices=1)
    cfg.data.image_size = 32  # an 8 x 8 map: still fine
    validate(cfg, num_devices=1)
    cfg.model.image_encoder.block_sizes = (1, 1, 1, 1)  # 2 x 2
    with pytest.raises(ConfigError, match=r"pool_grid=8 must divide the final feature map, 2x2"):
        validate(cfg, num_devices=1)
