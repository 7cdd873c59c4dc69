"""SIGINT during training saves a checkpoint and exits 130 with one line; `final_train` in
results.json is the training's last logged interval, labelled, whether the run was resumed or
re-evaluated (`--mode=eval`); a NaN stop before any checkpoint says so. On the shared `trained`
run's config (8 CPU devices; deterministic)."""

import re
import signal

import pytest

from tests.e2e import TRAINED_ARGS, load_json, run_mode, run_py

TIMEOUT_S = 600


def _logged_losses(out: str) -> dict[int, float]:
    return {int(m[1]): float(m[2]) for m in re.finditer(r"step (\d+)/16: .*?\bloss=(\S+)", out)}


def test_sigint_saves_and_a_resumed_run_reports_the_same_final_train(trained, data_dir, tmp_path):
    # One logged interval over the whole run (16 steps): the SIGINT lands inside it.
    args = [*TRAINED_ARGS, "--config.train.log_every_steps=16"]
    proc = run_py(args, data_dir, tmp_path, devices=8)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "step 8: validation" in line:
            break
    assert proc.poll() is None, "".join(lines)
    proc.send_signal(signal.SIGINT)
    out = "".join(lines) + proc.communicate(timeout=TIMEOUT_S)[0]
    assert proc.returncode == 130, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    stopped = re.search(r"interrupted \(SIGINT\): saved the checkpoint of step (\d+) in \S+; run the same", out)
    assert stopped, out
    assert 8 <= int(stopped[1]) <= 16

    proc = run_py(args, data_dir, tmp_path, devices=8)
    out, _ = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, out
    final = load_json(tmp_path / "results.json")["final_train"]
    assert (final["step"], final["steps"]) == (16, 16), final
    # The uninterrupted run logged the same 16 steps in 4 intervals of 4 (same losses, step by step).
    want = _logged_losses(trained[1])
    assert sorted(want) == [4, 8, 12, 16]
    assert final["metrics"]["loss"] == pytest.approx(sum(want.values()) / 4, rel=2e-3)

    # --mode=eval keeps it (it set it to null).
    proc = run_mode(["--mode=eval", f"--workdir={tmp_path}"], devices=8)
    assert proc.returncode == 0, proc.stderr
    assert load_json(tmp_path / "results.json")["final_train"] == final


def test_trained_run_labels_final_train_and_eval_mode_keeps_it(trained, tmp_path):
    results = load_json(trained[0] / "results.json")
    final = results["final_train"]
    assert (final["step"], final["steps"]) == (16, 4)
    assert final["metrics"]["loss"] == pytest.approx(_logged_losses(trained[1])[16], rel=1e-3)


def test_nan_loss_before_any_checkpoint_says_none_was_saved(data_dir, tmp_path):
    proc = run_py(
        [*TRAINED_ARGS, "--config.optim.learning_rate=1e30", "--config.train.log_every_steps=2"],
        data_dir,
        tmp_path,
        devices=8,
    )
    out, _ = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 2, out
    line = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(line) == 1 and "Traceback" not in out, out
    assert re.match(
        r"error: loss is (nan|inf) at step [2-6]; stopped without saving\. No checkpoint was saved yet", line[0]
    )
    assert "step None" not in out
