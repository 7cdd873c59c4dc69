"""The VKD maths against closed forms, Monte Carlo estimates, sklearn and finite differences."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from sklearn.metrics import log_loss

from vkd_jax import losses


def _rand(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _samples(rng, mu, logvar, num_samples):
    """`num_samples` independent reparameterised draws, `[S, *mu.shape]` (as the model makes them)."""
    return losses.reparameterize(mu, logvar, jax.random.normal(rng, (num_samples, *mu.shape), mu.dtype))


def test_reparameterized_samples_have_the_moments_and_are_independent():
    mu = jnp.array([[1.0, -2.0, 0.5]])
    logvar = jnp.log(jnp.array([[0.25, 4.0, 1.0]]))
    z = _samples(jax.random.key(0), mu, logvar, num_samples=200_000)
    assert z.shape == (200_000, 1, 3)
    np.testing.assert_allclose(z.mean(0), mu, atol=0.02)
    # Each sample is one draw: the variance is the distribution's, not shrunk by averaging.
    np.testing.assert_allclose(z.var(0), jnp.exp(logvar), rtol=0.02)


def test_reparameterize_is_differentiable_in_mu_and_logvar():
    eps = jnp.array([[[0.3, -1.2]]])
    g_mu, g_logvar = jax.grad(lambda m, lv: losses.reparameterize(m, lv, eps).sum(), argnums=(0, 1))(
        jnp.zeros((1, 2)), jnp.zeros((1, 2))
    )
    np.testing.assert_allclose(g_mu, [[1.0, 1.0]])
    np.testing.assert_allclose(g_logvar, 0.5 * eps[0], rtol=1e-6)


def test_per_example_normal_depends_on_the_example_only():
    rng = jax.random.key(3)
    whole = losses.per_example_normal(rng, jnp.arange(8), (2, 5))
    assert whole.shape == (2, 8, 5)
    # The same global ids split in two (as on two devices) draw the same noise.
    halves = [losses.per_example_normal(rng, jnp.arange(4) + 4 * i, (2, 5)) for i in range(2)]
    np.testing.assert_array_equal(np.concatenate(halves, axis=1), whole)
    assert not np.allclose(whole[:, 0], whole[:, 1])
    assert not np.allclose(whole[0], whole[1])


@pytest.mark.parametrize(
    "mu_q, var_q, mu_p, var_p, expected",
    [
        (0.0, 1.0, 0.0, 1.0, 0.0),
        (1.0, 1.0, 0.0, 1.0, 0.5),
        (0.0, np.e, 0.0, 1.0, 0.5 * (np.e - 2.0)),
        (0.0, 1.0, 0.0, 4.0, 0.5 * (np.log(4.0) + 0.25 - 1.0)),
        (3.0, 2.0, 1.0, 0.5, 0.5 * (np.log(0.25) + (2.0 + 4.0) / 0.5 - 1.0)),
    ],
)
def test_kl_hand_computed(mu_q, var_q, mu_p, var_p, expected):
    f = lambda x: jnp.array([[x]], jnp.float32)
    kl = losses.kl_diag_gaussians(f(mu_q), jnp.log(f(var_q)), f(mu_p), jnp.log(f(var_p)))
    np.testing.assert_allclose(kl, [expected], rtol=1e-5, atol=1e-6)


def test_kl_sums_over_dims_and_matches_monte_carlo():
    mu_q, lv_q, mu_p, lv_p = (_rand((4,), s) * 0.7 for s in range(4))
    closed = losses.kl_diag_gaussians(mu_q, lv_q, mu_p, lv_p)
    z = np.asarray(_samples(jax.random.key(1), mu_q, lv_q, 400_000), np.float64)

    def log_normal(x, mu, lv):
        return -0.5 * (np.log(2 * np.pi) + lv + (x - mu) ** 2 / np.exp(lv))

    mc = np.mean(np.sum(log_normal(z, mu_q, lv_q) - log_normal(z, mu_p, lv_p), axis=-1))
    np.testing.assert_allclose(closed, mc, rtol=0.02, atol=0.01)
    per_dim = [
        losses.kl_diag_gaussians(mu_q[i : i + 1], lv_q[i : i + 1], mu_p[i : i + 1], lv_p[i : i + 1]) for i in range(4)
    ]
    np.testing.assert_allclose(closed, np.sum(per_dim), rtol=1e-5)


def test_kl_is_not_symmetric():
    a = (jnp.zeros(2), jnp.zeros(2))
    b = (jnp.ones(2), jnp.log(jnp.full(2, 3.0)))
    assert not np.isclose(losses.kl_diag_gaussians(*a, *b), losses.kl_diag_gaussians(*b, *a))


def test_kl_gradient_matches_finite_differences():
    args = tuple(jnp.asarray(_rand((3, 5), s) * 0.5) for s in range(4))
    check_grads(lambda *a: losses.kl_diag_gaussians(*a).sum(), args, order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


def _numpy_bce(logits, labels, pos_weight=None):
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    pw = 1.0 if pos_weight is None else pos_weight
    return -(pw * labels * np.log(p) + (1 - labels) * np.log(1 - p))


def test_bce_matches_sklearn_log_loss():
    logits = _rand((16, 14), 0) * 2
    labels = (np.random.default_rng(1).random((16, 14)) < 0.3).astype(np.float32)
    total, count = losses.bce_with_logits(jnp.asarray(logits), jnp.asarray(labels))
    expected = log_loss(labels.ravel(), 1 / (1 + np.exp(-logits.ravel().astype(np.float64))))
    np.testing.assert_allclose(total / count, expected, rtol=1e-5)
    assert count == 16 * 14


def test_bce_pos_weight_mask_and_samples():
    logits = _rand((3, 8, 4), 2) * 3  # S=3 samples
    labels = (np.random.default_rng(3).random((8, 4)) < 0.5).astype(np.float32)
    mask = (np.random.default_rng(4).random((8, 4)) < 0.7).astype(np.float32)
    pos_weight = np.array([0.5, 1.0, 2.0, 4.0], np.float32)
    total, count = losses.bce_with_logits(
        jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(pos_weight), jnp.asarray(mask)
    )
    expected = _numpy_bce(logits, labels, pos_weight) * mask
    np.testing.assert_allclose(total, expected.sum(), rtol=1e-5)
    np.testing.assert_allclose(count, 3 * mask.sum())


def test_bce_is_finite_for_extreme_logits():
    total, _ = losses.bce_with_logits(jnp.array([[100.0, -100.0]]), jnp.array([[0.0, 1.0]]))
    np.testing.assert_allclose(total, 200.0, rtol=1e-6)


def _outputs(seed, batch=6, s=2, k=14, d=3):
    r = np.random.default_rng(seed)
    n = lambda *shape: jnp.asarray(r.normal(size=shape), jnp.float32)
    return {
        "logits": n(s, batch, k),
        "prior_logits": n(s, batch, k),
        "posterior": (n(batch, d), n(batch, d)),
        "prior": (n(batch, d), n(batch, d)),
    }


def test_vkd_loss_is_the_weighted_sum_of_its_terms():
    out = _outputs(0)
    labels = jnp.asarray((np.random.default_rng(1).random((6, 14)) < 0.3), jnp.float32)
    ones = jnp.ones((6, 14))
    objective = losses.Objective(beta=4.2, prior_weight=0.7)
    loss, terms = losses.vkd_loss(out, labels, ones, jnp.ones(6), objective, kl_scale=0.5)
    bce = np.mean(_numpy_bce(np.asarray(out["logits"]), np.asarray(labels)))
    bce_prior = np.mean(_numpy_bce(np.asarray(out["prior_logits"]), np.asarray(labels)))
    kl = np.mean(losses.kl_diag_gaussians(*out["posterior"], *out["prior"]))
    np.testing.assert_allclose([terms["bce"], terms["kl"], terms["bce_prior"]], [bce, kl, bce_prior], rtol=1e-5)
    # With no label masked, the data terms are per-label means and the KL is divided by K = 14.
    np.testing.assert_allclose(loss, bce + 4.2 * 0.5 * kl / 14 + 0.7 * bce_prior, rtol=1e-5)
    # Without a prior (image_only) the loss is the data term alone.
    loss_img, terms_img = losses.vkd_loss({"logits": out["logits"]}, labels, ones, jnp.ones(6), objective)
    assert set(terms_img) == {"bce", "loss"}
    np.testing.assert_allclose(loss_img, bce, rtol=1e-5)


def test_beta_one_is_the_negative_elbo():
    """K * loss at beta = 1 equals -E_q[log p(y|x,z)] + KL(q || p) per example, averaged over
    the batch; masked labels and padding rows contribute nothing (computed here in float64
    from the Bernoulli log-likelihood and the Gaussians' densities by Monte Carlo)."""
    out = _outputs(7, batch=5, s=3, k=14, d=4)
    r = np.random.default_rng(8)
    labels = (r.random((5, 14)) < 0.3).astype(np.float32)
    label_mask = (r.random((5, 14)) < 0.8).astype(np.float32)
    example_mask = np.array([1, 1, 1, 1, 0], np.float32)
    loss, _ = losses.vkd_loss(
        out, jnp.asarray(labels), jnp.asarray(label_mask), jnp.asarray(example_mask), losses.Objective(beta=1.0)
    )
    logits = np.asarray(out["logits"], np.float64)  # [S, B, K]
    log_lik = labels * -np.logaddexp(0, -logits) + (1 - labels) * -np.logaddexp(0, logits)
    nll = -np.sum(log_lik * label_mask, axis=-1).mean(axis=0)  # [B]: summed over labels, mean over samples
    (mu_q, lv_q), (mu_p, lv_p) = (tuple(np.asarray(x, np.float64) for x in out[k]) for k in ("posterior", "prior"))
    z = mu_q + np.exp(0.5 * lv_q) * r.normal(size=(200_000,) + mu_q.shape)

    def log_normal(x, mu, lv):
        return -0.5 * np.sum(np.log(2 * np.pi) + lv + (x - mu) ** 2 / np.exp(lv), axis=-1)

    kl_mc = np.mean(log_normal(z, mu_q, lv_q) - log_normal(z, mu_p, lv_p), axis=0)  # [B]
    neg_elbo = np.sum((nll + kl_mc) * example_mask) / example_mask.sum()
    np.testing.assert_allclose(14 * loss, neg_elbo, rtol=0.01)


def _kl_grads(objective, seed=11, batch=4, d=3):
    r = np.random.default_rng(seed)
    post = tuple(jnp.asarray(r.normal(size=(batch, d)) * 0.5, jnp.float32) for _ in range(2))
    prior = tuple(jnp.asarray(r.normal(size=(batch, d)) * 0.5, jnp.float32) for _ in range(2))
    f = lambda q, p: losses.kl_term(q, p, jnp.ones(batch), objective)[0]
    return f(post, prior), jax.grad(f, argnums=(0, 1))(post, prior)


def test_balanced_kl_routes_its_gradient_to_the_intended_side():
    plain_value, (plain_q, plain_p) = _kl_grads(losses.Objective())
    zero = lambda tree: all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(tree))
    # alpha = 1: only the prior is pulled; the posterior pays nothing.
    value, (g_q, g_p) = _kl_grads(losses.Objective(kl_balance=1.0))
    np.testing.assert_allclose(value, plain_value, rtol=1e-6)
    assert zero(g_q) and not zero(g_p)
    chex.assert_trees_all_close(g_p, plain_p, rtol=1e-5)
    # alpha = 0: only the posterior.
    _, (g_q, g_p) = _kl_grads(losses.Objective(kl_balance=0.0))
    assert zero(g_p)
    chex.assert_trees_all_close(g_q, plain_q, rtol=1e-5)
    # In between, each side gets its share of the plain KL's gradient.
    _, (g_q, g_p) = _kl_grads(losses.Objective(kl_balance=0.8))
    chex.assert_trees_all_close(g_p, jax.tree.map(lambda g: 0.8 * g, plain_p), rtol=1e-5)
    chex.assert_trees_all_close(g_q, jax.tree.map(lambda g: 0.2 * g, plain_q), rtol=1e-5)


