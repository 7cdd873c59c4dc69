r"""Builds a dataset's tfds records from its source files (nothing is downloaded):

    python -m data_pipelines.build --config=configs/mimic.py --manual_dir=DIR --data_dir=DIR
    python -m data_pipelines.build --dataset={mimic_cxr,openi,chestxray14,csv,synthetic_cxr} \
        --manual_dir=DIR --data_dir=DIR [--image_size=224] [--workers=N]

`vkd-jax-build` (installed with the package) is the same command, with the same flags.
`--config=configs/NAME.py` names a packaged config when no such file exists where it runs.

With `--config`, the dataset, its options (`data.<dataset>`), `data_dir` and the stored
size (`data.build_size`, else `data.image_size`) come from the training config's data
section, so the build is the one that config reads; flags override them. Without it, the
options are `configs/default.py`'s. Images are decoded, made 8-bit grayscale, resized
(shorter side) and centre-cropped once, in `--workers` processes, into a cache under
`--data_dir`; an interrupted build rerun with the same command skips the images already
done. The build ends with a report (examples per split, files skipped and why), also saved
as `build_report.json` beside the records. A build found built is reused only if its table
(and, for `csv`, every image's size and mtime) is unchanged; else the command stops naming
what changed. Dataset option flags (`--views`, `--labeler`,
`--sections`, `--labels_csv`, `--split_seed`, `--val_fraction`, and `--table`,
`--image_column`, ... of `csv`, your own table: `data_pipelines/table/options.py`) are the
fields of those config sections.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys

# Keep this module's imports light: worker processes re-import it when they start.

REAL = ("mimic_cxr", "openi", "chestxray14", "csv")  # data_pipelines.datasets.REAL's names


def _options_of(data_cfg) -> dict[str, tuple[tuple[str, ...], type]]:
    """flag -> (the datasets that take it, its type): the fields of the config's
    `data.<dataset>` sections, the one list of build options training reads too."""
    flags: dict[str, tuple[tuple[str, ...], type]] = {}
    for name in REAL:
        for field, value in data_cfg[name].items():
            flags[field] = (flags.get(field, ((), None))[0] + (name,), type(value))
    return flags


def _default_data():
    from configs import default  # ml_collections only: light enough for the workers

    return default.get_config().data


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--config",
        help="a training config file (configs/*.py): the dataset, its options, "
        "data_dir and stored size come from its data section",
    )
    p.add_argument(
        "--dataset",
        choices=(*REAL, "synthetic_cxr"),
        help="the dataset (default: the config's data.name; required without --config)",
    )
    p.add_argument("--manual_dir", help="the dataset's source files (not for synthetic_cxr)")
    p.add_argument("--data_dir", help="where the tfds records are written (default: the config's)")
    p.add_argument(
        "--image_size",
        type=int,
        help="stored image side, pixels (default: the config's data.build_size or "
        "data.image_size; 224 without --config)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="image preprocessing processes (default: all CPU cores)",
    )
    p.add_argument(
        "--keep_cache",
        action="store_true",
        help="keep the preprocessed PNGs after a successful build (another config "
        "of the same dataset and size reuses them)",
    )
    for flag, (datasets, kind) in _options_of(_default_data()).items():
        p.add_argument(f"--{flag}", type=kind, help=f"{', '.join(datasets)} only (default: the config's)")
    return p


def _load_config(path: str):
    import configs

    path = configs.resolve(path)
    spec = importlib.util.spec_from_file_location("build_config", path)
    if spec is None or not os.path.isfile(path):
        raise FileNotFoundError(f"--config={path}: no such config file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _data_config(args):
    """The data section the build serves: `--config`'s (else the defaults), with the
    command's flags applied on top."""
    data = _load_config(args.config).data if args.config else _default_data()
    if args.dataset is None and not args.config:
        raise ValueError("give --dataset (or --config)")
    if args.dataset is not None and args.config and args.dataset != data.name:
        raise ValueError(f"--dataset={args.dataset} but {args.config} trains on {data.name}")
    data.name = args.dataset or data.name
    if args.data_dir is not None:
        data.data_dir = args.data_dir
    if not data.data_dir:
        raise ValueError("give --data_dir (or a config with data.data_dir)")
    if args.image_size is not None:
        data.build_size = args.image_size
    for flag, (datasets, _) in _options_of(data).items():
        value = getattr(args, flag)
        if value is None:
            continue
        if data.name not in datasets:
            raise ValueError(f"--{flag} applies to {', '.join(datasets)}, not {data.name}")
        data[data.name][flag] = value
    return data


