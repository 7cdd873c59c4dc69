"""A training run, from config to report: what a command opens (`sessions`), the training loop
(`training`), evaluation and its report, the workdir's files, checkpoints and the restore of a
workdir's model, the text-feature cache, config checks, multi-host start-up and logging.

Importing this package imports nothing; `training` and `sessions` bring TensorFlow (tf.data),
the others do not.
"""
