"""The command line of `vkd-jax` and `run.py` (`vkd_jax.main`): the commands, the config each
runs, `--config.a.b=v` overrides of a saved config, and one `error:` line (exit status 2) for
every failure a user can cause.

Training needs `--config=FILE` (overrides then go through ml_collections' config flags).
Eval, predict and export read the config the training saved; without `--config`, overrides of the
evaluation fields (`EVAL_FIELDS`) are parsed here, by the type of the field they replace.
"""

from __future__ import annotations

import ast
import difflib
import os
import sys

import ml_collections

from vkd_jax import errors
from vkd_jax.errors import ConfigError, UsageError, one_line

# Fields a saved config may have overridden by eval, predict or export: how a trained model is
# evaluated, not what it is.
EVAL_FIELDS = ("eval.", "model.eval_samples", "train.eval_batch_size", "data.data_dir", "num_devices")
EXIT_USER_ERROR = 2
# Stopped by SIGTERM after saving a checkpoint: what a SIGTERM-killed process reports
# (128 + 15), so schedulers and wrappers see an unfinished run; rerunning resumes.
PREEMPTED_EXIT_CODE = 143
# Stopped by SIGINT (Ctrl-C): 128 + 2, as a shell reports it.
INTERRUPTED_EXIT_CODE = 130
# `vkd-jax COMMAND`: the command is `run.py`'s `--mode`.
COMMANDS = {
    "train": "train on --config, then evaluate the best checkpoint on the test split",
    "eval": "evaluate the best checkpoint of --workdir (--split, default the test split)",
    "predict": "apply the model of --workdir to image files (--input, --output)",
    "export": "write the model of --workdir as a jax.export artifact for serving (--output=DIR)",
}
# `vkd-jax convert-xrv`: a file conversion with flags of its own (vkd_jax.pretrained.xrv), no workdir.
CONVERT_XRV = "convert-xrv"
COMMAND_USAGE = (
    "usage: vkd-jax {"
    + ",".join(COMMANDS)
    + "} --workdir=DIR [flags]\n       vkd-jax convert-xrv --weights=NAME_OR_FILE --output=FILE.safetensors"
    + "\n\ncommands:\n"
    + "".join(f"  {name:<11} {what}\n" for name, what in COMMANDS.items())
    + f"  {CONVERT_XRV} convert torchxrayvision's DenseNet-121 weights to safetensors (needs torchxrayvision)\n"
    + "\n`vkd-jax COMMAND --help` lists the flags; `vkd-jax-build --help`: the dataset build command."
)


def fail(message: str) -> None:
    """The `error:` line on stderr, then exit status 2.

    asyncio's "exception was never retrieved" reports are silenced first: a failed orbax
    restore can leave sibling reads failing after it, which asyncio would log, traceback and
    all, at exit (seen on a slow machine), after the one line that says what went wrong."""
    import logging as std_logging

    std_logging.getLogger("asyncio").setLevel(std_logging.CRITICAL)
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


def convert_xrv(argv: list[str]) -> None:
    """`vkd-jax convert-xrv ARGS` (`vkd_jax.pretrained.xrv.command`): its summary on stdout, or
    one `error:` line. Here, not in `vkd_jax.main`, so it runs without main's absl flags."""
    from vkd_jax.pretrained import xrv

    try:
        print(xrv.command(argv))
    except errors.USER_ERRORS as e:
        fail(errors.one_line(e))


def command_argv(argv: list[str]) -> list[str] | None:
    """`vkd-jax COMMAND ARGS` -> `run.py`'s argv (`--mode=COMMAND ARGS`); None for the usage
    (`vkd-jax --help`)."""
    if len(argv) < 2 or argv[1].startswith("-") and argv[1] not in ("-h", "--help"):
        raise UsageError(f"give a command: vkd-jax {{{','.join(COMMANDS)}}} [flags] (vkd-jax --help lists them)")
    command, rest = argv[1], argv[2:]
    if command in ("-h", "--help", "help"):
        return None
    if command not in COMMANDS:
        raise UsageError(f"unknown command {command!r}: give one of {', '.join(COMMANDS)} (vkd-jax --help)")
    if any(a == "--mode" or a.startswith("--mode=") for a in rest):
        raise UsageError(f"--mode: the command ({command}) is the mode; leave out --mode")
    return [argv[0], f"--mode={command}", *rest]


