"""Restoring for inference reads the checkpoint into `jax.eval_shape` placeholders: no training
state is built or compiled, image-only prediction reads the prior path alone, evaluation the
parameters and statistics, and both equal what the whole saved state holds.

On the old workdir (`tests/data/workdir_60fcd5b`, a tiny `vkd` run with a text encoder)."""

import os
import shutil

import jax
import numpy as np
import pytest

from vkd_jax import inference, sharding, train
from vkd_jax.runs import checkpoint, restore, workdir as wd

OLD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "workdir_60fcd5b")


@pytest.fixture
def workdir(tmp_path):
    shutil.copytree(OLD, tmp_path / "w")
    return str(tmp_path / "w")


def _restore(workdir, **kwargs):
    config, info = wd.read_config(workdir), wd.read_model_info(workdir)
    model, state, eval_rng, manager = restore.restore_best(config, workdir, info, sharding.make_mesh(1), **kwargs)
    manager.close()
    return model, state, eval_rng


def _whole_state(workdir):
    """The saved TrainState, restored the way training resumes (its state built and compiled)."""
    config, info = wd.read_config(workdir), wd.read_model_info(workdir)
    _, _, state, eval_rng = train.build_state(
        config,
        sharding.make_mesh(1),
        num_classes=len(info.class_names),
        vocab_size=info.vocab_size,
        text_config=info.text_config,
        schedule_steps=1,
    )
    manager = checkpoint.create_manager(workdir)
    state = checkpoint.restore(manager, state, 8)
    manager.close()
    return state, eval_rng


def test_inference_restores_without_building_a_training_state(workdir, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a training state was built to restore into")

    monkeypatch.setattr(train, "create_train_state", refuse)
    monkeypatch.setattr(train, "build_state", refuse)
    for image_only in (False, True):
        _, state, _ = _restore(workdir, image_only=image_only)
        assert isinstance(state, inference.ModelState) and int(state.step) == 8


def test_image_only_reads_the_prior_path_and_evaluation_all_parameters(workdir):
    whole, whole_rng = _whole_state(workdir)
    _, everything, eval_rng = _restore(workdir)
    _, prior_path, _ = _restore(workdir, image_only=True)
    assert set(whole.params) == {"classifier", "image_encoder", "posterior", "prior", "text_encoder"}
    assert set(everything.params) == set(whole.params)
    assert set(prior_path.params) == {"classifier", "image_encoder", "prior"}
    assert jax.random.key_data(eval_rng).tolist() == jax.random.key_data(whole_rng).tolist()
    for part in (everything, prior_path):
        for field in ("params", "batch_stats"):
            got = getattr(part, field)
            want = {k: v for k, v in getattr(whole, field).items() if k in got}
            assert jax.tree.structure(got) == jax.tree.structure(want)
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_checkpoint_of_another_model_is_refused_by_name(workdir):
    config, info = wd.read_config(workdir), wd.read_model_info(workdir)
    config.model.latent_dim = 4
    with pytest.raises(Exception, match="cannot be restored into the model of this config") as e:
        restore.restore_best(config, workdir, info, sharding.make_mesh(1), image_only=True)
    assert os.path.join("checkpoints", "8") in str(e.value)
