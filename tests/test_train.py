"""The sharded train step: 8 devices == 1 device == unsharded reference; traced once."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import demo_scratch as demo
from vkd_jax import inference, losses, sharding, train
from vkd_jax.models import create_model

BATCH, IMAGE, TOKENS, SAMPLES, DETAILS = 16, 32, 12, 2, 7


def _config(kind="vkd"):
    """`kind`, or `vkd_control` (no report), `image_only_aux` (the report-words task),
    `image_only_details` (report details from the image), `vkd_details` (decoded from the
    posterior) or `vkd_control_details` (the same without the report)."""
    cfg = demo.get_config()
    base = kind.removesuffix("_details")
    cfg.model.kind = {"vkd_control": "vkd", "image_only_aux": "image_only"}.get(base, base)
    if base == "vkd_control":
        cfg.model.posterior_inputs = "none"
    if kind == "image_only_aux":
        cfg.train.report_aux_weight = 0.5
    if kind.endswith("_details"):
        cfg.model.details_from = "image" if base == "image_only" else "posterior"
        cfg.train.details_weight = 0.7
    # Dropout masks are drawn per device, so they differ between device counts; the
    # equality tests switch dropout off (latent noise is keyed per example and stays on).
    cfg.model.dropout = 0.0
    cfg.model.text_encoder.dropout = 0.0
    cfg.model.text_encoder.attention_dropout = 0.0
    cfg.model.latent_dim = 8
    cfg.model.hidden_dim = 16
    cfg.model.image_encoder.block_sizes = (1, 1, 1, 1)
    cfg.model.image_encoder.growth_rate = 4
    cfg.model.image_encoder.num_init_features = 8
    cfg.model.text_encoder.hidden_size = 16
    cfg.model.text_encoder.intermediate_size = 32
    return cfg


def _batch(seed):
    r = np.random.default_rng(seed)
    attention = (np.arange(TOKENS)[None] < r.integers(3, TOKENS, size=(BATCH, 1))).astype(np.int32)
    return {
        "image": r.normal(size=(BATCH, IMAGE, IMAGE, 1)).astype(np.float32),
        "input_ids": (r.integers(1, 50, size=(BATCH, TOKENS)) * attention).astype(np.int32),
        "attention_mask": attention,
        "labels": (r.random((BATCH, 14)) < 0.3).astype(np.float32),
        "label_mask": (r.random((BATCH, 14)) < 0.8).astype(np.float32),
        "mask": np.ones(BATCH, np.float32),
        "report_details": (r.random((BATCH, DETAILS)) < 0.4).astype(np.float32),
        "report_details_mask": (r.random((BATCH, DETAILS)) < 0.5).astype(np.float32),
    }


OBJECTIVE = losses.Objective(
    beta=1.0, prior_weight=0.5, free_bits=0.01, free_bits_per_dim=True, distill_weight=0.4, distill_temperature=2.0
)


def _setup(cfg, num_devices, tx, kl_schedule=lambda step: jnp.float32(0.1)):
    mesh = sharding.make_mesh(num_devices)
    aux = cfg.train.report_aux_weight > 0
    model = create_model(
        cfg.model, num_classes=14, vocab_size=64, axis_name=sharding.AXIS, report_aux=aux, num_details=DETAILS
    )
    state = train.create_train_state(model, tx, jax.random.key(0), mesh, image_size=IMAGE, max_length=TOKENS)
    objective = dataclasses.replace(
        OBJECTIVE, report_aux_weight=cfg.train.report_aux_weight, details_weight=cfg.train.details_weight
    )
    step = train.make_train_step(
        model,
        mesh,
        lr_fn=lambda s: 0.1,
        kl_schedule=kl_schedule,
        num_samples=SAMPLES,
        objective=objective,
        pos_weight=None,
    )
    return mesh, model, state, step


@pytest.mark.parametrize(
    "kind",
    [
        "vkd",
        "image_only",
        "text_only",
        "distill",
        "vkd_control",
        "image_only_aux",
        "image_only_details",
        "vkd_details",
        "vkd_control_details",
    ],
)
def test_eight_devices_match_one_device(kind):
    assert jax.device_count() >= 8, "tests/conftest.py should provide 8 CPU devices"
    cfg = _config(kind)
    # Plain SGD: unlike Adam, its update scales with the gradient, so an N-times gradient shows.
    tx = optax.sgd(0.1)
    results = []
    for n in (1, 8):
        mesh, _, state, step = _setup(cfg, n, tx)
        batch = sharding.shard_batch(_batch(0), mesh)
        assert len(batch["image"].sharding.device_set) == n
        new_state, metrics = step(state, batch)
        results.append(jax.device_get((new_state.params, new_state.batch_stats, metrics)))
    (p1, bs1, m1), (p8, bs8, m8) = results
    for key in m1:
        np.testing.assert_allclose(m8[key], m1[key], rtol=1e-5, atol=1e-7, err_msg=key)
    chex.assert_trees_all_close(p8, p1, rtol=1e-4, atol=1e-6)
    chex.assert_trees_all_close(bs8, bs1, rtol=1e-4, atol=1e-6)
    if kind != "text_only":
        assert jax.tree.leaves(bs1), "BatchNorm statistics should be updated"
    assert ("bce_details" in m1) == kind.endswith("_details")
    if kind.startswith(("vkd", "vkd_control")):  # the KL weight in force: beta times the schedule's 0.1
        np.testing.assert_allclose(m1["beta"], OBJECTIVE.beta * 0.1, rtol=1e-6)
    else:  # no KL term, so no KL weight to report
        assert "beta" not in m1 and "kl" not in m1


def test_gradient_equals_the_unsharded_reference():
    """The step's gradient (seen through SGD) is that of the plain whole-batch loss."""
    cfg = _config("vkd")
    lr = 0.1
    mesh, _, state, step = _setup(cfg, 8, optax.sgd(lr))
    params0, stats0 = jax.device_get((state.params, state.batch_stats))  # state is donated below
    batch = _batch(1)
    new_state, _ = step(state, sharding.shard_batch(batch, mesh))
    # Reference: no shard_map, no axis name, same per-example noise.
    model = create_model(cfg.model, num_classes=14, vocab_size=64, axis_name=None)
    rng = jax.random.fold_in(jax.random.split(jax.random.key(0))[1], 0)
    _, noise_rng = jax.random.split(rng)
    noise = losses.per_example_normal(noise_rng, jnp.arange(BATCH), (SAMPLES, cfg.model.latent_dim))

    def loss_fn(params):
        out, _ = model.apply(
            {"params": params, "batch_stats": stats0},
            batch["image"],
            batch["input_ids"],
            batch["attention_mask"],
            noise,
            train=True,
            mutable=["batch_stats"],
        )
        return losses.vkd_loss(out, batch["labels"], batch["label_mask"], batch["mask"], OBJECTIVE, kl_scale=0.1)[0]

    grads = jax.grad(loss_fn)(params0)
    expected = jax.tree.map(lambda p, g: p - lr * g, params0, grads)
    chex.assert_trees_all_close(jax.device_get(new_state.params), expected, rtol=1e-4, atol=1e-6)


