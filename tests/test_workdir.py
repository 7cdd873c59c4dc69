"""A workdir is never damaged by a refused or failed command, and every failure a user can
cause is one `error:` line (exit status 2) that says what to do. On copies of the shared
`trained` run (1 process x 8 devices, checkpoints at steps 8 and 16)."""

import json
import os
import shutil

import pytest

from tests.e2e import TRAINED_ARGS, load_json, run_mode, run_py

TIMEOUT_S = 600


def _copy(trained, tmp_path):
    workdir = tmp_path / "w"
    shutil.copytree(trained[0], workdir)
    return workdir


def _error_line(output: str) -> str:
    """The one `error:` line of a failed command's output (and no traceback)."""
    lines = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def _steps(workdir) -> list[int]:
    return sorted(int(s) for s in os.listdir(workdir / "checkpoints") if s.isdigit())


@pytest.mark.parametrize("override", ["--config.model.latent_dim=32", "--config.model.kind=image_only"])
def test_a_refused_resume_leaves_the_workdir_as_it_was(trained, data_dir, tmp_path, override):
    workdir = _copy(trained, tmp_path)
    files = {name: (workdir / name).read_bytes() for name in ("config.json", "model_info.json")}
    proc = run_py([*TRAINED_ARGS, override], data_dir, workdir, devices=8)
    out, _ = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 2, out
    assert "Use the config they were written with" in _error_line(out)
    assert {name: (workdir / name).read_bytes() for name in files} == files
    assert _steps(workdir) == [8, 16] and not (workdir / "checkpoints" / "damaged").exists()
    if override.endswith("latent_dim=32"):
        return
    # Eval still works on it, with overrides of its evaluation fields and no --config.
    shutil.rmtree(workdir / "figures_validation", ignore_errors=True)  # another test's eval may have left them
    proc = run_mode(
        [
            f"--workdir={workdir}",
            "--mode=eval",
            "--split=validation",
            "--config.eval.figures=false",
            "--config.eval.bootstrap_samples=0",
        ]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = load_json(workdir / "results_validation.json")
    assert results["config"]["eval"]["bootstrap_samples"] == 0 and results["config"]["model"]["kind"] == "vkd"
    assert results["macro_auc"] == pytest.approx(results["val_macro_auc"], abs=1e-6)
    assert not (workdir / "figures_validation").exists()


@pytest.mark.parametrize("junk", [False, True])
def test_a_stray_step_directory_is_set_aside_and_training_resumes(trained, data_dir, tmp_path, junk):
    workdir = _copy(trained, tmp_path)
    stray = workdir / "checkpoints" / "999"
    stray.mkdir()
    if junk:
        (stray / "notes.txt").write_text("not a checkpoint")
        (stray / "_CHECKPOINT_METADATA").write_text("{truncated")
    proc = run_py(TRAINED_ARGS, data_dir, workdir, devices=8)
    out, _ = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, out
    assert "step 999" in out and "is not a checkpoint" in out and "resumed from the checkpoint at step 16" in out
    assert [d.split("-")[0] for d in os.listdir(workdir / "checkpoints" / "damaged")] == ["999"]
    assert _steps(workdir) == [8, 16]


def _truncate(path) -> None:
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _truncate_config(workdir):
    _truncate(workdir / "config.json")
    return "config.json", "results.json"


def _truncate_model_info(workdir):
    _truncate(workdir / "model_info.json")
    return "model_info.json", "run the training command again"


def _model_info_without_a_key(workdir):
    info = load_json(workdir / "model_info.json")
    del info["vocab_size"]
    (workdir / "model_info.json").write_text(json.dumps(info))
    return "model_info.json", "vocab_size"


def _truncate_the_only_checkpoint(workdir):
    shutil.rmtree(workdir / "checkpoints" / "8")
    for root, _, files in os.walk(workdir / "checkpoints" / "16"):
        for name in files:
            path = os.path.join(root, name)
            if os.path.getsize(path) > 64 and "/d/" in path + "/":  # array data files
                _truncate(path)
    return os.path.join("checkpoints", "16"), "cannot be restored"


@pytest.mark.parametrize(
    "damage", [_truncate_config, _truncate_model_info, _model_info_without_a_key, _truncate_the_only_checkpoint]
)
def test_a_damaged_run_file_is_one_error_line_naming_it(trained, tmp_path, damage):
    workdir = _copy(trained, tmp_path)
    names = damage(workdir)
    proc = run_mode([f"--workdir={workdir}", "--mode=eval"])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = _error_line(proc.stderr)
    for name in names:
        assert name in line, line


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config=configs/demo_scratch.py", "--config.train.batchsize=4"], "batchsize"),
        (["--config=configs/no_such_config.py"], "no_such_config.py"),
        (["--config=BROKEN"], "invalid syntax"),
        (["--config=configs/demo_scratch.py", "--config.optim.learning_rate=inf"], "optim.learning_rate"),
        (["--config=configs/demo_scratch.py", "--config.data.augment.rotation=nan"], "augment.rotation"),
        (["--config=configs/demo_scratch.py", "--config.train.batch_size=abc"], "batch_size"),
        ([], "--config is required"),
    ],
)
def test_a_bad_command_line_is_one_error_line_before_any_work(tmp_path, args, message):
    broken = tmp_path / "broken.py"
    broken.write_text("def get_config(:\n")
    workdir = tmp_path / "w"
    proc = run_mode([f"--workdir={workdir}", *(a.replace("BROKEN", str(broken)) for a in args)])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in _error_line(proc.stderr)
    assert not workdir.exists()


def test_debug_shows_the_traceback(tmp_path):
    proc = run_mode([f"--workdir={tmp_path}", "--mode=eval", "--debug"])
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "config.json is missing" in proc.stderr
