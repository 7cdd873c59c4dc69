"""Trains, evaluates and applies VKD.

    python run.py --config=configs/demo.py --workdir=/tmp/vkd-demo          # train, then test
    python run.py --workdir=/tmp/vkd-demo --mode=eval [--split=validation]  # evaluate the best checkpoint
    python run.py --workdir=/tmp/vkd-demo --mode=predict --input=DIR_OR_FILE_OR_GLOB --output=preds.csv

Any config field can be overridden on the command line, e.g. `--config.train.batch_size=16`.
Training again on an existing workdir resumes from its latest checkpoint. Evaluation and
prediction read the config the training saved in the workdir (eval also takes `--config`).
"""

import json
import os
import sys

# Quiet start-up chatter of TensorFlow's C++ side and of transformers without PyTorch.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py); required to train.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, summaries, results.json and report.md.")
flags.DEFINE_enum("mode", "train", ["train", "eval", "predict"],
                  "train (then evaluate on the test split), eval (the best checkpoint) or predict (own images).")
flags.DEFINE_string("split", None, "eval: the split to evaluate (default: the config's test split).")
flags.DEFINE_string("input", None, "predict: an image file, a directory (searched recursively) or a glob; "
                                   "PNG, JPEG, and DICOM with the [dicom] extra.")
flags.DEFINE_string("output", None, "predict: the CSV to write (default: <workdir>/predictions.csv).")
flags.mark_flag_as_required("workdir")


def saved_config(workdir: str):
    """The config a training saved in `workdir`, on top of the defaults (fields added since)."""
    import ml_collections

    from configs import default

    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: --workdir must be the directory of a `run.py` training run")

    def tuples(x):
        if isinstance(x, dict):
            return {k: tuples(v) for k, v in x.items()}
        return tuple(tuples(v) for v in x) if isinstance(x, list) else x

    with open(path) as f:
        saved = ml_collections.ConfigDict(tuples(json.load(f)))
    config = default.get_config()
    config.update(saved)
    return config


def _config_for(mode: str):
    if mode == "train":
        if FLAGS.config is None:
            raise app.UsageError("--config is required to train (e.g. --config=configs/demo.py)")
        return FLAGS.config
    if mode == "predict" and FLAGS.config is not None:
        raise app.UsageError("predict mode uses the config saved in --workdir; leave out --config")
    return FLAGS.config if FLAGS.config is not None else saved_config(FLAGS.workdir)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.mode == "predict" and not FLAGS.input:
        raise app.UsageError("--mode=predict needs --input=FILE_OR_DIR_OR_GLOB")
    from vkd_jax import config_checks, experiment, log, weights  # after flag parsing: keeps --help fast

    log.quiet_library_logs()

    try:
        config = _config_for(FLAGS.mode)
        if FLAGS.mode == "train":
            experiment.train_and_evaluate(config, FLAGS.workdir)
        elif FLAGS.mode == "eval":
            experiment.evaluate_checkpoint(config, FLAGS.workdir, FLAGS.split)
        else:
            from vkd_jax import predict

            output = FLAGS.output or os.path.join(FLAGS.workdir, "predictions.csv")
            done = predict.predict_files(config, FLAGS.workdir, FLAGS.input, output)
            print(f"wrote {done['num_predicted']} prediction(s) to {output}; skipped {len(done['skipped'])} "
                  "file(s) that could not be decoded" + "".join(f"\n  {p}: {r}" for p, r in done["skipped"]))
    except (FileNotFoundError, config_checks.ConfigError, weights.WeightsError, experiment.NonFiniteLossError) as e:
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
