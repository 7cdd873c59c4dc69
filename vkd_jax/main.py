"""Trains, evaluates and applies VKD: the installed `vkd-jax` command, and `run.py` in a checkout.

    vkd-jax train --config=configs/demo.py --workdir=/tmp/vkd-demo             # train, then test
    vkd-jax eval --workdir=/tmp/vkd-demo [--split=validation]                  # evaluate the best checkpoint
    vkd-jax predict --workdir=/tmp/vkd-demo --input=DIR_OR_FILE_OR_GLOB --output=preds.csv
    vkd-jax export --workdir=/tmp/vkd-demo --output=DIR                       # jax.export artifact
    vkd-jax convert-xrv --weights=densenet121-res224-all --output=xrv.safetensors  # torchxrayvision's weights
    python run.py --config=configs/demo.py --workdir=/tmp/vkd-demo [--mode=train|eval|predict|export]

The command is the mode (`--mode`, train by default, in `run.py`). `--config=configs/NAME.py`
names a packaged config when no such file exists where the command runs; any other path is
a config file of one's own. Any config field can be overridden on the command line, e.g.
`--config.train.batch_size=16`. Training again on an existing workdir resumes from its latest
checkpoint. Evaluation, prediction and export read the config the training saved in the workdir
(eval also takes `--config`); without `--config` they take overrides of the evaluation fields, e.g.
`--config.eval.figures=false`. A failure is one `error:` line (exit status 2); `--debug` shows
its traceback instead. Several processes (TPU pods, multi-node GPUs): see
`vkd_jax/runs/distributed.py` and docs/scaling.md.
"""

import os
import sys

# Quiet start-up chatter of TensorFlow's C++ side and of transformers without PyTorch.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from absl import app, flags, logging
from ml_collections import config_flags

import configs
from vkd_jax import cli, errors

FLAGS = flags.FLAGS
_FLAGS = [
    config_flags.DEFINE_config_file(
        "config",
        None,
        "Path to a config file (configs/NAME.py: a packaged one where no such file exists); required to train.",
        lock_config=True,
    ),
    flags.DEFINE_string("workdir", None, "Directory for checkpoints, summaries, results.json and report.md."),
    flags.DEFINE_enum(
        "mode",
        "train",
        list(cli.COMMANDS),
        "train (then evaluate on the test split), eval (the best checkpoint), predict (own images) or "
        "export (the best checkpoint as a jax.export artifact); "
        "the command of `vkd-jax`.",
    ),
    flags.DEFINE_string("split", None, "eval: the split to evaluate (default: the config's test split)."),
    flags.DEFINE_string(
        "input",
        None,
        "predict: an image file, a directory (searched recursively) or a glob; "
        "PNG, JPEG, and DICOM with the [dicom] extra.",
    ),
    flags.DEFINE_string(
        "output",
        None,
        "predict: the CSV to write (default: <workdir>/predictions.csv); export: the artifact's directory "
        "(new or empty; required).",
    ),
    flags.DEFINE_string(
        "coordinator_address",
        None,
        "Multi-process runs without a detected cluster: process 0's HOST:PORT (all processes give the same).",
    ),
    flags.DEFINE_integer("num_processes", None, "Multi-process runs: how many processes take part."),
    flags.DEFINE_integer("process_id", None, "Multi-process runs: this process's index, 0 .. num_processes - 1."),
    flags.DEFINE_bool("debug", False, "Show the traceback of a failure instead of its one `error:` line."),
]
flags.mark_flag_as_required("workdir")

# eval/predict without --config: `--config.a.b=v` overrides of the saved config's evaluation fields.
_saved_config_overrides: list[tuple[str, str]] = []


def _config_arg(arg: str) -> str:
    """`--config=configs/NAME.py` -> the packaged config when there is no such file here."""
    if arg.startswith("--config="):
        return "--config=" + configs.resolve(arg[len("--config=") :])
    return arg


def _parse_flags(argv):
    try:
        argv, overrides = cli.split_overrides([_config_arg(a) for a in argv])
        rest = FLAGS(argv)  # loads the config file and applies its overrides
    except (flags.Error, errors.UsageError) as e:
        cli.fail(errors.one_line(e))
    except Exception as e:  # noqa: BLE001 - a config file, or an override of it, can raise anything
        if "--debug" in argv:
            raise
        unknown = (
            cli.unknown_override(argv, _loaded_config(argv)) if isinstance(e, (KeyError, AttributeError)) else None
        )
        cli.fail(unknown or f"--config: {errors.one_line(e)}")
    _saved_config_overrides.extend(overrides)
    return rest


def _loaded_config(argv):
    """The config of `argv`'s `--config=FILE` without its overrides (None if it does not load)."""
    files = [a[len("--config=") :] for a in argv if a.startswith("--config=")]
    try:
        return FLAGS["config"].parser.parse(files[-1]) if files else None
    except Exception:  # noqa: BLE001 - a config file can raise anything
        return None


