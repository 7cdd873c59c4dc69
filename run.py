"""Trains, evaluates and applies VKD.

    python run.py --config=configs/demo.py --workdir=/tmp/vkd-demo          # train, then test
    python run.py --workdir=/tmp/vkd-demo --mode=eval [--split=validation]  # evaluate the best checkpoint
    python run.py --workdir=/tmp/vkd-demo --mode=predict --input=DIR_OR_FILE_OR_GLOB --output=preds.csv

Any config field can be overridden on the command line, e.g. `--config.train.batch_size=16`.
Training again on an existing workdir resumes from its latest checkpoint. Evaluation and
prediction read the config the training saved in the workdir (eval also takes `--config`).
Several processes (TPU pods, multi-node GPUs): see `vkd_jax/distributed.py` and the README.
"""

import os
import sys

# Quiet start-up chatter of TensorFlow's C++ side and of transformers without PyTorch.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from absl import app, flags, logging
from ml_collections import config_flags

# Stopped by SIGTERM after saving a checkpoint: what a SIGTERM-killed process reports
# (128 + 15), so schedulers and wrappers see an unfinished run; rerunning resumes.
PREEMPTED_EXIT_CODE = 143

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
flags.DEFINE_string("coordinator_address", None, "Multi-process runs without a detected cluster: process 0's "
                                                 "HOST:PORT (all processes give the same).")
flags.DEFINE_integer("num_processes", None, "Multi-process runs: how many processes take part.")
flags.DEFINE_integer("process_id", None, "Multi-process runs: this process's index, 0 .. num_processes - 1.")
flags.mark_flag_as_required("workdir")


def _config_for(mode: str):
    if mode == "train":
        if FLAGS.config is None:
            raise app.UsageError("--config is required to train (e.g. --config=configs/demo.py)")
        return FLAGS.config
    if mode == "predict" and FLAGS.config is not None:
        raise app.UsageError("predict mode uses the config saved in --workdir; leave out --config")
    from vkd_jax import workdir as wd

    return FLAGS.config if FLAGS.config is not None else wd.read_config(FLAGS.workdir)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.mode == "predict" and not FLAGS.input:
        raise app.UsageError("--mode=predict needs --input=FILE_OR_DIR_OR_GLOB")
    from vkd_jax import distributed  # after flag parsing: keeps --help fast

    try:  # before any JAX computation
        distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    from vkd_jax import checkpoint, config_checks, experiment, log, weights
    from vkd_jax import workdir as wd

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
    except experiment.Preempted as e:
        logging.warning("%s", e)
        print(str(e), file=sys.stderr)
        sys.exit(PREEMPTED_EXIT_CODE)
    except (FileNotFoundError, config_checks.ConfigError, weights.WeightsError, experiment.NonFiniteLossError,
            checkpoint.StorageError, checkpoint.RestoreError, wd.RunFileError) as e:
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
