"""torchxrayvision's DenseNet-121 as the image encoder's init: its state dict (safetensors, or a
whole pickled model with allow_pickle) loads into the Flax DenseNet-121 with one input channel
and gives xrv's own pooled features on images normalised as xrv normalises them; its head is
reported as unused; 3 channels and unimportable pickles are refused with what to do. `vkd-jax
convert-xrv` converts a checkpoint file, `configs/torchxrayvision.py` takes the result as it is,
and xrv's pathology names map onto the CheXpert findings."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default, torchxrayvision as xrv_config
from data_pipelines import labels, preprocess
from vkd_jax import cli
from vkd_jax.models.densenet import DenseNet, DenseNet121
from vkd_jax.pretrained import files as weights, xrv as xrv_lib
from vkd_jax.runs import config_checks

torch = pytest.importorskip("torch")
xrv = pytest.importorskip("torchxrayvision")  # importable beside a CPU-only torch: tests/conftest.py
SIZE = 224  # torchxrayvision's resolution


@pytest.fixture(scope="module")
def model():
    """xrv's DenseNet-121 (nothing downloaded: weights=None), its convolutions as initialised
    (kaiming, seeded) and every BatchNorm's scale, shift and running statistics random."""
    torch.manual_seed(0)
    m = xrv.models.DenseNet(weights=None)
    m.pathologies = list(xrv.datasets.default_pathologies)  # as a named checkpoint carries them
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.1)
                mod.running_mean.normal_(0, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
        m.features.norm0.running_var.mul_(1e5)  # the stem sees [-1024, 1024]: a trained norm0's scale
        m.classifier.weight.normal_(0, 0.01)
    return m.eval()


@pytest.fixture(scope="module")
def files(model, tmp_path_factory):
    """The model as docs/pretrained.md's conversion writes it (safetensors of `state_dict()`) and as
    torchxrayvision ships it (`torch.save(model)`)."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("xrv")
    safe, pickled = str(folder / "xrv.safetensors"), str(folder / "xrv.pt")
    save_file(model.state_dict(), safe)
    torch.save(model, pickled)
    return safe, pickled


def _images(n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, SIZE, SIZE, 1), dtype=np.uint8)


def test_state_dict_keys_are_torchvision_features_plus_a_head(model):
    state = model.state_dict()
    assert {k for k in state if not k.startswith("features.")} == {"classifier.weight", "classifier.bias"}
    assert tuple(state["features.conv0.weight"].shape) == (64, 1, 7, 7)


def test_preprocessing_is_xrv_normalize():
    cfg = default.get_config().data
    cfg.update({"image_size": SIZE, "channels": 1, "normalization": "torchxrayvision"})
    stored = _images()
    ours = preprocess.eval_images(cfg, stored)
    np.testing.assert_allclose(ours, xrv.utils.normalize(stored, 255), rtol=0, atol=1e-4)


def test_pooled_features_equal_xrv_features2(model, files):
    safe, _ = files
    variables, report = weights.load_densenet121_with_report(safe, in_channels=1)
    assert report.unused == ("classifier.bias", "classifier.weight")
    assert variables["params"]["conv0"]["kernel"].shape == (7, 7, 1, 64)
    cfg = default.get_config().data
    cfg.update({"image_size": SIZE, "channels": 1, "normalization": "torchxrayvision"})
    images = preprocess.eval_images(cfg, _images())  # [2, 224, 224, 1] in [-1024, 1024]
    assert images.min() >= -1024 and images.max() <= 1024
    ours = np.asarray(jax.jit(lambda v, x: DenseNet121().apply(v, x, train=False))(variables, jnp.asarray(images)))
    with torch.no_grad():
        want = model.features2(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()
    assert ours.shape == want.shape == (2, 1024)
    scale = np.abs(want).max()
    diff = np.abs(ours - want).max()
    print(f"xrv parity: max |ours - features2| = {diff:.3g}, max |features2| = {scale:.3g}")
    assert diff <= 1e-4 * max(1.0, scale)


def test_a_pickled_xrv_model_loads_only_with_allow_pickle(files):
    safe, pickled = files
    with pytest.raises(weights.WeightsError, match="allow_pickle"):
        weights.load_densenet121(pickled, in_channels=1)
    from_pickle, report = weights.load_densenet121_with_report(pickled, allow_pickle=True, in_channels=1)
    assert report.unused == ("classifier.bias", "classifier.weight")
    jax.tree.map(np.testing.assert_array_equal, from_pickle, weights.load_densenet121(safe, in_channels=1))


def test_the_head_and_op_threshs_are_reported_as_unused(model, tmp_path):
    """A named checkpoint (e.g. 'densenet121-res224-all') carries `op_threshs` in its state."""
    from safetensors.torch import save_file

    state = dict(model.state_dict(), op_threshs=torch.full((18,), float("nan")))
    save_file(state, str(tmp_path / "thr.safetensors"))
    _, report = weights.load_densenet121_with_report(str(tmp_path / "thr.safetensors"), in_channels=1)
    assert report.unused == ("classifier.bias", "classifier.weight", "op_threshs")


def test_one_channel_weights_refuse_three_channels(files):
    with pytest.raises(weights.WeightsError, match="data.channels=1"):
        weights.load_densenet121(files[0], in_channels=3)


def test_an_unimportable_pickled_model_says_what_to_do(files, monkeypatch):
    for name in [m for m in sys.modules if m == "torchxrayvision" or m.startswith("torchxrayvision.")]:
        monkeypatch.setitem(sys.modules, name, None)  # `import torchxrayvision` now fails
    with pytest.raises(weights.WeightsError, match="pip install torchxrayvision") as e:
        weights.load_densenet121(files[1], allow_pickle=True, in_channels=1)
    assert files[1] in str(e.value) and weights.XRV_CONVERT_COMMAND in str(e.value)


def test_convert_xrv_command_writes_safetensors_that_load(model, files, tmp_path, monkeypatch, capsys):
    """`vkd-jax convert-xrv --weights=FILE --output=...`: the pickled model's state dict as safetensors,
    its pathology names in the metadata; the result loads as the pickle does."""
    _, pickled = files
    out = str(tmp_path / "converted.safetensors")
    cli.convert_xrv([f"--weights={pickled}", f"--output={out}"])  # `vkd-jax convert-xrv ...`
    printed = capsys.readouterr().out
    assert out in printed and "--config=configs/torchxrayvision.py" in printed
    from safetensors import safe_open

    with safe_open(out, "np") as f:
        assert __import__("json").loads(f.metadata()["pathologies"]) == list(model.pathologies)
    jax.tree.map(
        np.testing.assert_array_equal,
        weights.load_densenet121(out, in_channels=1),
        weights.load_densenet121(pickled, allow_pickle=True, in_channels=1),
    )


def test_convert_xrv_refuses_a_bad_name_or_output_in_one_line(tmp_path, monkeypatch, capsys):
    for args, match in [
        (["--weights=densenet121-res224-nope", f"--output={tmp_path}/x.safetensors"], "not a torchxrayvision name"),
        (["--weights=densenet121-res224-all", f"--output={tmp_path}/x.pt"], "name a .safetensors file"),
        ([f"--weights={tmp_path}/missing.pt", f"--output={tmp_path}/x.safetensors"], "no such file"),
    ]:
        with pytest.raises(SystemExit) as e:
            cli.convert_xrv(args)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and match in err and err.count("\n") == 1


def test_the_packaged_config_takes_xrv_weights_as_they_are(files):
    """configs/torchxrayvision.py validates with the converted file, and the image encoder it builds
    has the variables' shapes (no override needed)."""
    cfg = xrv_config.get_config()
    cfg.model.image_encoder.init_from = files[0]
    config_checks.validate(cfg, num_devices=8)
    assert (cfg.data.image_size, cfg.data.channels, cfg.data.normalization) == (SIZE, 1, "torchxrayvision")
    img = cfg.model.image_encoder
    module = DenseNet(
        block_sizes=tuple(img.block_sizes),
        growth_rate=img.growth_rate,
        bn_size=img.bn_size,
        num_init_features=img.num_init_features,
    )
    x = jnp.zeros((1, 64, 64, cfg.data.channels))
    want = jax.eval_shape(lambda: module.init(jax.random.key(0), x, train=False))
    got = weights.load_densenet121(files[0], in_channels=cfg.data.channels)
    assert jax.tree.map(lambda a: a.shape, want) == jax.tree.map(lambda a: a.shape, got)


def test_a_config_of_another_shape_names_each_differing_value(files):
    cfg = default.get_config()
    cfg.update_from_flattened_dict({"data.name": "synthetic_cxr", "model.text_encoder.tokenizer": "synthetic"})
    cfg.model.image_encoder.update(dict(block_sizes=(2, 2), num_init_features=32, stem_pool=False, pool_grid=2))
    cfg.data.image_size = 64
    cfg.model.image_encoder.init_from = files[0]
    with pytest.raises(config_checks.ConfigError) as e:
        config_checks.validate(cfg, num_devices=8)
    msg = str(e.value)
    for part in (
        "block_sizes=(2, 2) (DenseNet-121: (6, 12, 24, 16))",
        "num_init_features=32 (DenseNet-121: 64)",
        "stem_pool=False (DenseNet-121: True)",
        "pool_grid=2 (DenseNet-121: 1)",
        "configs/torchxrayvision.py",
    ):
        assert part in msg
    assert "growth_rate" not in msg and "bn_size" not in msg  # those fit


def test_xrv_pathologies_map_onto_chexpert_findings():
    assert set(xrv_lib.XRV_TO_CHEXPERT) <= set(xrv.datasets.default_pathologies)
    assert set(xrv_lib.XRV_TO_CHEXPERT.values()) <= set(labels.CLASS_NAMES)
    assert len(set(xrv_lib.XRV_TO_CHEXPERT.values())) == len(xrv_lib.XRV_TO_CHEXPERT) == 11
    pathologies = list(xrv.datasets.default_pathologies)
    outputs = np.arange(2 * 18, dtype=np.float32).reshape(2, 18)
    got = xrv_lib.to_chexpert(outputs, pathologies, labels.CLASS_NAMES)
    assert got.shape == (2, 14)
    effusion = labels.CLASS_NAMES.index("Pleural Effusion")
    np.testing.assert_array_equal(got[:, effusion], outputs[:, pathologies.index("Effusion")])
    for missing in ("No Finding", "Pleural Other", "Support Devices"):
        assert np.isnan(got[:, labels.CLASS_NAMES.index(missing)]).all()
    # A checkpoint trained on fewer findings names the others "": they stay NaN.
    blanked = ["" if p == "Edema" else p for p in pathologies]
    assert np.isnan(
        xrv_lib.to_chexpert(outputs, blanked, labels.CLASS_NAMES)[:, labels.CLASS_NAMES.index("Edema")]
    ).all()


def test_the_shim_stands_in_only_where_torchvisions_ops_do_not_load(tmp_path):
    """A torchvision whose ops load (0.29 names them `_C_stable.so`) must not get the shim's
    declarations too: `import torchvision` would register them again and abort."""
    from vkd_jax.pretrained import torchvision_ops

    init = str(tmp_path / "__init__.py")
    assert torchvision_ops._ops_load(init)  # no C library: nothing to stand in for
    (tmp_path / "_C_stable.so").write_bytes(b"not a library")
    assert not torchvision_ops._ops_load(init)
