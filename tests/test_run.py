"""End to end through run.py, in subprocesses: train, evaluate, results.json; kill and resume;
the MIMIC config without data. Small synthetic data, tiny models, a few dozen steps."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--config.data.image_size=32",
    "--config.data.synthetic.num_train=256",
    "--config.data.synthetic.num_validation=64",
    "--config.data.synthetic.num_test=96",
    "--config.model.image_encoder.block_sizes=(1,1,1,1)",
    "--config.model.image_encoder.growth_rate=4",
    "--config.model.image_encoder.num_init_features=8",
    "--config.model.text_encoder.hidden_size=16",
    "--config.model.text_encoder.num_layers=1",
    "--config.model.text_encoder.intermediate_size=32",
    "--config.model.text_encoder.max_length=32",
    "--config.model.latent_dim=8",
    "--config.model.hidden_dim=16",
    "--config.train.batch_size=32",
    "--config.train.eval_batch_size=32",
    "--config.train.log_every_steps=4",
    "--config.optim.warmup_steps=2",
]


def _run(args, data_dir, workdir, **kwargs):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "run.py", "--config=configs/demo_scratch.py", f"--workdir={workdir}",
           f"--config.data.data_dir={data_dir}", *TINY, *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **kwargs)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def test_demo_trains_evaluates_and_writes_results(data_dir, tmp_path):
    proc = _run(["--config.train.num_epochs=2"], data_dir, tmp_path)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    with open(tmp_path / "results.json") as f:
        results = json.load(f)
    for key in ("model", "dataset", "split", "num_examples", "macro_auc", "micro_auc", "per_class_auc",
                "config", "elapsed_s"):
        assert key in results, key
    assert results["model"] == "vkd" and results["dataset"] == "synthetic_cxr" and results["split"] == "test"
    assert results["num_examples"] == 96  # every test example scored once, padding dropped
    assert len(results["per_class_auc"]) == 14
    assert 0 <= results["macro_auc"] <= 1
    assert results["config"]["train"]["batch_size"] == 32
    assert "validation macro AUROC" in out and "steps_per_s" in out
    assert os.listdir(tmp_path / "tensorboard")
    assert results["checkpoint_step"] in (8, 16)  # the best of the two validations


def test_killed_run_resumes_from_its_checkpoint(data_dir, tmp_path):
    args = ["--config.train.num_epochs=3", "--config.train.checkpoint_every_steps=2"]
    proc = _run(args, data_dir, tmp_path)
    ckpt_dir = tmp_path / "checkpoints"
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
        steps = [d for d in os.listdir(ckpt_dir) if d.isdigit()] if ckpt_dir.exists() else []
        if any(int(s) >= 4 for s in steps):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    saved = max(int(s) for s in os.listdir(ckpt_dir) if s.isdigit())
    assert 0 < saved < 24

    proc = _run(args, data_dir, tmp_path)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    resumed = [line for line in out.splitlines() if "resumed from the checkpoint at step" in line]
    assert resumed, out
    assert int(resumed[0].rsplit(" ", 1)[1]) >= saved
    logged = [int(line.split("step ", 1)[1].split("/")[0]) for line in out.splitlines() if "/24:" in line]
    assert logged and min(logged) > saved  # it did not start over
    assert (tmp_path / "results.json").exists()


def test_mimic_without_data_stops_with_a_clear_message(tmp_path):
    env = dict(os.environ, TFDS_DATA_DIR=str(tmp_path / "empty"))
    proc = subprocess.run(
        [sys.executable, "run.py", "--config=configs/mimic.py", f"--workdir={tmp_path / 'w'}",
         f"--config.data.data_dir={tmp_path / 'empty'}", "--config.model.text_encoder.tokenizer=/nonexistent"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "mimic_cxr" in proc.stderr and "data_pipelines.build" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
