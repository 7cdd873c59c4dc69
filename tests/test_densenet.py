"""Tests for vkd_jax.models.densenet: torchvision layout, BatchNorm modes, dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vkd_jax.models import densenet
from vkd_jax.pretrained import files as weights

TINY_FEATURES = 47  # 16 -> +24 -> 20 -> +24 -> 22 -> +24 -> 23 -> +24
# Smaller still, for the tests that compile several programs (XLA compile time
# grows with the number of layers). Features: 8 -> +8 -> 8 -> +8 = 16.
MICRO = dict(block_sizes=(2, 2), growth_rate=4, bn_size=2, num_init_features=8)
MICRO_FEATURES = 16


def _apply(model, variables, x, train=False):
    """Jitted apply; eager op-by-op dispatch is slow on CPU. Train also returns updates."""
    if train:
        fn = lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])
    else:
        fn = lambda v, x: model.apply(v, x, train=False)
    return jax.jit(fn)(variables, x)


def _init(model, x):
    return jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(x)


def _flat(tree):
    """{path tuple: leaf} of a nested dict."""
    return {tuple(k.key for k in path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _torchvision_densenet121_shapes(in_channels=3):
    """Key -> shape of torchvision's densenet121 `features.*` state dict.

    Written from torchvision's definition (not from our module), without
    num_batches_tracked: 604 keys, 606 with classifier.{weight,bias}.
    """
    shapes = {}

    def norm(prefix, c):
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{leaf}"] = (c,)

    shapes["features.conv0.weight"] = (64, in_channels, 7, 7)
    norm("features.norm0", 64)
    c = 64
    for i, num_layers in enumerate((6, 12, 24, 16), start=1):
        for j in range(1, num_layers + 1):
            p = f"features.denseblock{i}.denselayer{j}"
            cin = c + (j - 1) * 32
            norm(f"{p}.norm1", cin)
            shapes[f"{p}.conv1.weight"] = (128, cin, 1, 1)
            norm(f"{p}.norm2", 128)
            shapes[f"{p}.conv2.weight"] = (32, 128, 3, 3)
        c += num_layers * 32
        if i != 4:
            norm(f"features.transition{i}.norm", c)
            shapes[f"features.transition{i}.conv.weight"] = (c // 2, c, 1, 1)
            c //= 2
    norm("features.norm5", c)
    assert c == 1024
    return shapes


@pytest.fixture(scope="module")
def dn121_shapes():
    model = densenet.DenseNet121()
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)), train=False))


@pytest.fixture(scope="module")
def tiny():
    model = densenet.DenseNet(**MICRO)
    x = jax.random.normal(jax.random.key(1), (4, 16, 16, 1))
    variables = _init(model, x)
    return model, variables, x


def test_torch_keys_and_shapes_match_torchvision(dn121_shapes):
    expected = _torchvision_densenet121_shapes()
    assert len(expected) + 2 == 606  # + classifier.weight, classifier.bias
    ours = {}
    for collection in ("params", "batch_stats"):
        for path, leaf in _flat(dn121_shapes[collection]).items():
            key = densenet.torch_key(path, collection)
            assert key not in ours, key
            shape = leaf.shape
            if path[-1] == "kernel":  # HWIO -> OIHW
                shape = tuple(shape[i] for i in (3, 2, 0, 1))
            ours[key] = shape
    assert set(ours) == set(expected)
    assert ours == expected
    params = dn121_shapes["params"]
    assert params["conv0"]["kernel"].shape == (7, 7, 3, 64)
    assert params["denseblock1"]["denselayer1"]["conv1"]["kernel"].shape == (1, 1, 64, 128)


def test_torch_key_examples():
    assert (
        densenet.torch_key(("denseblock1", "denselayer1", "conv1", "kernel"), "params")
        == "features.denseblock1.denselayer1.conv1.weight"
    )
    assert densenet.torch_key(("norm0", "mean"), "batch_stats") == "features.norm0.running_mean"
    assert densenet.torch_key(("norm5", "var"), "batch_stats") == "features.norm5.running_var"
    assert densenet.torch_key(("transition2", "norm", "scale"), "params") == ("features.transition2.norm.weight")
    with pytest.raises(ValueError):
        densenet.torch_key(("norm0", "mean"), "params")


def test_densenet121_param_count_and_feature_dim(dn121_shapes):
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(dn121_shapes["params"]))
    classifier = 1024 * 1000 + 1000
    assert n == 6_953_856
    assert n + classifier == 7_978_856  # torchvision densenet121 parameter count
    model = densenet.DenseNet121()
    out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), dn121_shapes, jnp.zeros((2, 224, 224, 3)))
    assert out.shape == (2, 1024) and out.dtype == jnp.float32


def test_torch_to_flax_kernel():
    w = np.arange(2 * 3 * 5 * 7).reshape(2, 3, 5, 7)  # O, I, kH, kW
    k = densenet.torch_to_flax_kernel(w)
    assert k.shape == (5, 7, 3, 2)
    assert k[4, 6, 2, 1] == w[1, 2, 4, 6]


def test_load_torch_state_dict_round_trip(tiny):
    model, variables, x = tiny
    state_dict = {
        "classifier.weight": np.zeros((3, MICRO_FEATURES)),
        "features.norm0.num_batches_tracked": np.array(0),
    }
    for collection in ("params", "batch_stats"):
        for path, leaf in _flat(variables[collection]).items():
            w = np.asarray(leaf)
            if path[-1] == "kernel":
                w = np.transpose(w, (3, 2, 0, 1))
            state_dict[densenet.torch_key(path, collection)] = w
    loaded, _ = weights.densenet_variables_from_state_dict(variables, state_dict)
    jax.tree.map(np.testing.assert_array_equal, loaded, jax.device_get(variables))
    np.testing.assert_array_equal(_apply(model, loaded, x), _apply(model, variables, x))

    state_dict["features.conv0.weight"] = state_dict["features.conv0.weight"][:, :, :3]
    with pytest.raises(weights.WeightsError, match="features.conv0.weight"):
        weights.densenet_variables_from_state_dict(variables, state_dict)


def test_tiny_output_shape():
    # Shapes only: the MICRO tests below exercise the same code with real numbers.
    model = densenet.DenseNetTiny()
    x = jnp.ones((2, 64, 48, 1))
    out, variables = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), x, train=False))
    assert out.shape == (2, TINY_FEATURES) and out.dtype == jnp.float32
    assert variables["params"]["norm5"]["scale"].shape == (TINY_FEATURES,)


def test_any_input_channels(tiny):
    model, _, x = tiny
    for channels in (1, 3):
        xc = x[..., :1].repeat(channels, -1)
        shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), xc, train=False))
        assert shapes["params"]["conv0"]["kernel"].shape == (7, 7, channels, 8)


def test_train_updates_batch_stats_eval_does_not(tiny):
    model, variables, x = tiny
    out, updates = _apply(model, variables, x, train=True)
    before, after = _flat(variables["batch_stats"]), _flat(updates["batch_stats"])
    assert before.keys() == after.keys()
    assert all(not np.allclose(before[k], after[k]) for k in before)
    # Eval uses the running statistics: an example's features do not depend on its batch.
    eval_full = _apply(model, variables, x)
    np.testing.assert_allclose(_apply(model, variables, x[:1]), eval_full[:1], rtol=1e-5, atol=1e-6)
    # Train normalises with batch statistics, so it differs from eval.
    assert not np.allclose(out, eval_full, atol=1e-3)


def test_bn_axis_name_uses_global_batch_stats(tiny):
    model, variables, x = tiny
    full, full_upd = _apply(model, variables, x, train=True)
    sharded = densenet.DenseNet(**MICRO, bn_axis_name="data")
    shards = x.reshape(2, 2, *x.shape[1:])
    out, upd = jax.jit(
        jax.vmap(lambda s: sharded.apply(variables, s, train=True, mutable=["batch_stats"]), axis_name="data")
    )(shards)
    np.testing.assert_allclose(out.reshape(full.shape), full, rtol=1e-4, atol=1e-5)
    # Every shard holds the same (global) running statistics.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[0], b, rtol=1e-4, atol=1e-6), upd, full_upd)


def test_bfloat16_compute_close_to_float32(tiny):
    model, variables, x = tiny
    ref = _apply(model, variables, x)
    bf16 = densenet.DenseNet(**MICRO, dtype=jnp.bfloat16)
    out = _apply(bf16, variables, x)
    assert out.dtype == jnp.float32
    rel = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    assert rel < 3e-2, rel


def test_remat_same_params_outputs_and_grads(tiny):
    model, variables, x = tiny
    remat = densenet.DenseNet(**MICRO, remat=True)
    remat_shapes = jax.eval_shape(lambda: remat.init(jax.random.key(0), x, train=False))
    assert jax.tree.structure(remat_shapes) == jax.tree.structure(variables)

    def loss(m, params):
        out, _ = m.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
        return jnp.sum(out**2)

    g_ref = jax.jit(jax.grad(lambda p: loss(model, p)))(variables["params"])
    g_remat = jax.jit(jax.grad(lambda p: loss(remat, p)))(variables["params"])
    # Remat may reorder float reductions; some gradients are ~0 (a BN follows), so
    # compare against the overall gradient scale.
    scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(g_ref))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale), g_remat, g_ref)


def _activation_residual_bytes(model, x) -> int:
    """Bytes of what the backward pass keeps (jax.ad_checkpoint.print_saved_residuals), the
    parameters left out."""
    import contextlib
    import io
    import re

    from jax.ad_checkpoint import print_saved_residuals

    variables = model.init(jax.random.key(0), x, train=False)

    def loss(params):
        out, _ = model.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
        return jnp.sum(out)

    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        print_saved_residuals(loss, variables["params"])
    total = 0
    for line in text.getvalue().splitlines():
        m = re.match(r"\s*(f32|bf16|f16|s32|u32|pred|bool)\[([\d,\s]*)\]", line)
        if m and "from the argument" not in line:
            dims = [int(d) for d in m.group(2).split(",") if d.strip()]
            total += {"f32": 4, "s32": 4, "u32": 4, "bf16": 2, "f16": 2}.get(m.group(1), 1) * int(np.prod(dims))
    assert total > 0, text.getvalue()[:2000]
    return total


def test_remat_keeps_activation_memory_linear_in_depth():
    # Without remat every layer's concatenated input is kept: quadratic in depth. With
    # remat only each layer's new channels are (the concatenation is recomputed).
    x = jnp.ones((2, 32, 32, 1))
    kept = {
        (depth, remat): _activation_residual_bytes(
            densenet.DenseNet(block_sizes=(depth,), growth_rate=4, bn_size=2, num_init_features=8, remat=remat), x
        )
        for depth in (8, 16)
        for remat in (False, True)
    }
    assert kept[16, False] / kept[8, False] > 2.2  # quadratic
    assert kept[16, True] / kept[8, True] < 1.6, kept  # linear plus a constant
    assert kept[16, True] < 0.2 * kept[16, False], kept


def test_grid_pooling_keeps_where_features_are():
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(densenet.grid_mean(jnp.asarray(x), 1), x.mean(axis=(1, 2)), rtol=1e-6)
    cells = densenet.grid_mean(jnp.asarray(x), 2).reshape(2, 2, 2, 3)  # [B, row, col, C]
    np.testing.assert_allclose(cells[:, 0, 1], x[:, :4, 4:].mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(cells[:, 1, 0], x[:, 4:, :4].mean(axis=(1, 2)), rtol=1e-5)
    with pytest.raises(ValueError, match="pool_grid=3"):
        densenet.grid_mean(jnp.asarray(x), 3)


def test_stem_pool_and_pool_grid_set_the_feature_size():
    x = jnp.zeros((1, 64, 64, 1))
    for kw, size in ((dict(), 47), (dict(pool_grid=2), 47 * 4), (dict(stem_pool=False, pool_grid=4), 47 * 16)):
        model = densenet.DenseNetTiny(**kw)
        variables = model.init(jax.random.key(0), x, train=False)
        assert model.apply(variables, x, train=False).shape == (1, size)
    # 64 px: the final map is 2x2 with the stem's max-pool, 4x4 without it.
    with pytest.raises(ValueError, match="2x2"):
        densenet.DenseNetTiny(pool_grid=4).init(jax.random.key(0), x, train=False)
