"""Every long phase prints progress as plain lines: the dataset build, the text-feature cache,
compiling the train step, evaluation and the bootstrap."""

import re

import tensorflow_datasets as tfds

from data_pipelines.synthetic_cxr import synthetic_cxr
from tests.e2e import run_py


def test_the_synthetic_build_prints_plain_lines(tmp_path, capfd):
    tfds.disable_progress_bar()  # as the build command and `input_pipeline.prepare` do
    config = synthetic_cxr.builder_config(image_size=16, num_train=5, num_validation=2, num_test=3, seed=0)
    synthetic_cxr.SyntheticCxr(config=config, data_dir=str(tmp_path)).download_and_prepare()
    err = capfd.readouterr().err
    for split, n in (("train", 5), ("validation", 2), ("test", 3)):
        assert re.search(rf"synthetic_cxr: generated {split}: {n} examples in \d+\.\ds", err), err
    assert "\x1b" not in err and "\r" not in err


def test_a_run_prints_each_phase(data_dir, tmp_path):
    flags = [
        "--config.model.text_encoder.train_mode=frozen",
        f"--config.model.text_encoder.cache_dir={tmp_path / 'text_features'}",
        "--config.train.num_epochs=1",
        "--config.eval.bootstrap_samples=20",
        "--config.eval.figures=False",
    ]
    proc = run_py(flags, data_dir, tmp_path / "w")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    for line in [
        r"text-feature cache: encoding \d+ reports with the frozen text encoder\.\.\.",
        r"text-feature cache encoded: \d+ reports in \d+\.\ds",
        r"compiling the train step\.\.\.",
        r"compiled in \d+\.\ds",
        r"evaluating validation: 2 batches\.\.\.",
        r"evaluated test: 3 batches in \d+\.\ds",
        r"bootstrap: 20 resamples of test\.\.\.",
        r"bootstrap test: 20 resamples in \d+\.\ds",
    ]:
        assert re.search(line, out), line + "\n" + out
    assert "\x1b[A" not in out