def test_free_bits_has_no_gradient_below_the_floor():
    plain_value, (plain_q, plain_p) = _kl_grads(losses.Objective())
    zero = lambda tree: all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(tree))
    # A total floor above the KL: constant, no gradient.
    value, grads = _kl_grads(losses.Objective(free_bits=float(plain_value) + 1.0))
    np.testing.assert_allclose(value, float(plain_value) + 1.0, rtol=1e-6)
    assert zero(grads)
    # A floor below it changes nothing.
    value, grads = _kl_grads(losses.Objective(free_bits=float(plain_value) / 2))
    np.testing.assert_allclose(value, plain_value, rtol=1e-6)
    chex.assert_trees_all_close(grads, (plain_q, plain_p), rtol=1e-6)
    # Per dimension: dimensions whose batch-mean KL is under the floor get no gradient.
    r = np.random.default_rng(11)
    post = tuple(jnp.asarray(r.normal(size=(4, 3)) * 0.5, jnp.float32) for _ in range(2))
    prior = tuple(jnp.asarray(r.normal(size=(4, 3)) * 0.5, jnp.float32) for _ in range(2))
    per_dim = np.asarray(losses.kl_diag_gaussians_per_dim(*post, *prior)).mean(0)
    floor = float(np.sort(per_dim)[:2].mean())  # between two dimensions, equal to none
    value, (g_q, g_p) = _kl_grads(losses.Objective(free_bits=floor, free_bits_per_dim=True))
    np.testing.assert_allclose(value, np.maximum(per_dim, floor).sum(), rtol=1e-5)
    below = per_dim < floor
    assert below.any() and (~below).any()
    for g, plain in ((g_q, plain_q), (g_p, plain_p)):
        for x, y in zip(g, plain):
            assert np.all(np.asarray(x)[:, below] == 0)
            np.testing.assert_allclose(np.asarray(x)[:, ~below], np.asarray(y)[:, ~below], rtol=1e-5)


