import jax
import ml_collections
import numpy as np
import pytest

from vkd_jax import schedules


def test_constant():
    assert float(schedules.constant(0.3)(12345)) == pytest.approx(0.3)


def test_linear_warmup():
    s = schedules.linear_warmup(2.0, 100)
    np.testing.assert_allclose([s(0), s(25), s(100), s(1000)], [0.0, 0.5, 2.0, 2.0], rtol=1e-6)
    assert float(schedules.linear_warmup(2.0, 0)(0)) == 2.0


def test_cyclical_linear_matches_the_reference_shape():
    s = jax.jit(schedules.cyclical_linear(1.0, period=100, ratio=0.5))
    steps = [0, 25, 50, 75, 99, 100, 125, 150, 210]
    expected = [0.0, 0.5, 1.0, 1.0, 1.0, 0.0, 0.5, 1.0, 0.2]
    np.testing.assert_allclose([s(t) for t in steps], expected, atol=1e-6)


def test_create_kl_schedule_from_config():
    # The schedule is the factor on train.beta, which it does not read.
    cfg = ml_collections.ConfigDict(
        dict(kl_schedule="cyclical", kl_warmup_steps=10, kl_cycles_per_epoch=4.0, kl_cycle_ratio=0.5)
    )
    s = schedules.create_kl_schedule(cfg, steps_per_epoch=400)  # period 100
    np.testing.assert_allclose([s(0), s(25), s(60), s(100)], [0.0, 0.5, 1.0, 0.0], rtol=1e-5)
    cfg.kl_schedule = "linear"
    np.testing.assert_allclose(schedules.create_kl_schedule(cfg, 400)(5), 0.5, rtol=1e-5)
    np.testing.assert_allclose(schedules.create_kl_schedule(cfg, 400)(50), 1.0, rtol=1e-5)
    cfg.kl_schedule = "constant"
    np.testing.assert_allclose(schedules.create_kl_schedule(cfg, 400)(0), 1.0, rtol=1e-5)
    cfg.kl_schedule = "sawtooth"
    with pytest.raises(ValueError, match="kl_schedule"):
        schedules.create_kl_schedule(cfg, 400)
    with pytest.raises(ValueError, match="period"):
        schedules.cyclical_linear(1.0, period=0)
