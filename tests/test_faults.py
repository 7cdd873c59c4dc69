"""Fault tolerance, end to end: SIGTERM (preemption) and SIGKILL mid-run, a damaged latest
checkpoint, a NaN loss, an unwritable or full workdir. The interrupted runs must end exactly
like the uninterrupted shared `trained` run (same config, 8 CPU devices; deterministic)."""

import os
import shutil
import signal
import time

import jax
import numpy as np
import pytest

from tests.e2e import TRAINED_ARGS, load_json, run_py
from vkd_jax import sharding
from vkd_jax.runs import checkpoint, restore, workdir as wd

TIMEOUT_S = 600


def _same_end(workdir, trained_dir) -> None:
    """`workdir`'s run ended like the uninterrupted one: test results and weights."""
    got, want = load_json(workdir / "results.json"), load_json(trained_dir / "results.json")
    assert got["checkpoint_step"] == want["checkpoint_step"]
    assert got["macro_auc"] == pytest.approx(want["macro_auc"], abs=1e-6)
    assert got["per_class_auc"] == pytest.approx(want["per_class_auc"], abs=1e-6)
    # The same weights: both best checkpoints, restored here (8 devices, as they were written).
    states = []
    for w in (workdir, trained_dir):
        _, state, _, manager = restore.restore_best(
            wd.read_config(str(w)), str(w), wd.read_model_info(str(w)), sharding.make_mesh(8)
        )
        manager.close()
        states.append(jax.device_get(state.params))
    for a, b in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _wait_for(predicate, proc, what: str) -> None:
    deadline = time.time() + TIMEOUT_S
    while time.time() < deadline and proc.poll() is None and not predicate():
        time.sleep(0.2)
    assert proc.poll() is None, f"the run ended before {what}: {proc.communicate()[0]}"


def _steps(workdir) -> list[int]:
    d = workdir / "checkpoints"
    return sorted(int(s) for s in os.listdir(d) if s.isdigit()) if d.exists() else []


def test_sigterm_then_sigkill_then_rerun_ends_like_an_uninterrupted_run(trained, data_dir, tmp_path):
    args = [*TRAINED_ARGS, "--config.train.checkpoint_every_steps=2"]
    # SIGTERM (preemption) once training is under way: a checkpoint at the step boundary, a clean exit.
    proc = run_py(args, data_dir, tmp_path, devices=8)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "step 4/16:" in line:
            break
    assert proc.poll() is None, "".join(lines)
    proc.send_signal(signal.SIGTERM)
    out = "".join(lines) + proc.communicate(timeout=TIMEOUT_S)[0]
    assert proc.returncode == 143, out
    assert "preempted (SIGTERM)" in out and "run the same command again to resume" in out
    assert "Traceback" not in out
    stopped = int(out.split("saved the checkpoint of step ", 1)[1].split(" ", 1)[0])
    assert 4 <= stopped < 16 and max(_steps(tmp_path)) == stopped
    assert not (tmp_path / "results.json").exists()

    # Resumed, then SIGKILL once it has saved a later checkpoint.
    proc = run_py(args, data_dir, tmp_path, devices=8)
    _wait_for(lambda: max(_steps(tmp_path)) >= stopped + 2, proc, "a later checkpoint")
    proc.send_signal(signal.SIGKILL)
    out = proc.communicate()[0]
    assert f"resumed from the checkpoint at step {stopped}" in out
    saved = max(_steps(tmp_path))
    assert stopped < saved < 16

    proc = run_py(args, data_dir, tmp_path, devices=8)
    out, _ = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, out
    resumed = [line for line in out.splitlines() if "resumed from the checkpoint at step" in line]
    assert resumed and int(resumed[0].rsplit(" ", 1)[1]) >= saved, out
    logged = [int(line.split("step ", 1)[1].split("/")[0]) for line in out.splitlines() if "/16:" in line]
    assert logged and min(logged) > saved  # it did not start over
    _same_end(tmp_path, trained[0])


def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(trained, data_dir, tmp_path):
    workdir = tmp_path / "w"
    shutil.copytree(trained[0], workdir)
    for name in ("results.json", "report.md"):
        (workdir / name).unlink()
    assert _steps(workdir) == [8, 16]  # the latest two
    damaged = 0
    for root, _, files in os.walk(workdir / "checkpoints" / "16"):
        for name in files:
            path = os.path.join(root, name)
            if os.path.getsize(path) > 64 and "/d/" in path + "/":  # array data files
                with open(path, "r+b") as f:
                    f.truncate(os.path.getsize(path) // 2)
                damaged += 1
    assert damaged

    proc = run_py([*TRAINED_ARGS, "--config.train.num_epochs=3"], data_dir, workdir, devices=8)
    out, _ = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, out
    assert "checkpoint of step 16" in out and "cannot be restored" in out
    assert "resumed from the checkpoint at step 8" in out
    assert os.listdir(workdir / "checkpoints" / "damaged")
    assert 24 in _steps(workdir) and load_json(workdir / "results.json")["num_examples"] == 96


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(trained, data_dir, tmp_path):
    workdir = tmp_path / "w"
    shutil.copytree(trained[0], workdir)
    before = _steps(workdir)
    # An absurd learning rate makes the parameters overflow within a few steps.
    proc = run_py(
        [*TRAINED_ARGS, "--config.train.num_epochs=3", "--config.optim.learning_rate=1e30"],
        data_dir,
        workdir,
        devices=8,
    )
    out, _ = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 2, out
    assert "loss is nan at step 20" in out or "loss is inf at step 20" in out, out
    assert "The last good checkpoint (step 16) is intact" in out
    assert _steps(workdir) == before


def test_a_config_that_no_longer_fits_the_checkpoints_is_an_error_not_damage(trained, data_dir, tmp_path):
    workdir = tmp_path / "w"
    shutil.copytree(trained[0], workdir)
    before = _steps(workdir)
    # No clipping: another optimiser state structure than the one saved.
    proc = run_py([*TRAINED_ARGS, "--config.optim.grad_clip_norm=0"], data_dir, workdir, devices=8)
    out, _ = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 2, out
    assert "no checkpoint in" in out and "Use the config they were written with" in out and "Traceback" not in out
    assert _steps(workdir) == before and not (workdir / "checkpoints" / "damaged").exists()


def test_unwritable_workdir_is_reported_before_any_work(data_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")
    proc = run_py(TRAINED_ARGS, data_dir, blocker / "workdir")
    out, _ = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 2, out
    assert "is not writable" in out and "Traceback" not in out and "training to step" not in out


def test_full_disk_is_reported_before_training(tmp_path, monkeypatch):
    state = {"params": np.zeros((1024, 1024), np.float32)}  # 4 MiB
    checkpoint.check_space(str(tmp_path), state)  # plenty of space here
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda _: usage._replace(free=10 * 2**20))
    with pytest.raises(checkpoint.StorageError, match="GiB free"):
        checkpoint.check_space(str(tmp_path), state)