def _config_for(mode: str):
    from vkd_jax.runs import workdir as wd

    if mode == "train" and not FLAGS["config"].present:
        raise errors.UsageError("--config is required to train (e.g. --config=configs/demo.py)")
    if mode in ("predict", "export") and FLAGS["config"].present:
        raise errors.UsageError(f"{mode} mode uses the config saved in --workdir; leave out --config")
    if FLAGS["config"].present:
        try:
            config = FLAGS.config
            config.keys()  # a file that failed to load raises on first use
        except Exception as e:  # noqa: BLE001 - a config file can raise anything
            raise errors.ConfigError(f"--config: {errors.one_line(e)}") from e
        from configs import default as default_config

        cli.check_types(config, default_config.get_config())
        return config
    config = wd.read_config(FLAGS.workdir)
    cli.apply_overrides(config, _saved_config_overrides)
    return config


def _absl_main(argv):
    if not FLAGS.debug:
        cli.drop_orbax_leftovers()
    try:
        _main(argv)
    except SystemExit:
        raise
    except KeyboardInterrupt:  # SIGINT outside the training loop (which saves and stops)
        if FLAGS.debug:
            raise
        print("interrupted (SIGINT): stopped; nothing was saved since the last checkpoint", file=sys.stderr)
        sys.exit(cli.INTERRUPTED_EXIT_CODE)
    except Exception as e:  # noqa: BLE001 - every failure becomes one line unless --debug
        if FLAGS.debug:
            raise
        if isinstance(e, errors.Preempted):
            logging.warning("%s", e)
            print(str(e), file=sys.stderr)
            sys.exit(cli.INTERRUPTED_EXIT_CODE if isinstance(e, errors.Interrupted) else cli.PREEMPTED_EXIT_CODE)
        logging.error("%s", e)
        if not isinstance(e, errors.USER_ERRORS):
            cli.fail(f"unexpected {type(e).__name__}: {errors.one_line(e)} (rerun with --debug for the traceback)")
        cli.fail(errors.one_line(e))


def _main(argv):
    if len(argv) > 1:
        raise errors.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.mode == "predict" and not FLAGS.input:
        raise errors.UsageError("--mode=predict needs --input=FILE_OR_DIR_OR_GLOB")
    if FLAGS.mode == "export" and not FLAGS.output:
        raise errors.UsageError("--mode=export needs --output=DIR (a new or empty directory)")
    from vkd_jax.runs import distributed  # after flag parsing: keeps --help fast

    try:  # before any JAX computation
        distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    except ValueError as e:
        raise errors.UsageError(str(e)) from None
    from vkd_jax.runs import log

    log.quiet_library_logs()
    config = _config_for(FLAGS.mode)
    # The imports below take seconds to tens of seconds on a small machine: say so first.
    tf = ", TensorFlow" if FLAGS.mode in ("train", "eval") else ""
    logging.info("%s: loading the libraries (JAX, Flax%s)...", FLAGS.mode, tf)
    if FLAGS.mode in ("train", "eval"):
        from vkd_jax.runs import training  # TensorFlow (tf.data): only the modes that read a dataset

        if FLAGS.mode == "train":
            training.train_and_evaluate(config, FLAGS.workdir)
        else:
            training.evaluate_checkpoint(config, FLAGS.workdir, FLAGS.split)
    elif FLAGS.mode == "export":
        from vkd_jax.serving import export

        meta = export.export_model(config, FLAGS.workdir, FLAGS.output)
        print(
            f"exported the checkpoint of step {meta['checkpoint_step']} to {FLAGS.output} "
            f"({', '.join(meta['platforms'])}); load it with "
            f"{FLAGS.output}/load.py (its requirements are listed in model.json)"
        )
    else:
        from vkd_jax.serving import predict

        output = FLAGS.output or os.path.join(FLAGS.workdir, "predictions.csv")
        done = predict.predict_files(config, FLAGS.workdir, FLAGS.input, output)
        print(
            f"wrote {done['num_predicted']} prediction(s) to {output}; skipped {len(done['skipped'])} "
            "file(s) that could not be used" + "".join(f"\n  {p}: {r}" for p, r in done["skipped"])
        )


def run(argv: list[str] | None = None) -> None:
    """Parses `argv` (default `sys.argv`) as `run.py`'s flags and runs the mode; `--help`
    shows this module's docstring and flags whichever script started it."""
    argv = sys.argv if argv is None else argv
    sys.modules["__main__"].__doc__ = __doc__
    for holder in _FLAGS:  # absl's --help lists the flags of the script it was started as
        FLAGS.register_flag_by_module(argv[0], FLAGS[holder.name])
    app.run(_absl_main, argv=argv, flags_parser=_parse_flags)


def command() -> None:
    """The `vkd-jax` console command: `vkd-jax COMMAND [flags]`, COMMAND being the mode."""
    if sys.argv[1:] == ["--version"]:
        from vkd_jax import __version__

        print(f"vkd-jax {__version__}")
        return
    if sys.argv[1:2] == [cli.CONVERT_XRV]:  # no workdir, no JAX: a file conversion
        cli.convert_xrv(sys.argv[2:])
        return
    try:
        argv = cli.command_argv(sys.argv)
    except errors.UsageError as e:
        cli.fail(errors.one_line(e))
    if argv is None:
        print(cli.COMMAND_USAGE)
        return
    run(argv)
