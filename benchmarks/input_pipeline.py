"""Input-pipeline throughput on 224-px records: samples/s, and per CPU core.

    python -m benchmarks.input_pipeline [--num_examples=1024] [--batch_size=32] \
        [--steps=60] [--augment] [--channels=3] [--data_dir=DIR]

Builds a `synthetic_cxr` dataset of 224x224 records (once, into --data_dir, default a
temporary folder), then times `input_pipeline.train_batches`: PNG decode, optional
augmentation, channels and normalisation, report tokenisation (a local WordPiece fast
tokenizer), labels, batching; exactly what training consumes. The per-core figure
divides by the CPU cores this process may use. Real builds store the same kind of
records (8-bit grayscale PNG, resized at build time), so the figure carries over.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

from configs import default  # noqa: E402
from data_pipelines import input_pipeline, tokenizer  # noqa: E402

SIZE = 224


def _data_config(args):
    cfg = default.get_config().data
    cfg.name = "synthetic_cxr"
    cfg.data_dir = args.data_dir
    cfg.image_size = SIZE
    cfg.shuffle_buffer = 1024
    cfg.channels = args.channels
    cfg.normalization = "imagenet" if args.channels == 3 else "scalar"
    cfg.synthetic.num_train = args.num_examples
    cfg.synthetic.num_validation = cfg.synthetic.num_test = 8
    if args.augment:
        cfg.augment.update(dict(rotation=5.0, scale=0.05, translate=0.03, brightness=0.05, contrast=0.1))
    return cfg


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num_examples", type=int, default=1024)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--steps", type=int, default=60, help="timed batches, after 5 warm-up ones")
    p.add_argument("--augment", action="store_true")
    p.add_argument("--channels", type=int, default=1, choices=(1, 3))
    p.add_argument("--data_dir", default=os.path.join(tempfile.gettempdir(), "vkd-bench-tfds"))
    args = p.parse_args()

    cfg = _data_config(args)
    t = time.time()
    input_pipeline.prepare(cfg)
    print(f"dataset ready in {time.time() - t:.0f}s ({args.num_examples} records of {SIZE}px)")
    tok = tokenizer.load_tokenizer("synthetic", os.path.join(args.data_dir, "tokenizer"))
    batches = input_pipeline.train_batches(cfg, batch_size=args.batch_size, tokenizer=tok, max_length=256, seed=0)
    for _ in range(5):
        next(batches)
    start = time.time()
    for _ in range(args.steps):
        batch = next(batches)
    elapsed = time.time() - start
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rate = args.steps * args.batch_size / elapsed
    print(
        f"image {batch['image'].shape}, augment={args.augment}: {rate:.0f} samples/s on "
        f"{cores} cores = {rate / cores:.0f} samples/s per core "
        f"(load average {os.getloadavg()[0]:.1f} at the end)"
    )


if __name__ == "__main__":
    main()
