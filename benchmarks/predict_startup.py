"""Start-up of prediction, side by side with the import it cannot beat, each in a fresh process.

    python -m benchmarks.predict_startup --workdir=W [--source=DIR ...] [--repeats=1] [--no-command]

For this checkout and each `--source` (another checkout of vkd-jax, e.g. an older commit,
whose packages win through PYTHONPATH), in fresh subprocesses without JAX's persistent
compilation cache:
  baseline      `import vkd_jax`, `import jax` and one jitted op;
  predictor     `import vkd_jax` and its `Predictor` (import_vkd_jax), `Predictor.from_workdir(W)`,
                and the first `predict` of one random gray `--size` PNG: each phase timed,
                and `to_first_result`, their sum;
  command       `run.py --mode=predict` on that PNG, process start to exit (the CSV written).
Times are seconds inside each child from its first statement (the interpreter's own start,
the same for all, is left out), wall and CPU (all threads; the steadier figure on a shared
machine), the median over `--repeats`; `ratio` is the predictor's `to_first_result` over
the baseline (the command's time is wall only). One table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Each phase's wall time and CPU time (all threads): on a shared machine the CPU time is the
# steadier figure.
_CLOCK = """
import json, sys, time
marks = [(time.perf_counter(), time.process_time())]
def mark():
    marks.append((time.perf_counter(), time.process_time()))
def report(**spans):  # name=(i, j): from mark i to mark j
    out = {}
    for name, (i, j) in spans.items():
        out[name], out[name + "_cpu"] = marks[j][0] - marks[i][0], marks[j][1] - marks[i][1]
    print("RESULT " + json.dumps(out))
"""
_BASELINE = (
    _CLOCK
    + """
import vkd_jax, jax, jax.numpy as jnp
jax.jit(lambda x: x * 2 + 1)(jnp.ones(3)).block_until_ready()
mark()
report(import_and_jit=(0, 1))
"""
)
_PREDICTOR = (
    _CLOCK
    + """
import vkd_jax
Predictor = vkd_jax.Predictor
mark()
p = Predictor.from_workdir(sys.argv[1])
mark()
out = p.predict([sys.argv[2]])
assert len(out.probs) == 1, out.skipped
mark()
report(import_vkd_jax=(0, 1), from_workdir=(1, 2), first_predict=(2, 3), to_first_result=(0, 3))
"""
)


def _env(source: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    env["PYTHONPATH"] = os.pathsep.join([source, *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def _child(source: str, code: str, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=source, env=_env(source), capture_output=True, text=True, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"the child in {source} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def _command(source: str, workdir: str, image: str, output: str) -> dict:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "run.py", f"--workdir={workdir}", "--mode=predict", f"--input={image}", f"--output={output}"],
        cwd=source,
        env=_env(source),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise RuntimeError(f"run.py --mode=predict in {source} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return {"predict_command": time.perf_counter() - start}


def measure(source: str, workdir: str, image: str, *, repeats: int, command: bool) -> dict:
    """The medians over `repeats` of each figure (seconds) for the checkout `source`."""
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            run = {**_child(source, _BASELINE), **_child(source, _PREDICTOR, workdir, image)}
            if command:
                run.update(_command(source, workdir, image, os.path.join(tmp, "predictions.csv")))
            runs.append(run)
    out = {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}
    out["ratio"] = round(out["to_first_result"] / out["import_and_jit"], 1)
    out["ratio_cpu"] = round(out["to_first_result_cpu"] / out["import_and_jit_cpu"], 1)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="a trained workdir (image-only at test time)")
    p.add_argument("--source", action="append", default=[], help="another checkout to measure beside this one")
    p.add_argument("--repeats", type=int, default=1, help="fresh processes per figure (the median is shown)")
    p.add_argument("--size", type=int, default=1024, help="side of the square PNG, pixels")
    p.add_argument("--no-command", dest="command", action="store_false", help="skip timing run.py --mode=predict")
    args = p.parse_args(argv)
    workdir = os.path.abspath(args.workdir)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        image = os.path.join(tmp, "image.png")
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (args.size, args.size), np.uint8)).save(image)
        for source in [ROOT, *args.source]:
            results[os.path.abspath(source)] = measure(
                os.path.abspath(source), workdir, image, repeats=args.repeats, command=args.command
            )
    sources = list(results)
    print(f"{'seconds (wall / cpu)':<24}" + "".join(f"{os.path.basename(x) or x:>24}" for x in sources))
    for name in [n for n in results[sources[0]] if not n.endswith("_cpu")]:
        cells = [f"{r[name]} / {r.get(name + '_cpu', '-')}" for r in results.values()]
        print(f"{name:<24}" + "".join(f"{c:>24}" for c in cells))
    print(json.dumps({"workdir": workdir, "repeats": args.repeats, "seconds": results}))


if __name__ == "__main__":
    main()