def test_distill_loss_mixes_labels_and_the_teachers_tempered_predictions():
    r = np.random.default_rng(12)
    student = r.normal(size=(1, 6, 14)).astype(np.float32)
    teacher = r.normal(size=(1, 6, 14)).astype(np.float32) * 3
    labels = (r.random((6, 14)) < 0.3).astype(np.float32)
    objective = losses.Objective(distill_weight=0.3, distill_temperature=2.0)
    out = {"logits": jnp.asarray(student), "teacher_logits": jnp.asarray(teacher)}
    loss, terms = losses.vkd_loss(out, jnp.asarray(labels), jnp.ones((6, 14)), jnp.ones(6), objective)
    soft = 1 / (1 + np.exp(-teacher.astype(np.float64) / 2.0))
    expected = (
        np.mean(_numpy_bce(teacher, labels))
        + 0.7 * np.mean(_numpy_bce(student, labels))
        + 0.3 * np.mean(_numpy_bce(student, soft))
    )
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    # The soft targets are constants: the student's term sends no gradient to the teacher.
    g = jax.grad(
        lambda t: losses.vkd_loss(
            {"logits": jnp.asarray(student), "teacher_logits": t},
            jnp.asarray(labels),
            jnp.ones((6, 14)),
            jnp.ones(6),
            objective,
        )[0]
    )(jnp.asarray(teacher))
    g_alone = jax.grad(
        lambda t: losses.vkd_loss({"logits": t}, jnp.asarray(labels), jnp.ones((6, 14)), jnp.ones(6), objective)[0]
    )(jnp.asarray(teacher))
    np.testing.assert_allclose(g, g_alone, rtol=1e-5)


