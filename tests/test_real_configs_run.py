"""configs/mimic.py, openi.py, chestxray14.py and chexpert_plus.py end to end through run.py (subprocesses)
on builds of the fabricated source trees: a few steps each, tiny models."""

import json
import os
import subprocess
import sys

import pytest

from data_pipelines import build
from tests import e2e
from tests.fabricate import chestxray14, chexpert_plus, mimic_cxr, openi

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 32
TINY = [
    f"--config.data.image_size={SIZE}",
    "--config.data.shuffle_buffer=16",
    "--config.model.image_encoder.block_sizes=(1,1,1,1)",
    "--config.model.image_encoder.growth_rate=4",
    "--config.model.image_encoder.num_init_features=8",
    "--config.model.text_encoder.tokenizer=synthetic",
    "--config.model.text_encoder.hidden_size=16",
    "--config.model.text_encoder.num_heads=2",
    "--config.model.text_encoder.num_layers=1",
    "--config.model.text_encoder.intermediate_size=32",
    "--config.model.text_encoder.max_length=32",
    "--config.model.latent_dim=8",
    "--config.model.hidden_dim=16",
    "--config.model.eval_samples=2",
    "--config.train.batch_size=2",
    "--config.train.eval_batch_size=2",
    "--config.train.max_steps=2",
    "--config.train.eval_every_steps=100",  # validate once, at the last step
    "--config.train.log_every_steps=1",
    "--config.optim.warmup_steps=1",
]
# run -> (config, fabricate, build flags, config overrides)
RUNS = {
    "mimic_cxr": ("mimic", mimic_cxr.write, [], []),
    # Also the RGB-pretrained-encoder input: 3 channels, ImageNet statistics.
    "openi": ("openi", openi.write, [], ["--config.data.channels=3", "--config.data.normalization=imagenet"]),
    "chestxray14": (
        "chestxray14",
        chestxray14.write,
        ["--val_fraction=0.3"],
        ["--config.data.chestxray14.val_fraction=0.3"],
    ),
    # The csv builder, its options from the config.
    "chexpert_plus": ("chexpert_plus", chexpert_plus.write, [], []),
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("real_runs")
    for name, (config, fabricate, flags, _) in RUNS.items():
        fabricate(str(root / name))
        assert (
            build.main(
                [
                    f"--config=configs/{config}.py",
                    f"--manual_dir={root / name}",
                    f"--data_dir={root / 'tfds'}",
                    f"--image_size={SIZE}",
                    "--workers=1",
                    *flags,
                ]
            )
            == 0
        )
    return str(root / "tfds")


def test_configs_train_and_evaluate_on_fabricated_builds(data_dir, tmp_path):
    env = e2e.subprocess_env(2, PYTHONUNBUFFERED="1")
    procs = {}
    # Two at a time: each run mostly waits on XLA compilation of one core's work.
    for name, (config, _, _, overrides) in RUNS.items():
        cmd = [
            sys.executable,
            "run.py",
            f"--config=configs/{config}.py",
            f"--workdir={tmp_path / name}",
            f"--config.data.data_dir={data_dir}",
            *TINY,
            *overrides,
        ]
        procs[name] = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name}:\n{out}"
        with open(tmp_path / name / "results.json") as f:
            results = json.load(f)
        assert results["dataset"] == {"chexpert_plus": "csv"}.get(name, name) and results["split"] == "test"
        assert results["num_examples"] == {"mimic_cxr": 2, "openi": 4, "chestxray14": 6, "chexpert_plus": 3}[name]
        assert len(results["per_class_auc"]) == 14
    assert json.load(open(tmp_path / "chestxray14" / "results.json"))["model"] == "image_only"
