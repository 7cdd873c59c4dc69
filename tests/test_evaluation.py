"""`predict_split`: 8 devices == 1 device, and the study keys it returns for the bootstrap."""

import jax
import numpy as np
import optax

from tests.test_train import BATCH, _batch, _config, _setup
from vkd_jax import inference, metrics, sharding
from vkd_jax.runs import evaluation


def _eval_batches():
    """Three batches of 16; the last has 5 padding rows. Studies of 2 images each, with keys
    beyond int32 (and negative ones)."""
    batches = []
    for i in range(3):
        b = _batch(10 + i)
        b["study_id"] = (np.arange(BATCH) // 2 + 8 * i - 6) * 2**40 + 3
        if i == 2:
            b["mask"][-5:] = 0.0
        batches.append(b)
    return batches


def test_eight_devices_predict_like_one():
    cfg = _config("vkd")
    preds = []
    for n in (1, 8):
        mesh, model, state, _ = _setup(cfg, n, optax.sgd(0.1))
        eval_step = inference.make_eval_step(model, mesh, num_samples=2, with_kl=True)
        preds.append(evaluation.predict_split(state, eval_step, iter(_eval_batches()), mesh, jax.random.key(3)))
    one, eight = preds
    assert set(one) == {"probs", "spreads", "kl", "labels", "label_mask", "study_id"}
    assert len(one["probs"]) == 3 * BATCH - 5  # padding rows dropped
    for key in one:
        np.testing.assert_allclose(eight[key], one[key], rtol=1e-5, atol=1e-6, err_msg=key)
    keys = np.concatenate([b["study_id"][b["mask"] > 0] for b in _eval_batches()])
    assert one["study_id"].dtype == np.int64
    np.testing.assert_array_equal(one["study_id"], keys)
    np.testing.assert_array_equal(eight["study_id"], keys)
    # The bootstrap resamples these studies: 22 of 24 (padding holds two, and one image of a third).
    ci = metrics.bootstrap_auroc(
        one["labels"], one["probs"], [str(k) for k in range(14)], one["label_mask"], one["study_id"], num_samples=5
    )
    assert ci["unit"] == "group" and len(np.unique(one["study_id"])) == 22


def test_gather_ids_keeps_int64_in_global_batch_order():
    """The several-process path (each process's rows of every batch -> the global batches'
    ids), here with one process holding all 8 devices: int64 survives JAX without x64."""
    mesh = sharding.make_mesh(8)
    ids = np.array([[2**62 + 5, -1, -(2**40), 7] * 4, [3, 2**33, -(2**63), 2**63 - 1] * 4], np.int64)
    gathered = evaluation._gather_ids(ids, mesh)
    assert gathered.dtype == np.int64
    np.testing.assert_array_equal(gathered, ids.reshape(-1))