def build(args) -> dict:
    """Builds (or finds built) the dataset `args` describe; returns its build report."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow_datasets as tfds

    from data_pipelines import datasets, manual_builder, source_files

    tfds.disable_progress_bar()  # its tqdm bars are cursor codes in a log; the builders print plain lines

    data = _data_config(args)
    image_size = data.build_size or data.image_size
    if image_size < 8:
        raise ValueError(f"--image_size must be >= 8, got {image_size}")
    if data.name == datasets.SYNTHETIC:
        builder = datasets.synthetic_builder(data, image_size)
        builder.download_and_prepare()
        return {
            "dataset": data.name,
            "examples": {n: s.num_examples for n, s in builder.info.splits.items()},
            "skipped": {},
            "notes": {},
        }

    builder = datasets.real_builder(
        data.name, image_size=image_size, data_dir=data.data_dir, workers=args.workers, **data[data.name].to_dict()
    )
    report_path = os.path.join(os.fspath(builder.data_dir), "build_report.json")
    if builder.is_prepared():
        print(f"{data.name}/{builder.builder_config.name} is already built in {builder.data_dir}", flush=True)
        with open(report_path) as f:
            report = json.load(f)
        _check_unchanged(builder, report, args.manual_dir or "", data.name)
        return report
    source_files.require_dir(args.manual_dir, data.name, builder.MANUAL_DOWNLOAD_INSTRUCTIONS)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=args.manual_dir, try_download_gcs=False)
    )
    report = builder.build_report | {"config": builder.builder_config.name, "image_size": image_size}
    with open(report_path, "w") as f:
        json.dump(report, f, indent=2)
    if builder.image_stamps is not None:
        with open(os.path.join(os.fspath(builder.data_dir), manual_builder.STAMPS_FILE), "w") as f:
            json.dump(builder.image_stamps, f, separators=(",", ":"))
    if not args.keep_cache:
        shutil.rmtree(builder.cache_dir(), ignore_errors=True)
        try:  # And the dataset's and the cache's folders, once empty.
            os.removedirs(os.path.dirname(builder.cache_dir()))
        except OSError:
            pass
    return report


def _check_unchanged(builder, report: dict, manual_dir: str, name: str) -> None:
    """Raises ValueError naming what changed since the build found in `builder.data_dir`:
    its table (a digest), or for `csv` its images (size and mtime of each file)."""
    from data_pipelines import manual_builder

    built_from, now = report.get("sources", {}), builder.source_digests(manual_dir)
    changed = sorted(k for k in built_from if k in now and now[k] != built_from[k])
    fix = f"delete that directory to rebuild, or give the new version another data.{name}.tag"
    if changed:
        raise ValueError(f"{', '.join(changed)} changed since {builder.data_dir} was built from it: {fix}")
    if "images" not in built_from or not os.path.isdir(manual_dir):  # An older build, or no sources here.
        return
    stamps = builder.current_image_stamps(manual_dir)
    if stamps is None or manual_builder.stamps_digest(stamps) == built_from["images"]:
        return
    saved = os.path.join(os.fspath(builder.data_dir), manual_builder.STAMPS_FILE)
    built = None
    if os.path.isfile(saved):
        with open(saved) as f:
            built = json.load(f)
    raise ValueError(
        f"images under {manual_dir} changed since {builder.data_dir} was built from them "
        f"({manual_builder.stamp_changes(built, stamps)}): {fix}"
    )


def main(argv=None, prog: str = "python -m data_pipelines.build") -> int:
    args = _parser(prog).parse_args(argv)
    from data_pipelines import manual_builder

    try:
        report = build(args)
    except (FileNotFoundError, ValueError) as e:  # Bad source files: nothing half-written.
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # E.g. a full disk while writing.
        print(
            f"error: {e}\nFix the cause and run the same command again: images already "
            "preprocessed are kept and skipped.",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print(
            "interrupted: run the same command again to continue; images already preprocessed are kept and skipped.",
            file=sys.stderr,
        )
        return 130
    print(manual_builder.format_report(report), flush=True)
    return 0


def command() -> None:
    """The `vkd-jax-build` console command."""
    sys.exit(main(prog="vkd-jax-build"))


if __name__ == "__main__":
    sys.exit(main())
