"""Every failure a user can cause, in one place: the library raises these, and the command
line (`vkd_jax.main`) turns each into one `error:` line with exit status 2 (`Preempted`: 143,
`Interrupted`: 130).

The message of each says what to do; no library module imports the command line for them.
"""

from __future__ import annotations


class UsageError(ValueError):
    """A command line that cannot run (bad flag combination, bad override, bad output path)."""


class ConfigError(ValueError):
    """A config value that cannot work."""


class RunFileError(ValueError):
    """A file of the workdir is missing, truncated or incomplete."""


class StorageError(RuntimeError):
    """The workdir cannot hold the checkpoints (not writable, or too little free space)."""


class WorkdirBusy(RuntimeError):
    """Another training or evaluation holds the workdir's lock (`vkd_jax.runs.lock`)."""


class RestoreError(RuntimeError):
    """A checkpoint of the workdir does not restore into the state the config builds."""


class WeightsError(ValueError):
    """A pretrained checkpoint that does not fit the model (missing key, wrong shape, bad format)."""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or Inf loss; the last good checkpoint is left as it was."""


class Preempted(Exception):
    """SIGTERM (a cluster's preemption notice): a checkpoint was saved, training stopped."""


class Interrupted(Preempted):
    """SIGINT (Ctrl-C) during training: a checkpoint was saved, training stopped (exit status 130)."""


# The failures reported as one `error:` line (exit status 2) without "unexpected".
USER_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    UsageError,
    ConfigError,
    RunFileError,
    StorageError,
    WorkdirBusy,
    RestoreError,
    WeightsError,
    NonFiniteLossError,
)


def one_line(error: BaseException) -> str:
    """The error's message on one line (its type's name if it has none)."""
    return " ".join(str(error).split()) or type(error).__name__