def test_report_words_is_the_bag_of_tokens():
    ids = jnp.array([[2, 5, 5, 7, 0, 0], [2, 3, 9, 0, 0, 0]], jnp.int32)
    mask = (ids > 0).astype(jnp.int32)
    bag = np.asarray(losses.report_words(ids, mask, 10))
    expected = np.zeros((2, 10))
    expected[0, [2, 5, 7]] = 1
    expected[1, [2, 3, 9]] = 1
    np.testing.assert_array_equal(bag, expected)
    hashed = np.asarray(losses.report_words(ids, mask, 4))  # ids modulo 4
    np.testing.assert_array_equal(hashed, [[0, 1, 1, 1], [0, 1, 1, 1]])


def test_vkd_loss_over_a_mapped_axis_equals_the_whole_batch():
    """Shards with different masks still give the global loss (sums and counts psum'd)."""
    out = _outputs(5, batch=8)
    r = np.random.default_rng(6)
    labels = jnp.asarray(r.random((8, 14)) < 0.3, jnp.float32)
    label_mask = jnp.asarray(r.random((8, 14)) < 0.6, jnp.float32)
    example_mask = jnp.array([1, 1, 1, 1, 1, 1, 0, 0], jnp.float32)
    for objective in (
        losses.Objective(beta=1.4, prior_weight=0.5),
        losses.Objective(beta=1.4, kl_balance=0.8, free_bits=0.3, free_bits_per_dim=True),
    ):
        whole, _ = losses.vkd_loss(out, labels, label_mask, example_mask, objective)

        def shard(x, axis):
            return jnp.stack(jnp.split(x, 4, axis=axis))

        sharded_out = {
            "logits": shard(out["logits"], 1),
            "prior_logits": shard(out["prior_logits"], 1),
            "posterior": tuple(shard(x, 0) for x in out["posterior"]),
            "prior": tuple(shard(x, 0) for x in out["prior"]),
        }
        mapped = jax.vmap(
            lambda o, y, m, e: losses.vkd_loss(o, y, m, e, objective, axis_name="data")[0], axis_name="data"
        )
        per_shard = mapped(sharded_out, shard(labels, 0), shard(label_mask, 0), shard(example_mask, 0))
        np.testing.assert_allclose(per_shard, np.full(4, whole), rtol=1e-6)


