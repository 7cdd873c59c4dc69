"""The workdir's lock (`vkd_jax.runs.lock`): a second writer is refused naming the holder, a
lock left by a killed holder is taken over with a warning, and `run.py` refuses to train or
evaluate on a workdir another process holds, before writing anything."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import types

import pytest

from tests import e2e
from vkd_jax import errors
from vkd_jax.runs import lock, sessions, training, workdir as wd

# Takes the lock of argv[1] through the library, says so, and holds it until stdin closes.
_HOLDER = """import sys
from vkd_jax.runs import lock
held = lock.acquire(sys.argv[1])
print("locked", flush=True)
sys.stdin.read()
held.release()
"""


def _hold(workdir) -> subprocess.Popen:
    """A subprocess holding the lock of `workdir` (close its stdin to end it)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(workdir)],
        cwd=e2e.ROOT,
        env=e2e.subprocess_env(1),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = proc.stdout.readline()
    assert line == "locked\n", line + proc.communicate()[0]
    return proc


def _end(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0, proc.stdout.read()


def test_a_second_lock_in_the_same_process_is_refused_naming_the_holder(tmp_path):
    workdir = str(tmp_path / "run")
    with lock.WorkdirLock(workdir):  # creates the workdir
        holder = e2e.load_json(os.path.join(workdir, wd.LOCK_HOLDER))
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(errors.WorkdirBusy, match=rf"in use by pid {os.getpid()} on host "):
            lock.acquire(workdir)
    assert not os.path.exists(os.path.join(workdir, wd.LOCK_HOLDER))  # released: who held it is gone
    lock.acquire(workdir).release()  # and the lock is free again


def test_a_lock_held_by_another_process_is_refused_naming_it(tmp_path):
    proc = _hold(tmp_path)
    try:
        with pytest.raises(errors.WorkdirBusy) as refused:
            lock.acquire(str(tmp_path))
        message = str(refused.value)
        assert f"pid {proc.pid} on host {socket.gethostname()}, started " in message
        assert "-c" in message and str(tmp_path) in message  # its command
        assert errors.WorkdirBusy in errors.USER_ERRORS  # one `error:` line, exit status 2
    finally:
        _end(proc)
    lock.acquire(str(tmp_path)).release()  # released by its holder


def test_the_lock_of_a_killed_holder_is_taken_over_with_a_warning(tmp_path, caplog):
    proc = _hold(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert e2e.load_json(tmp_path / wd.LOCK_HOLDER)["pid"] == proc.pid  # what the dead holder left
    with caplog.at_level(logging.WARNING):
        held = lock.acquire(str(tmp_path))
    try:
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, warnings
        assert f"took over the lock of workdir {tmp_path} from pid {proc.pid} on host " in warnings[0]
        assert "no longer runs" in warnings[0]
        assert e2e.load_json(tmp_path / wd.LOCK_HOLDER)["pid"] == os.getpid()  # the new holder
    finally:
        held.release()


def test_training_releases_the_lock_when_it_fails(tmp_path, monkeypatch):
    """`open_training` holds the lock from before the workdir is written; an error in the
    opening or in the training lets it go."""
    workdir = str(tmp_path)
    monkeypatch.setattr(sessions, "_mesh_for", lambda config: None)

    def failing_open(config, workdir, mesh):
        assert os.path.exists(os.path.join(workdir, wd.LOCK_HOLDER))  # held while the run opens
        raise errors.ConfigError("no")

    monkeypatch.setattr(sessions, "_open_training", failing_open)
    with pytest.raises(errors.ConfigError):
        sessions.open_training(None, workdir)
    lock.acquire(workdir).release()

    manager = types.SimpleNamespace(wait_until_finished=lambda: None)
    fields = {f: None for f in sessions.Run.__dataclass_fields__} | {"manager": manager}
    monkeypatch.setattr(sessions, "_open_training", lambda config, workdir, mesh: (sessions.Run(**fields), None))

    def failing_train(config, workdir, run, plan, start_time):
        assert run.workdir_lock is not None
        raise errors.NonFiniteLossError("nan")

    monkeypatch.setattr(training, "_train", failing_train)
    with pytest.raises(errors.NonFiniteLossError):
        training.train_and_evaluate(None, workdir)
    lock.acquire(workdir).release()


def _one_error_line(out: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in out, out
    return lines[0]


def test_run_py_refuses_to_train_on_a_workdir_another_process_holds(data_dir, tmp_path):
    workdir = tmp_path / "run"
    proc = _hold(workdir)
    try:
        train = e2e.run_py(e2e.TRAINED_ARGS, data_dir, workdir)
        out, _ = train.communicate(timeout=600)
    finally:
        _end(proc)
    assert train.returncode == 2, out
    line = _one_error_line(out)
    assert f"workdir {workdir} is in use by pid {proc.pid} on host {socket.gethostname()}" in line, line
    assert sorted(os.listdir(workdir)) == [wd.LOCK]  # nothing written: no config.json, no checkpoints
    assert "training to step" not in out


def test_run_py_refuses_to_evaluate_a_workdir_another_process_holds(tmp_path):
    """Evaluation writes its results into the workdir: it locks it too (checked before any
    dataset or checkpoint is read, so a workdir with a config and model info suffices)."""
    from configs import demo_scratch

    workdir = tmp_path / "run"
    workdir.mkdir()
    wd.write_config(str(workdir), demo_scratch.get_config())
    (workdir / wd.MODEL_INFO).write_text(
        json.dumps({"class_names": ["a"], "stored_image_size": 32, "vocab_size": 10, "text_config": None})
    )
    proc = _hold(workdir)
    try:
        done = e2e.run_mode(["--mode=eval", f"--workdir={workdir}"], devices=1, timeout=600)
    finally:
        _end(proc)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"is in use by pid {proc.pid} on host " in _one_error_line(done.stderr)
    assert not (workdir / "results.json").exists()
