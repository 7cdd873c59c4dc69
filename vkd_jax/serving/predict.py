"""`run.py --mode=predict`: a trained model on the user's own images, no report needed.

The model is `vkd_jax.Predictor` (the workdir's best checkpoint, class names, thresholds
and preprocessing; no dataset, no TensorFlow): this module finds the files, writes the CSV
and logs the progress. A prediction is a function of the image and the model alone (the
same latent noise for every image). An image the model was not trained for (a lateral
view, a small or colour image...: `data_pipelines.image_checks`) is predicted but named in
one log line and in the `warnings` column. The output is checked before the model loads
(never an input, a directory or an unwritable place) and replaced atomically once every
image is predicted.
"""

from __future__ import annotations

import csv
import os
import tempfile

import numpy as np
from absl import logging

from data_pipelines import user_images
from vkd_jax import errors
from vkd_jax.runs import log
from vkd_jax.serving import predictor as predictor_lib

CHUNK = predictor_lib.CHUNK  # files decoded at a time (bounds host memory on large folders)
# A cell starting with one of these is a formula to a spreadsheet (OWASP, CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def predict_files(config, workdir: str, spec: str, output: str) -> dict:
    """Writes `output` (CSV): one row per decodable image, each finding's probability (mean
    over the prior samples), its spread (`<finding>_sd`) and its call (`<finding>_call`, 1
    where the probability reaches the threshold saved in the workdir) and its `warnings`
    (`image_checks` codes, `;`-separated). Undecodable files are named in the log and
    skipped. Returns counts and the skipped files."""
    paths = user_images.find_images(spec)
    tmp = _writable_temp(output, paths)
    try:
        model = predictor_lib.Predictor(config, workdir)
        class_names = model.class_names
        done = _predict(model, paths, tmp)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    num_done, skipped = done
    if skipped:
        logging.warning(
            "%d file(s) could not be decoded and were skipped: %s", len(skipped), ", ".join(p for p, _ in skipped)
        )
    logging.info("wrote %d prediction(s) of %d finding(s) to %s", num_done, len(class_names), output)
    return {"num_predicted": num_done, "skipped": skipped, "output": output}


def _writable_temp(output: str, paths: list[str]) -> str:
    """A new empty file beside `output`, proving it can be written there; refuses an
    `output` that is a directory, one of the input `paths` or read-only (UsageError)."""
    if os.path.isdir(output):
        raise errors.UsageError(f"--output={output} is a directory: name the CSV file to write")
    if os.path.exists(output):
        target = os.stat(output)
        if any(_is_file(p, target) for p in paths):
            raise errors.UsageError(f"--output={output} is one of the input images: write the CSV elsewhere")
        if not os.access(output, os.W_OK):
            raise errors.UsageError(f"--output={output} is read-only")
    folder = os.path.dirname(os.path.abspath(output))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(output)}.", suffix=".tmp")
    except OSError as e:
        raise errors.UsageError(f"--output={output} cannot be written: {errors.one_line(e)}") from None
    os.close(fd)
    return tmp


def _is_file(path: str, target: os.stat_result) -> bool:
    try:
        return os.path.samestat(os.stat(path), target)
    except OSError:
        return False


def csv_writer(f):
    """Numbers bare, every text cell quoted (`_text_cell` escapes formulas)."""
    return csv.writer(f, quoting=csv.QUOTE_NONNUMERIC)


def _text_cell(text: str) -> str:
    """A text cell a spreadsheet shows as text: a leading formula character is escaped by a
    single quote (the writer quotes every text cell)."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _predict(model: predictor_lib.Predictor, paths, out_path) -> tuple[int, list[tuple[str, str]]]:
    class_names = model.class_names
    skipped = []

    def on_error(path, reason):
        logging.warning("skipped %s: %s", path, reason)
        skipped.append((path, reason))

    logging.info("predicting %d file(s) with %d prior samples each", len(paths), model.num_samples)
    num_done = 0
    progress = log.progress("predicting", len(paths), "file(s)")
    with open(out_path, "w", newline="") as f:
        writer = csv_writer(f)
        header = ["path", *class_names, *(f"{c}_sd" for c in class_names), *(f"{c}_call" for c in class_names)]
        writer.writerow([_text_cell(h) for h in [*header, "warnings"]])
        for first in range(0, len(paths), CHUNK):
            loaded = model.load(paths[first : first + CHUNK], on_error=on_error)
            for start in range(0, len(loaded.names), model.batch_size):
                rows = slice(start, start + model.batch_size)
                mean, std = model.probabilities(loaded.stored[rows])
                for path, m, s, c, w in zip(loaded.names[rows], mean, std, model.calls(mean), loaded.warnings[rows]):
                    writer.writerow([_text_cell(path), *_numbers(m), *_numbers(s), *c.tolist(), ";".join(w)])
                done = num_done + min(start + model.batch_size, len(loaded.names)) + len(skipped)
                progress.update(done - progress.done)
            num_done += len(loaded.names)
    return num_done, skipped


def _numbers(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in values]
