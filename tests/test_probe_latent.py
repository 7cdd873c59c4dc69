"""The latent probe's pieces: the ridge readout against scikit-learn, the detail targets
against the synthetic generator's own studies."""

import numpy as np
from sklearn.linear_model import Ridge

from data_pipelines import labels as L
from data_pipelines.synthetic_cxr import findings, generator
from studies import probe_latent


def test_ridge_readout_matches_sklearn():
    r = np.random.default_rng(0)
    x = r.normal(size=(200, 7)) * r.uniform(0.5, 3, 7) + 1.0
    y = r.normal(size=(200, 3))
    fit = probe_latent.ridge_fit(x, y, 5.0)
    z = (x - x.mean(0)) / (x.std(0) + 1e-6)
    ref = Ridge(alpha=5.0).fit(z, y)
    np.testing.assert_allclose(probe_latent.ridge_predict(fit, x), ref.predict(z), rtol=1e-6, atol=1e-8)


def test_detail_targets_are_the_studys_details():
    ids, studies = [], []
    for index in range(60):
        ex = generator.generate_example(index, seed=2, image_size=8)
        ids.append(ex["image_id"])
        studies.append(findings.sample_study(np.random.default_rng(np.random.SeedSequence([2, index]).spawn(3)[0])))
    y, m, names = probe_latent.detail_targets(ids, seed=2)
    assert y.shape == m.shape == (60, len(names))
    col = names.index("Pleural Effusion: right")
    for i, study in enumerate(studies):
        present = study.labels[L.CLASS_NAMES.index("Pleural Effusion")] in (1, -1)
        side = study.details["Pleural Effusion"].side
        assert m[i, col] == (present and side != "bilateral")
        if m[i, col]:
            assert y[i, col] == (side == "right")
    devices = [names.index(f"device: {d}") for d in findings.DEVICES]
    with_devices = m[:, devices[0]].astype(bool)
    assert with_devices.any()
    assert np.all(y[with_devices][:, devices].sum(1) >= 1)  # a present "Support Devices" has some device
    assert m[:, names.index("Edema: not mild")].sum() == sum(
        s.labels[L.CLASS_NAMES.index("Edema")] in (1, -1) for s in studies
    )


def test_features_of_a_trained_run(trained):
    """The probe restores a run's best checkpoint and reads its representations per example."""
    workdir, _ = trained  # tests/conftest.py: a tiny vkd run of configs/demo_scratch.py
    data = probe_latent.features(str(workdir), "validation")
    n = len(data["image_id"])
    assert n == 64  # every validation example once (tests/e2e.py: num_validation=64)
    assert data["mu_p(x)"].shape == data["mu_q(x,t)"].shape == (n, 8)  # latent_dim 8
    assert data["h(x)"].shape[0] == n and data["labels"].shape == (n, 14)
    assert not np.allclose(data["mu_p(x)"], data["mu_q(x,t)"])