def split_overrides(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """(argv, overrides): without a `--config=FILE`, the `--config.a.b=v` arguments are taken
    out of argv (absl knows them only once a config file defines the fields)."""
    if any(a == "--config" or a.startswith("--config=") for a in argv):
        return argv, []
    rest, overrides = [], []
    for arg in argv:
        if arg.startswith("--config."):
            field, eq, value = arg[len("--config.") :].partition("=")
            if not eq:
                raise UsageError(f"{arg}: give the value as --config.{field}=VALUE")
            overrides.append((field, value))
        else:
            rest.append(arg)
    return rest, overrides


def _parse(text: str, current):
    if isinstance(current, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    if isinstance(current, int):
        return int(text)
    if isinstance(current, float):
        return float(text)
    if isinstance(current, str):
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[tuple[str, str]]) -> None:
    """Sets each `(a.b, text)` of `overrides` on `config`; only `EVAL_FIELDS` may be set."""
    for field, text in overrides:
        if not any(field == f or (f.endswith(".") and field.startswith(f)) for f in EVAL_FIELDS):
            raise UsageError(
                f"--config.{field}: without --config only the evaluation fields can be overridden "
                f"({', '.join(f + '*' if f.endswith('.') else f for f in EVAL_FIELDS)})"
            )
        *parents, leaf = field.split(".")
        node = config
        try:
            for p in parents:
                node = node[p]
            current = node[leaf]
        except (KeyError, AttributeError):
            raise UsageError(f"--config.{field}: no such config field") from None
        try:
            node[leaf] = _parse(text, current)
        except (ValueError, TypeError) as e:
            raise UsageError(f"--config.{field}={text}: {one_line(e)}") from None


def _has_field(config, field: str) -> bool:
    node = config
    for part in field.split("."):
        if not hasattr(node, "keys") or part not in node:
            return False
        node = node[part]
    return True


def unknown_override(argv: list[str], config) -> str | None:
    """The one-line message for the first `--config.a.b=v` of `argv` that names no field of
    `config` (the loaded config file), or None if each names one."""
    if config is None or not hasattr(config, "keys"):
        return None
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        field = arg[len("--config.") :].partition("=")[0]
        if _has_field(config, field):
            continue
        *parents, leaf = field.split(".")
        known = ""
        while parents and not _has_field(config, ".".join(parents)):
            leaf = parents.pop()
        node = config
        for p in parents:
            node = node[p]
        if hasattr(node, "keys"):
            prefix = "".join(p + "." for p in parents)
            close = difflib.get_close_matches(leaf, list(node.keys()), n=1)
            known = f" (did you mean --config.{prefix}{close[0]}?)" if close else ""
        where = "config" + "".join("." + p for p in parents)
        return f"{arg}: no such config field: {where} has no field {leaf!r}{known}"
    return None


_TYPE_NAMES = {bool: "true or false", int: "an int", float: "a number", str: "a string"}


def _type_name(value) -> str:
    for kind, name in _TYPE_NAMES.items():
        if isinstance(value, kind):
            return name
    if isinstance(value, (tuple, list)):
        kinds = {type(v) for v in value}
        of = f" of {kinds.pop().__name__}s" if len(kinds) == 1 else ""
        return f"a tuple{of} like {tuple(value)}"
    return f"a {type(value).__name__}"


def _fits(value, default) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, (tuple, list)):
        return isinstance(value, (tuple, list)) and all(
            _fits(v, default[0]) for v in value if default and len({type(d) for d in default}) == 1
        )
    return True


def check_types(config, defaults, prefix: str = "config") -> None:
    """`ConfigError` for the first field of `config` whose value is not of the type of the same
    field in `defaults` (the default config): e.g. a string where a tuple of ints belongs,
    which an override such as `--config.model.image_encoder.block_sizes=abc` sets unchecked.
    None (a placeholder) and fields `defaults` lacks are not checked."""
    for key, default in defaults.items():
        if key not in config:
            continue
        value, path = config[key], f"{prefix}.{key}"
        if hasattr(default, "keys"):
            if hasattr(value, "keys"):
                check_types(value, default, path)
            continue
        if value is None or default is None or _fits(value, default):
            continue
        raise ConfigError(f"{path} must be {_type_name(default)}, got {value!r}")


def drop_orbax_leftovers() -> None:
    """After a failed orbax restore, tensorstore's pending reads call back into the asyncio
    loop orbax already closed, and orbax's unfinished read coroutines are collected with
    their error: each reaches `sys.unraisablehook` as a traceback on stderr, around the one
    `error:` line. Those (and only those) are dropped; the failure itself is reported."""
    default = sys.unraisablehook

    def hook(unraisable):
        code = getattr(unraisable.object, "cr_code", None)
        if (
            isinstance(unraisable.exc_value, RuntimeError)
            and str(unraisable.exc_value) == "Event loop is closed"
            or code is not None
            and f"{os.sep}orbax{os.sep}" in code.co_filename
        ):
            return
        default(unraisable)

    sys.unraisablehook = hook