def test_details_term_is_the_masked_bce_summed_over_stated_bits_per_label_slot():
    """bce_details = sum over examples, samples and stated detail bits of the BCE, divided by
    (examples x samples x K): padding rows and unstated bits cost nothing, and D plays no part."""
    r = np.random.default_rng(21)
    s, b, d, k = 3, 5, 9, 14
    details = r.normal(size=(s, b, d)).astype(np.float32) * 2
    targets = (r.random((b, d)) < 0.4).astype(np.float32)
    mask = (r.random((b, d)) < 0.5).astype(np.float32)
    example_mask = np.array([1, 1, 1, 1, 0], np.float32)
    out = _outputs(22, batch=b, s=s, k=k)
    labels = jnp.asarray(r.random((b, k)) < 0.3, jnp.float32)
    with_details = dict(
        out, details_logits=jnp.asarray(details), report_details=targets, report_details_mask=jnp.asarray(mask)
    )
    objective = losses.Objective(beta=1.0, prior_weight=0.5, details_weight=0.3)
    loss, terms = losses.vkd_loss(with_details, labels, jnp.ones((b, k)), jnp.asarray(example_mask), objective)
    # By hand: one example, one sample and one bit at a time.
    total = sum(
        example_mask[i]
        * mask[i, j]
        * -np.log(1 / (1 + np.exp(-details[t, i, j] if targets[i, j] else details[t, i, j])))
        for t in range(s)
        for i in range(b)
        for j in range(d)
    )
    np.testing.assert_allclose(terms["bce_details"], total / (4 * s * k), rtol=1e-5)
    plain, plain_terms = losses.vkd_loss(out, labels, jnp.ones((b, k)), jnp.asarray(example_mask), objective)
    assert "bce_details" not in plain_terms
    np.testing.assert_allclose(loss, plain + 0.3 * terms["bce_details"], rtol=1e-5)
    # Its gradient reaches the details logits alone (the other outputs' gradients are unchanged).
    grad = lambda o: jax.grad(
        lambda o: losses.vkd_loss(o, labels, jnp.ones((b, k)), jnp.asarray(example_mask), objective)[0]
    )(o)
    g, g_plain = grad(with_details), grad(out)
    chex.assert_trees_all_close({key: g[key] for key in out}, g_plain, rtol=1e-6)
    assert np.all(np.asarray(g["details_logits"])[:, ~(example_mask > 0)] == 0)
    assert np.all(np.asarray(g["details_logits"]) * (1 - mask)[None] == 0)
    assert np.any(np.asarray(g["details_logits"]) != 0)


def test_details_term_over_a_mapped_axis_equals_the_whole_batch():
    r = np.random.default_rng(23)
    out = _outputs(24, batch=8)
    out["details_logits"] = jnp.asarray(r.normal(size=(2, 8, 7)), jnp.float32)
    out["report_details"] = jnp.asarray(r.random((8, 7)) < 0.5, jnp.float32)
    out["report_details_mask"] = jnp.asarray(r.random((8, 7)) < 0.5, jnp.float32)
    labels = jnp.asarray(r.random((8, 14)) < 0.3, jnp.float32)
    label_mask = jnp.ones((8, 14))
    example_mask = jnp.array([1, 1, 1, 1, 1, 0, 1, 0], jnp.float32)
    objective = losses.Objective(beta=1.0, details_weight=2.0)
    whole, whole_terms = losses.vkd_loss(out, labels, label_mask, example_mask, objective)
    shard = lambda x, axis: jnp.stack(jnp.split(x, 4, axis=axis))
    axes = {"logits": 1, "prior_logits": 1, "details_logits": 1, "report_details": 0, "report_details_mask": 0}
    sharded = {key: shard(v, axes[key]) if key in axes else tuple(shard(x, 0) for x in v) for key, v in out.items()}
    mapped = jax.vmap(
        lambda o, y, m, e: losses.vkd_loss(o, y, m, e, objective, axis_name="data")[1]["bce_details"],
        axis_name="data",
    )
    per_shard = mapped(sharded, shard(labels, 0), shard(label_mask, 0), shard(example_mask, 0))
    np.testing.assert_allclose(per_shard, np.full(4, whole_terms["bce_details"]), rtol=1e-6)


