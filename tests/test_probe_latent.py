"""The latent probe's pieces: the ridge readout against scikit-learn, the detail groups, and
the representations and parsed details of a trained run."""

import numpy as np
from sklearn.linear_model import Ridge

from data_pipelines.synthetic_cxr import report_details
from studies import probe_latent


def test_ridge_readout_matches_sklearn():
    r = np.random.default_rng(0)
    x = r.normal(size=(200, 7)) * r.uniform(0.5, 3, 7) + 1.0
    y = r.normal(size=(200, 3))
    fit = probe_latent.ridge_fit(x, y, 5.0)
    z = (x - x.mean(0)) / (x.std(0) + 1e-6)
    ref = Ridge(alpha=5.0).fit(z, y)
    np.testing.assert_allclose(probe_latent.ridge_predict(fit, x), ref.predict(z), rtol=1e-6, atol=1e-8)


def test_a_masked_readout_fits_each_column_on_its_stated_rows_only():
    r = np.random.default_rng(1)
    x = r.normal(size=(300, 5))
    y = (r.normal(size=(300, 2)) > 0).astype(float)
    mask = np.stack([r.random(300) < 0.3, np.ones(300, bool)], axis=1).astype(float)
    fit = probe_latent.ridge_fit(x, y, 2.0, mask)
    z = (x - x.mean(0)) / (x.std(0) + 1e-6)
    for t in range(2):
        rows = mask[:, t] > 0
        ref = Ridge(alpha=2.0).fit(z[rows], y[rows, t])
        np.testing.assert_allclose(probe_latent.ridge_predict(fit, x)[:, t], ref.predict(z), rtol=1e-6, atol=1e-8)


def test_a_column_with_fewer_stated_rows_than_features_is_the_same_ridge_in_its_dual():
    r = np.random.default_rng(2)
    x = r.normal(size=(200, 30))
    y = r.normal(size=(200, 1))
    mask = (np.arange(200) < 12)[:, None].astype(float)  # 12 stated rows, 30 features
    fit = probe_latent.ridge_fit(x, y, 3.0, mask)
    z = (x - x.mean(0)) / (x.std(0) + 1e-6)
    ref = Ridge(alpha=3.0).fit(z[:12], y[:12, 0])
    np.testing.assert_allclose(probe_latent.ridge_predict(fit, x)[:, 0], ref.predict(z), rtol=1e-6, atol=1e-8)


def test_readouts_at_several_strengths_share_rows_and_each_is_sklearns():
    """Columns stated on the same rows are solved together, in the primal (many rows) and in
    the dual (few), once per strength: each readout is still that column's own ridge."""
    r = np.random.default_rng(3)
    x = r.normal(size=(120, 9)) * r.uniform(0.5, 2, 9)
    y = r.normal(size=(120, 5))
    many, few = r.random(120) < 0.6, np.arange(120) < 6  # 6 stated rows < 9 features
    mask = np.stack([many, many, few, few, np.zeros(120, bool)], axis=1).astype(float)
    z = (x - x.mean(0)) / (x.std(0) + 1e-6)
    lams = (0.5, 4.0)
    for lam, fit in zip(lams, probe_latent.ridge_fits(x, y, lams, mask)):
        predicted = probe_latent.ridge_predict(fit, x)
        for t in range(4):
            rows = mask[:, t] > 0
            ref = Ridge(alpha=lam).fit(z[rows], y[rows, t])
            np.testing.assert_allclose(predicted[:, t], ref.predict(z), rtol=1e-6, atol=1e-8, err_msg=f"{lam} {t}")
        np.testing.assert_array_equal(fit[2][:, 4], 0.0)  # a column stated nowhere is not fitted


def test_the_detail_groups_are_the_parsed_details_but_presence():
    names = report_details.DETAIL_NAMES
    grouped = np.sum([probe_latent.COLUMNS[g] for g in probe_latent.GROUPS], axis=0)
    assert grouped.max() == 1  # no detail in two groups
    assert [n for n, g in zip(names, grouped) if not g] == [n for n in names if n.endswith(": present")]
    assert {names[i] for i in np.flatnonzero(probe_latent.COLUMNS["zone"])} >= {
        "Lung Lesion: upper",
        "Lung Lesion: lower",
    }
    assert probe_latent.COLUMNS["rib"].sum() == 5 and probe_latent.COLUMNS["devices"].sum() == 4


def test_features_of_a_trained_run(trained):
    """The probe restores a run's best checkpoint and reads its representations per example."""
    workdir, _ = trained  # tests/conftest.py: a tiny vkd run of configs/demo_scratch.py
    data = probe_latent.features(str(workdir), "validation")
    n = len(data["image_id"])
    assert n == 64  # every validation example once (tests/e2e.py: num_validation=64)
    assert data["mu_p(x)"].shape == data["mu_q(x,t)"].shape == (n, 8)  # latent_dim 8
    assert data["h(x)"].shape[0] == n and data["labels"].shape == (n, 14)
    assert not np.allclose(data["mu_p(x)"], data["mu_q(x,t)"])
    assert data["g(t)"].shape[0] == n  # the report features: the probe's ceiling
    d = len(report_details.DETAIL_NAMES)
    assert data["report_details"].shape == data["report_details_mask"].shape == (n, d)
    assert (data["report_details_mask"][:, report_details.DETAIL_NAMES.index("Edema: present")] == 1).all()
