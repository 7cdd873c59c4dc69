"""Trains and evaluates VKD: `python run.py --config=configs/demo.py --workdir=/tmp/vkd-demo`.

Any config field can be overridden on the command line, e.g. `--config.train.batch_size=16`.
Running again on an existing workdir resumes from its latest checkpoint.
"""

import logging as std_logging
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


class _LibraryInfoFilter(std_logging.Filter):
    """Keeps the libraries' warnings but drops their per-step INFO lines (orbax logs ~30 per save)."""

    NOISY = (f"{os.sep}orbax{os.sep}", f"{os.sep}tensorflow_datasets{os.sep}", f"{os.sep}jax{os.sep}")

    def filter(self, record):
        if "Using custom data configuration" in str(record.msg):  # tfds, once per split read
            return False
        return record.levelno >= std_logging.WARNING or not any(s in record.pathname for s in self.NOISY)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.get_absl_handler().addFilter(_LibraryInfoFilter())
    from vkd_jax import config_checks, experiment  # after flag parsing: keeps --help fast

    try:
        experiment.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except (FileNotFoundError, config_checks.ConfigError, experiment.NonFiniteLossError) as e:
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