def test_step_is_traced_once_and_devices_draw_different_noise():
    traces = []

    def kl_schedule(step):  # runs only while the step is being traced
        traces.append(1)
        return jnp.float32(0.1)

    cfg = _config("vkd")
    cfg.model.dropout = 0.3
    mesh, _, state, step = _setup(cfg, 8, optax.adam(1e-3), kl_schedule)
    losses_seen = []
    for i in range(4):
        state, metrics = step(state, sharding.shard_batch(_batch(i), mesh))
        losses_seen.append(float(metrics["loss"]))
    assert len(traces) == 1
    assert int(state.step) == 4
    assert np.all(np.isfinite(losses_seen))


def test_eval_step_scores_each_example_with_prior_samples():
    cfg = _config("vkd")
    mesh, model, state, _ = _setup(cfg, 8, optax.sgd(0.1))
    eval_step = inference.make_eval_step(model, mesh, num_samples=4)
    batch = _batch(2)
    mean, std, _ = eval_step(state, sharding.shard_batch(batch, mesh), jax.random.key(5))
    assert mean.shape == std.shape == (BATCH, 14)
    assert np.all((0 < np.asarray(mean)) & (np.asarray(mean) < 1))
    assert np.all(np.asarray(std) > 0)  # samples of the prior differ
    # The prior path never reads the report.
    no_text = dict(batch, input_ids=np.zeros_like(batch["input_ids"]))
    mean2, _, _ = eval_step(state, sharding.shard_batch(no_text, mesh), jax.random.key(5))
    np.testing.assert_allclose(mean2, mean, rtol=1e-6)
    # Same result on one device.
    mesh1 = sharding.make_mesh(1)
    state1 = train.create_train_state(
        model, optax.sgd(0.1), jax.random.key(0), mesh1, image_size=IMAGE, max_length=TOKENS
    )
    mean1, _, _ = inference.make_eval_step(model, mesh1, num_samples=4)(
        state1, sharding.shard_batch(batch, mesh1), jax.random.key(5)
    )
    np.testing.assert_allclose(mean1, mean, rtol=1e-5, atol=1e-6)


