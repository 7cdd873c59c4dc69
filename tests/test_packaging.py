"""The installed package, not the checkout: the project installed with `pip install` (not
editable; from a copy of the sources) into a folder of its own on PYTHONPATH builds the
synthetic dataset with the build command and trains a few steps, run from a directory
outside the checkout. Test fixtures (tests/fabricate) are not in it."""

import os
import shutil
import subprocess
import sys

from tests.e2e import ROOT, load_json

SOURCES = ("pyproject.toml", "README.md", "vkd_jax", "data_pipelines", "configs")
TRAIN = """
import sys
import vkd_jax, configs
assert vkd_jax.__file__.startswith(sys.argv[1]) and configs.__file__.startswith(sys.argv[1]), vkd_jax.__file__
from configs import demo_scratch
from vkd_jax import experiment
cfg = demo_scratch.get_config()
cfg.data.data_dir, cfg.data.image_size = sys.argv[2], 32
cfg.model.image_encoder.update(dict(block_sizes=(1, 1, 1, 1), growth_rate=4, num_init_features=8))
cfg.model.text_encoder.update(dict(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, max_length=32))
cfg.model.update(dict(latent_dim=8, hidden_dim=16, eval_samples=2))
cfg.train.update(dict(batch_size=32, eval_batch_size=128, max_steps=2, log_every_steps=1))
cfg.eval.update(dict(bootstrap_samples=0, figures=False))
experiment.train_and_evaluate(cfg, sys.argv[3])
"""


def test_the_installed_package_builds_and_trains_outside_the_checkout(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        if os.path.isdir(os.path.join(ROOT, name)):
            shutil.copytree(os.path.join(ROOT, name), src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(os.path.join(ROOT, name), src / name)
    site = tmp_path / "site"  # `pip install .` (not editable), into a folder of its own
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            str(src),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--target",
            str(site),
        ],
        check=True,
        cwd=tmp_path,
        capture_output=True,
    )
    names = [str(p.relative_to(site)) for p in site.rglob("*")]
    assert any(n.startswith("configs/") for n in names) and not any("fabricate" in n for n in names)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site), XLA_FLAGS="--xla_force_host_platform_device_count=2")
    data_dir, workdir = tmp_path / "tfds", tmp_path / "w"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "data_pipelines.build",
            "--dataset=synthetic_cxr",
            f"--data_dir={data_dir}",
            "--image_size=32",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    train = subprocess.run(
        [sys.executable, "-c", TRAIN, str(site), str(data_dir), str(workdir)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert train.returncode == 0, train.stdout + train.stderr
    assert "Generating" not in train.stdout  # the build the command made is the one training reads
    assert load_json(workdir / "results.json")["num_examples"] == 1000
