import jax
import jax.numpy as jnp
import numpy as np
import optax

from vkd_jax import train
from vkd_jax.runs import checkpoint


def _state(step, value):
    params = {"w": jnp.full((3,), value, jnp.float32)}
    tx = optax.adam(1e-3)
    return train.TrainState(
        step=jnp.asarray(step, jnp.int32),
        params=params,
        batch_stats={"m": jnp.zeros(2)},
        opt_state=tx.init(params),
        rng=jax.random.key(7),
        tx=tx,
    )


def test_keeps_latest_and_best_across_restarts(tmp_path):
    manager = checkpoint.create_manager(str(tmp_path))
    for step, auc in [(1, 0.5), (2, 0.8), (3, 0.6)]:
        checkpoint.save(manager, _state(step, float(step)), {checkpoint.BEST_METRIC: auc})
    checkpoint.save(manager, _state(4, 4.0))  # a periodic save without metrics
    manager.wait_until_finished()
    assert manager.best_step() == 2 and manager.latest_step() == 4
    manager.close()

    # A new manager (a restarted run) still knows which checkpoint is best.
    manager = checkpoint.create_manager(str(tmp_path))
    assert manager.best_step() == 2 and manager.latest_step() == 4
    assert 1 not in manager.all_steps()
    restored = checkpoint.restore(manager, _state(0, 0.0), 2)
    assert int(restored.step) == 2
    np.testing.assert_array_equal(restored.params["w"], np.full(3, 2.0))
    np.testing.assert_array_equal(jax.random.key_data(restored.rng), jax.random.key_data(jax.random.key(7)))
    manager.close()


def test_undefined_auroc_never_ranks_best(tmp_path):
    manager = checkpoint.create_manager(str(tmp_path))
    checkpoint.save(manager, _state(1, 1.0), {checkpoint.BEST_METRIC: 0.55})
    checkpoint.save(manager, _state(2, 2.0), {checkpoint.BEST_METRIC: None})
    manager.wait_until_finished()
    assert manager.best_step() == 1
    manager.close()