def test_distill_keep_positives_floors_the_soft_targets_at_the_labels():
    """With `distill_keep_positives` the soft target is max(sigmoid(teacher / T), label): a
    positive's is 1, a 0 label's the teacher's; label and example masks apply as before."""
    # By hand, one example, two slots at student logit 1 and teacher logit 0 (soft 0.5 at any T):
    # label 1 -> target 1, label 0 -> target 0.5.
    s = 1.0
    log_p, log_not_p = -np.log1p(np.exp(-s)), -np.log1p(np.exp(s))
    hard = (-log_p - log_not_p) / 2  # BCE to the labels (1, 0), per slot
    soft = (-log_p - 0.5 * (log_p + log_not_p)) / 2  # to the targets (1, 0.5)
    out = {"logits": jnp.full((1, 1, 2), s), "teacher_logits": jnp.zeros((1, 2))}
    objective = losses.Objective(distill_weight=0.3, distill_temperature=2.0, distill_keep_positives=True)
    _, terms = losses.vkd_loss(out, jnp.array([[1.0, 0.0]]), jnp.ones((1, 2)), jnp.ones(1), objective)
    np.testing.assert_allclose(terms["bce"], hard, rtol=1e-6)
    np.testing.assert_allclose(terms["bce_soft"], soft, rtol=1e-6)
    np.testing.assert_allclose(terms["loss"], terms["bce_teacher"] + 0.7 * hard + 0.3 * soft, rtol=1e-6)

    r = np.random.default_rng(13)
    student = jnp.asarray(r.normal(size=(1, 6, 14)), jnp.float32)
    teacher = jnp.asarray(r.normal(size=(1, 6, 14)) * 3, jnp.float32)
    labels = jnp.asarray(r.random((6, 14)) < 0.3, jnp.float32)
    label_mask = jnp.asarray(r.random((6, 14)) < 0.8, jnp.float32)
    example_mask = jnp.array([1, 1, 1, 1, 1, 0], jnp.float32)

    def loss(student, teacher, keep=True):
        objective = losses.Objective(distill_weight=0.3, distill_temperature=2.0, distill_keep_positives=keep)
        out = {"logits": student, "teacher_logits": teacher}
        return losses.vkd_loss(out, labels, label_mask, example_mask, objective)

    _, terms = loss(student, teacher)
    target = np.maximum(1 / (1 + np.exp(-np.asarray(teacher, np.float64) / 2.0)), np.asarray(labels))
    mask = np.asarray(label_mask * example_mask[:, None])
    expected = np.sum(_numpy_bce(np.asarray(student), target) * mask) / (5 * 14)
    np.testing.assert_allclose(terms["bce_soft"], expected, rtol=1e-5)
    # Off, the pre-registered study's soft term (positives take the teacher's target too).
    _, old = loss(student, teacher, keep=False)
    assert float(old["bce_soft"]) != pytest.approx(float(terms["bce_soft"]))
    np.testing.assert_allclose(old["bce_teacher"], terms["bce_teacher"])

    # Gradient paths: the teacher learns from the labels alone (its gradient is that of its own
    # BCE); on a positive the student's gradient is image_only's (the label's), on a 0 label
    # the mix of the label and the teacher.
    def plain_bce(logits):  # image_only's loss
        return losses.vkd_loss({"logits": logits}, labels, label_mask, example_mask, losses.Objective())[0]

    g_teacher = jax.grad(lambda t: loss(student, t)[0])(teacher)
    g_alone = jax.grad(plain_bce)(teacher)
    np.testing.assert_allclose(g_teacher, g_alone, rtol=1e-5)
    g_student = np.asarray(jax.grad(lambda x: loss(x, teacher)[0])(student))
    g_hard = np.asarray(jax.grad(plain_bce)(student))
    pos, neg = np.asarray(labels * mask) > 0, np.asarray((1 - labels) * mask) > 0
    np.testing.assert_allclose(g_student[0][pos], g_hard[0][pos], rtol=1e-5)
    sig = 1 / (1 + np.exp(-np.asarray(student[0], np.float64)))
    mixed = (sig - 0.3 * target[0]) / (5 * 14)  # labels are 0 here: sigmoid(s) - (0.7 * 0 + 0.3 * q)
    np.testing.assert_allclose(g_student[0][neg], mixed[neg], rtol=1e-4)
    assert np.all(g_student[0][mask == 0] == 0)
