"""The installed package, not the checkout: the project installed with `pip install` (not
editable; from a copy of the sources) into a folder of its own on PYTHONPATH builds the
synthetic dataset with the installed `vkd-jax-build` command and trains a few steps with
`vkd-jax train` on a config file of the user's own, run from a directory outside the
checkout. Test fixtures (tests/fabricate) are not in it; the licence is."""

import os
import shutil
import subprocess
import sys

from tests.e2e import FAST_XLA, ROOT, load_json

SOURCES = ("pyproject.toml", "README.md", "LICENSE", "vkd_jax", "data_pipelines", "configs")
# A user's own config file (outside the checkout) on top of a packaged one.
TINY_CONFIG = """
from configs import demo_scratch


def get_config():
    cfg = demo_scratch.get_config()
    cfg.data.image_size = 32
    cfg.model.image_encoder.update(dict(block_sizes=(1, 1, 1, 1), growth_rate=4, num_init_features=8))
    cfg.model.text_encoder.update(dict(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, max_length=32))
    cfg.model.update(dict(latent_dim=8, hidden_dim=16, eval_samples=2))
    cfg.train.update(dict(batch_size=32, eval_batch_size=128, max_steps=2, log_every_steps=1))
    cfg.eval.update(dict(bootstrap_samples=0, figures=False))
    return cfg
"""


def _install(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        if os.path.isdir(os.path.join(ROOT, name)):
            shutil.copytree(os.path.join(ROOT, name), src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(os.path.join(ROOT, name), src / name)
    site = tmp_path / "site"  # `pip install .` (not editable), into a folder of its own
    subprocess.run(
        [sys.executable, "-m", "pip", "install", str(src), "--no-deps", "--no-build-isolation", "-q"]
        + ["--target", str(site)],
        check=True,
        cwd=tmp_path,
        capture_output=True,
    )
    return site


def test_the_installed_commands_build_and_train_outside_the_checkout(tmp_path):
    site = _install(tmp_path)
    names = [str(p.relative_to(site)) for p in site.rglob("*")]
    assert any(n.startswith("configs/") for n in names) and not any("fabricate" in n for n in names)
    licence = [p for p in site.glob("vkd_jax-*.dist-info/licenses/LICENSE")]
    assert licence and licence[0].read_text() == open(os.path.join(ROOT, "LICENSE")).read()
    # The console scripts: their interpreter is the one that ran pip (this one).
    vkd_jax, vkd_jax_build = str(site / "bin" / "vkd-jax"), str(site / "bin" / "vkd-jax-build")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site), XLA_FLAGS=f"--xla_force_host_platform_device_count=2 {FAST_XLA}")
    run = lambda *args: subprocess.run(  # noqa: E731
        args, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600
    )

    usage = run(vkd_jax, "--help")
    assert usage.returncode == 0 and all(f"  {c} " in usage.stdout for c in ("train", "eval", "predict"))
    from vkd_jax import __version__

    assert run(vkd_jax, "--version").stdout == f"vkd-jax {__version__}\n"
    bare = run(vkd_jax, "train")
    assert bare.returncode == 2 and bare.stderr.startswith("error: ") and bare.stderr.count("\n") == 1, bare.stderr
    # `configs/NAME.py` is the packaged config where no such file exists: the flags parse,
    # and the command line is refused after them.
    stray = run(vkd_jax, "train", "--config=configs/demo_scratch.py", f"--workdir={tmp_path / 'x'}", "stray")
    assert stray.returncode == 2 and stray.stderr.splitlines()[-1] == "error: unexpected arguments: ['stray']", (
        stray.stderr
    )

    data_dir, workdir = tmp_path / "tfds", tmp_path / "w"
    build = run(
        vkd_jax_build,
        "--config=configs/demo_scratch.py",  # the packaged config's synthetic_cxr options
        "--dataset=synthetic_cxr",
        f"--data_dir={data_dir}",
        "--image_size=32",
    )
    assert build.returncode == 0, build.stdout + build.stderr
    config = elsewhere / "tiny.py"
    config.write_text(TINY_CONFIG)
    train = run(vkd_jax, "train", f"--config={config}", f"--workdir={workdir}", f"--config.data.data_dir={data_dir}")
    assert train.returncode == 0, train.stdout + train.stderr
    assert "Generating" not in train.stdout + train.stderr  # the build the command made is the one training reads
    assert "step 1/2: " in train.stderr and " eta=" in train.stderr
    results = load_json(workdir / "results.json")
    assert results["num_examples"] == 1000 and results["config"]["data"]["image_size"] == 32
