"""The VKD maths against closed forms, Monte Carlo estimates, sklearn and finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from sklearn.metrics import log_loss

from vkd_jax import losses


def _rand(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_sample_gaussian_moments_and_independence():
    mu = jnp.array([[1.0, -2.0, 0.5]])
    logvar = jnp.log(jnp.array([[0.25, 4.0, 1.0]]))
    z = losses.sample_gaussian(jax.random.key(0), mu, logvar, num_samples=200_000)
    assert z.shape == (200_000, 1, 3)
    np.testing.assert_allclose(z.mean(0), mu, atol=0.02)
    # Each sample is one draw: the variance is the distribution's, not shrunk by averaging.
    np.testing.assert_allclose(z.var(0), jnp.exp(logvar), rtol=0.02)


def test_reparameterize_is_differentiable_in_mu_and_logvar():
    eps = jnp.array([[[0.3, -1.2]]])
    g_mu, g_logvar = jax.grad(lambda m, lv: losses.reparameterize(m, lv, eps).sum(), argnums=(0, 1))(
        jnp.zeros((1, 2)), jnp.zeros((1, 2)))
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
    z = np.asarray(losses.sample_gaussian(jax.random.key(1), mu_q, lv_q, 400_000), np.float64)

    def log_normal(x, mu, lv):
        return -0.5 * (np.log(2 * np.pi) + lv + (x - mu) ** 2 / np.exp(lv))

    mc = np.mean(np.sum(log_normal(z, mu_q, lv_q) - log_normal(z, mu_p, lv_p), axis=-1))
    np.testing.assert_allclose(closed, mc, rtol=0.02, atol=0.01)
    per_dim = [losses.kl_diag_gaussians(mu_q[i:i+1], lv_q[i:i+1], mu_p[i:i+1], lv_p[i:i+1]) for i in range(4)]
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
    total, count = losses.bce_with_logits(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(pos_weight),
                                          jnp.asarray(mask))
    expected = _numpy_bce(logits, labels, pos_weight) * mask
    np.testing.assert_allclose(total, expected.sum(), rtol=1e-5)
    np.testing.assert_allclose(count, 3 * mask.sum())


def test_bce_is_finite_for_extreme_logits():
    total, _ = losses.bce_with_logits(jnp.array([[100.0, -100.0]]), jnp.array([[0.0, 1.0]]))
    np.testing.assert_allclose(total, 200.0, rtol=1e-6)


def _outputs(seed, batch=6, s=2, k=14, d=3):
    r = np.random.default_rng(seed)
    n = lambda *shape: jnp.asarray(r.normal(size=shape), jnp.float32)
    return {"logits": n(s, batch, k), "prior_logits": n(s, batch, k),
            "posterior": (n(batch, d), n(batch, d)), "prior": (n(batch, d), n(batch, d))}


def test_vkd_loss_is_the_weighted_sum_of_its_terms():
    out = _outputs(0)
    labels = jnp.asarray((np.random.default_rng(1).random((6, 14)) < 0.3), jnp.float32)
    ones = jnp.ones((6, 14))
    loss, terms = losses.vkd_loss(out, labels, ones, jnp.ones(6), kl_weight=0.3, prior_weight=0.7)
    bce = np.mean(_numpy_bce(np.asarray(out["logits"]), np.asarray(labels)))
    bce_prior = np.mean(_numpy_bce(np.asarray(out["prior_logits"]), np.asarray(labels)))
    kl = np.mean(losses.kl_diag_gaussians(*out["posterior"], *out["prior"]))
    np.testing.assert_allclose([terms["bce"], terms["kl"], terms["bce_prior"]], [bce, kl, bce_prior], rtol=1e-5)
    np.testing.assert_allclose(loss, bce + 0.3 * kl + 0.7 * bce_prior, rtol=1e-5)
    # Without a prior (image_only) the loss is the data term alone.
    loss_img, terms_img = losses.vkd_loss({"logits": out["logits"]}, labels, ones, jnp.ones(6), kl_weight=0.3)
    assert set(terms_img) == {"bce", "loss"}
    np.testing.assert_allclose(loss_img, bce, rtol=1e-5)


def test_vkd_loss_over_a_mapped_axis_equals_the_whole_batch():
    """Shards with different masks still give the global loss (sums and counts psum'd)."""
    out = _outputs(5, batch=8)
    r = np.random.default_rng(6)
    labels = jnp.asarray(r.random((8, 14)) < 0.3, jnp.float32)
    label_mask = jnp.asarray(r.random((8, 14)) < 0.6, jnp.float32)
    example_mask = jnp.array([1, 1, 1, 1, 1, 1, 0, 0], jnp.float32)
    kw = dict(kl_weight=0.1, prior_weight=0.5)
    whole, _ = losses.vkd_loss(out, labels, label_mask, example_mask, **kw)

    def shard(x, axis):
        return jnp.stack(jnp.split(x, 4, axis=axis))

    sharded_out = {
        "logits": shard(out["logits"], 1), "prior_logits": shard(out["prior_logits"], 1),
        "posterior": tuple(shard(x, 0) for x in out["posterior"]), "prior": tuple(shard(x, 0) for x in out["prior"]),
    }
    mapped = jax.vmap(lambda o, y, m, e: losses.vkd_loss(o, y, m, e, axis_name="data", **kw)[0], axis_name="data")
    per_shard = mapped(sharded_out, shard(labels, 0), shard(label_mask, 0), shard(example_mask, 0))
    np.testing.assert_allclose(per_shard, np.full(4, whole), rtol=1e-6)