def test_the_control_never_reads_the_report_and_distill_predicts_from_the_image():
    """`posterior_inputs='none'`: no text encoder, and the loss is the same whatever the
    report says; `distill` and the auxiliary task train on the report but predict without it."""
    batch = _batch(3)
    other_report = dict(batch, input_ids=np.roll(batch["input_ids"], 1, axis=0))
    for kind, part in (("vkd_control", None), ("distill", "text_encoder"), ("image_only_aux", "report_head")):
        cfg = _config(kind)
        losses_seen = []
        for b in (batch, other_report):
            mesh, model, state, step = _setup(cfg, 1, optax.sgd(0.0))  # the step donates its state
            eval_step = inference.make_eval_step(model, mesh, num_samples=2)
            mean = np.asarray(eval_step(state, sharding.shard_batch(b, mesh), jax.random.key(1))[0])
            if part is None:
                assert "text_encoder" not in state.params
            else:
                assert part in state.params
            losses_seen.append(float(step(state, sharding.shard_batch(b, mesh))[1]["loss"]))
            if b is batch:
                first_mean = mean
        np.testing.assert_allclose(mean, first_mean, rtol=1e-6)  # test time reads the image only
        if kind == "vkd_control":
            np.testing.assert_allclose(losses_seen[0], losses_seen[1], rtol=1e-6)
        else:  # training does read the report
            assert losses_seen[0] != losses_seen[1]


def test_eval_step_reports_each_examples_kl_on_request():
    cfg = _config("vkd")
    mesh, model, state, _ = _setup(cfg, 8, optax.sgd(0.1))
    batch = _batch(4)
    _, _, kl = inference.make_eval_step(model, mesh, num_samples=2, with_kl=True)(
        state, sharding.shard_batch(batch, mesh), jax.random.key(0)
    )
    variables = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
    h = model.apply(variables, batch["image"], train=False, method=type(model).encode_image)
    g = model.apply(variables, batch["input_ids"], batch["attention_mask"], train=False, method=type(model).encode_text)
    q = model.apply(variables, h, g, train=False, method=type(model)._posterior)
    p = model.apply(variables, h, train=False, method=lambda m, h, train: m.prior(h, train=train))
    np.testing.assert_allclose(kl, losses.kl_diag_gaussians(*q, *p), rtol=1e-4, atol=1e-6)
    assert np.all(np.asarray(kl) > 0)
    _, _, no_kl = inference.make_eval_step(model, mesh, num_samples=2)(
        state, sharding.shard_batch(batch, mesh), jax.random.key(0)
    )
    assert not np.any(np.asarray(no_kl))


@pytest.mark.parametrize(
    "kind, reached",
    [
        # From the image: the head and the image encoder, nothing of the label path's classifier.
        ("image_only_details", {"details_head", "image_encoder"}),
        # Decoded from z ~ q(z|t): the decoder, the posterior and the text encoder; not the
        # prior (the KL teaches it), the classifier, or the image encoder (q reads no image).
        ("vkd_details", {"details_head", "posterior", "text_encoder"}),
        # The control: the decoder and the constant-input posterior.
        ("vkd_control_details", {"details_head", "posterior"}),
    ],
)
def test_the_details_term_trains_only_the_path_it_is_predicted_from(kind, reached):
    cfg = _config(kind)
    model = create_model(cfg.model, num_classes=14, vocab_size=64, num_details=DETAILS)
    batch = _batch(5)
    noise = jax.random.normal(jax.random.key(2), (SAMPLES, BATCH, cfg.model.latent_dim))
    inputs = (batch["image"], batch["input_ids"], batch["attention_mask"], noise)
    variables = model.init(jax.random.key(0), *inputs, train=False)

    def details_term(params):
        out, _ = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]}, *inputs, train=True, mutable=["batch_stats"]
        )
        out.update(report_details=batch["report_details"], report_details_mask=batch["report_details_mask"])
        objective = losses.Objective(details_weight=1.0)
        return losses.vkd_loss(out, batch["labels"], batch["label_mask"], batch["mask"], objective)[1]["bce_details"]

    grads = jax.grad(details_term)(variables["params"])
    nonzero = {part for part, g in grads.items() if any(np.any(np.asarray(x) != 0) for x in jax.tree.leaves(g))}
    assert nonzero == reached
    assert "details_head" in variables["params"]
    # Prediction never reads the head: the image-only restore leaves it on disk.
    predict_params = jax.eval_shape(
        lambda: model.init(jax.random.key(0), batch["image"], None, None, noise, method=type(model).predict)
    )["params"]
    assert "details_head" not in predict_params
