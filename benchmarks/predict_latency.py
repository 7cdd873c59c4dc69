"""Latency of `vkd_jax.Predictor` on one image, the model already loaded and compiled.

    python -m benchmarks.predict_latency --workdir=W [--size=1024] [--calls=10]

Writes a random gray `size x size` PNG to a temporary folder, predicts it twice to compile
and warm up, then times `--calls` calls of `predict([path])` (decoding, resizing, the
model) and prints the median, min and max in ms as one JSON line.
"""

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np
from PIL import Image


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="a trained workdir (image-only at test time)")
    p.add_argument("--size", type=int, default=1024, help="side of the square PNG, pixels")
    p.add_argument("--calls", type=int, default=10, help="timed calls")
    args = p.parse_args(argv)
    from vkd_jax import Predictor

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "image.png")
        pixels = np.random.default_rng(0).integers(0, 256, (args.size, args.size), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        predictor = Predictor.from_workdir(args.workdir)
        for _ in range(2):
            predictor.predict([path])
        times = []
        for _ in range(args.calls):
            start = time.perf_counter()
            predictor.predict([path])
            times.append((time.perf_counter() - start) * 1e3)
    print(
        json.dumps(
            {
                "size": args.size,
                "calls": args.calls,
                "median_ms": round(statistics.median(times), 1),
                "min_ms": round(min(times), 1),
                "max_ms": round(max(times), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
