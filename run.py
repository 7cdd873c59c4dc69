"""Trains and evaluates VKD: `python run.py --config=configs/demo.py --workdir=/tmp/vkd-demo`.

Any config field can be overridden on the command line, e.g. `--config.train.batch_size=16`.
Running again on an existing workdir resumes from its latest checkpoint.
"""

import os
import sys

# Quiet start-up chatter of TensorFlow's C++ side and of transformers without PyTorch.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, summaries and results.json.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from vkd_jax import config_checks, experiment, log, weights  # after flag parsing: keeps --help fast

    log.quiet_library_logs()

    try:
        experiment.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except (FileNotFoundError, config_checks.ConfigError, weights.WeightsError, experiment.NonFiniteLossError) as e:
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
