"""Builds a dataset's tfds records from its source files (nothing is downloaded):

    python -m data_pipelines.build --dataset={mimic_cxr,openi,chestxray14,synthetic_cxr} \
        --manual_dir=DIR --data_dir=DIR [--image_size=224] [--workers=N]

Images are decoded, made 8-bit grayscale, resized (shorter side) and centre-cropped once,
in `--workers` processes, into a cache under `--data_dir`; an interrupted build rerun
with the same command skips the images already done. The build ends with a report
(examples per split, files skipped and why), also saved as `build_report.json` beside
the records. Dataset options (`--views`, `--labeler`, `--sections`, `--labels_csv`,
`--split_seed`, `--val_fraction`) must match the training config's `data.<dataset>`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

# Keep this module's imports light: worker processes re-import it when they start.

_OPTIONS = {  # flag -> (datasets that take it, type)
    "views": (("mimic_cxr",), str),
    "labeler": (("mimic_cxr",), str),
    "sections": (("mimic_cxr", "openi"), str),
    "labels_csv": (("openi",), str),
    "split_seed": (("openi", "chestxray14"), int),
    "val_fraction": (("chestxray14",), float),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m data_pipelines.build", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True,
                   choices=("mimic_cxr", "openi", "chestxray14", "synthetic_cxr"))
    p.add_argument("--manual_dir", help="the dataset's source files (not for synthetic_cxr)")
    p.add_argument("--data_dir", required=True, help="where the tfds records are written")
    p.add_argument("--image_size", type=int, default=224, help="stored image side, pixels")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="image preprocessing processes (default: all CPU cores)")
    p.add_argument("--keep_cache", action="store_true",
                   help="keep the preprocessed PNGs after a successful build (another config "
                        "of the same dataset and size reuses them)")
    for flag, (datasets, kind) in _OPTIONS.items():
        p.add_argument(f"--{flag}", type=kind, help=f"{', '.join(datasets)} only")
    return p


def _options(args) -> dict:
    options = {}
    for flag, (datasets, _) in _OPTIONS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if args.dataset not in datasets:
            raise ValueError(f"--{flag} applies to {', '.join(datasets)}, not {args.dataset}")
        options[flag] = value
    return options


def build(args) -> dict:
    """Builds (or finds built) the dataset `args` describe; returns its build report."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow_datasets as tfds

    from data_pipelines import datasets, source_files

    if args.image_size < 8:
        raise ValueError(f"--image_size must be >= 8, got {args.image_size}")
    if args.dataset == datasets.SYNTHETIC:
        from configs import default  # The build training looks for by default.
        data_cfg = default.get_config().data
        data_cfg.data_dir = args.data_dir
        builder = datasets.synthetic_builder(data_cfg, args.image_size)
        builder.download_and_prepare()
        return {"dataset": args.dataset, "examples": {
            n: s.num_examples for n, s in builder.info.splits.items()}, "skipped": {}, "notes": {}}

    builder = datasets.real_builder(args.dataset, image_size=args.image_size,
                                    data_dir=args.data_dir, workers=args.workers, **_options(args))
    report_path = os.path.join(os.fspath(builder.data_dir), "build_report.json")
    if builder.is_prepared():
        print(f"{args.dataset}/{builder.builder_config.name} is already built in "
              f"{builder.data_dir}", flush=True)
        with open(report_path) as f:
            return json.load(f)
    source_files.require_dir(args.manual_dir, args.dataset, builder.MANUAL_DOWNLOAD_INSTRUCTIONS)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=args.manual_dir, try_download_gcs=False))
    report = builder.build_report | {"config": builder.builder_config.name,
                                     "image_size": args.image_size}
    with open(report_path, "w") as f:
        json.dump(report, f, indent=2)
    if not args.keep_cache:
        shutil.rmtree(builder.cache_dir(), ignore_errors=True)
        try:  # And the dataset's and the cache's folders, once empty.
            os.removedirs(os.path.dirname(builder.cache_dir()))
        except OSError:
            pass
    return report


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from data_pipelines import manual_builder
    try:
        report = build(args)
    except (FileNotFoundError, ValueError) as e:  # Bad source files: nothing half-written.
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # E.g. a full disk while writing.
        print(f"error: {e}\nFix the cause and run the same command again: images already "
              "preprocessed are kept and skipped.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: run the same command again to continue; images already "
              "preprocessed are kept and skipped.", file=sys.stderr)
        return 130
    print(manual_builder.format_report(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
