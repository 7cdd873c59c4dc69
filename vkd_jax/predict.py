"""`run.py --mode=predict`: a trained model on the user's own images, no report needed.

The model, its class names and the preprocessing come from the training workdir (its
`config.json`, `model_info.json`, `thresholds.json` and best checkpoint, read through
`vkd_jax.workdir` and `vkd_jax.checkpoint.restore_best`); the dataset is not needed. Each image
is read as the dataset build reads a source image (`data_pipelines.user_images`), then goes
through the eval pipeline's own resize and normalisation (`input_pipeline.image_batches`).

A prediction is a function of the image and the model alone: every image gets the same
latent noise (`train.make_eval_step(shared_noise=True)`), whatever its batch or place.
The output is checked before the model loads (never an input, a directory or an unwritable
place) and replaced atomically once every image is predicted.
"""

from __future__ import annotations

import csv
import os
import tempfile
import time

import jax
import numpy as np
from absl import logging

from data_pipelines import input_pipeline, user_images
from vkd_jax import checkpoint, cli, config_checks, train, workdir as wd
from vkd_jax.models.vkd import IMAGE_ONLY_AT_TEST

CHUNK = 256  # files decoded at a time (bounds host memory on large folders)
PROGRESS_EVERY_S = 10.0  # at most one progress line per interval
DEFAULT_THRESHOLD = 0.5  # the calls of a run without saved thresholds
# A cell starting with one of these is a formula to a spreadsheet (OWASP, CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def predict_files(config, workdir: str, spec: str, output: str) -> dict:
    """Writes `output` (CSV): one row per decodable image, each finding's probability (mean
    over the prior samples), its spread (`<finding>_sd`) and its call (`<finding>_call`, 1
    where the probability reaches the threshold saved in the workdir). Undecodable files are
    named in the log and skipped. Returns counts and the skipped files."""
    if config.model.kind not in IMAGE_ONLY_AT_TEST:
        raise config_checks.ConfigError(
            f"the model in {workdir} is `{config.model.kind}`, which needs the report: predict mode runs image-only "
            f"models ({', '.join(IMAGE_ONLY_AT_TEST)})"
        )
    info = wd.read_model_info(workdir)
    class_names = info.class_names
    paths = user_images.find_images(spec)
    saved = wd.read_thresholds(workdir)
    tmp = _writable_temp(output, paths)
    try:
        done = _predict(config, workdir, info, paths, saved, tmp)
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
        raise cli.UsageError(f"--output={output} is a directory: name the CSV file to write")
    if os.path.exists(output):
        target = os.stat(output)
        if any(_is_file(p, target) for p in paths):
            raise cli.UsageError(f"--output={output} is one of the input images: write the CSV elsewhere")
        if not os.access(output, os.W_OK):
            raise cli.UsageError(f"--output={output} is read-only")
    folder = os.path.dirname(os.path.abspath(output))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(output)}.", suffix=".tmp")
    except OSError as e:
        raise cli.UsageError(f"--output={output} cannot be written: {cli.one_line(e)}") from None
    os.close(fd)
    return tmp


def _is_file(path: str, target: os.stat_result) -> bool:
    try:
        return os.path.samestat(os.stat(path), target)
    except OSError:
        return False


class Progress:
    """`update(done)` logs `done/total` files and the rate at most once per `every_s`."""

    def __init__(self, total: int, every_s: float = PROGRESS_EVERY_S, clock=time.monotonic, log=logging.info):
        self.total, self.every_s, self.clock, self.log = total, every_s, clock, log
        self.start = self.last = clock()

    def update(self, done: int) -> None:
        now = self.clock()
        if now - self.last >= self.every_s:
            self.log("predicted %d/%d file(s), %.1f file(s)/s", done, self.total, done / (now - self.start))
            self.last = now


def csv_writer(f):
    """Numbers bare, every text cell quoted (`_text_cell` escapes formulas)."""
    return csv.writer(f, quoting=csv.QUOTE_NONNUMERIC)


def _thresholds(saved: dict | None, class_names, step: int, workdir: str) -> np.ndarray:
    if saved is None:
        logging.warning(
            "%s has no saved thresholds (a run from before they were saved): the *_call columns use %g; "
            "`run.py --mode=eval --workdir=%s` saves them",
            workdir,
            DEFAULT_THRESHOLD,
            workdir,
        )
        return np.full(len(class_names), DEFAULT_THRESHOLD)
    missing = [c for c in class_names if c not in saved["thresholds"]]
    if missing:
        raise wd.RunFileError(
            f"{wd.path(workdir, wd.THRESHOLDS)} has no threshold for {', '.join(missing)}: "
            f"run `run.py --mode=eval --workdir={workdir}` again"
        )
    if saved.get("checkpoint_step") != step:
        logging.warning(
            "the thresholds were chosen for the checkpoint of step %s, the model is step %d: "
            "`run.py --mode=eval` chooses them again",
            saved.get("checkpoint_step"),
            step,
        )
    logging.info("calls at the thresholds chosen by %s on %s", saved.get("method"), saved.get("split"))
    return np.array([float(saved["thresholds"][c]) for c in class_names])


def _text_cell(text: str) -> str:
    """A text cell a spreadsheet shows as text: a leading formula character is escaped by a
    single quote (the writer quotes every text cell)."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _predict(config, workdir, info, paths, saved, out_path) -> tuple[int, list[tuple[str, str]]]:
    mesh = train.make_mesh(config.num_devices or None)
    model, state, _, manager = checkpoint.restore_best(config, workdir, info, mesh)
    manager.close()
    class_names = info.class_names
    thresholds = _thresholds(saved, class_names, int(state.step), workdir)
    eval_step = train.make_eval_step(model, mesh, num_samples=config.model.eval_samples, shared_noise=True)
    rng = jax.random.fold_in(jax.random.key(config.seed), 1)
    batch_size = config.train.eval_batch_size // jax.process_count()
    max_length = config.model.text_encoder.max_length
    skipped = []

    def on_error(path, reason):
        logging.warning("skipped %s: %s", path, reason)
        skipped.append((path, reason))

    logging.info("predicting %d file(s) with %d prior samples each", len(paths), config.model.eval_samples)
    num_done, progress = 0, Progress(len(paths))
    with open(out_path, "w", newline="") as f:
        writer = csv_writer(f)
        header = ["path", *class_names, *(f"{c}_sd" for c in class_names), *(f"{c}_call" for c in class_names)]
        writer.writerow([_text_cell(h) for h in header])
        for first in range(0, len(paths), CHUNK):
            ok, stored, _ = user_images.load_images(
                paths[first : first + CHUNK], info.stored_image_size, on_error=on_error
            )
            rows = 0
            for images in input_pipeline.image_batches(config.data, stored, batch_size):
                n = len(images)
                pad = np.zeros((batch_size - n,) + images.shape[1:], images.dtype)
                tokens = np.zeros((batch_size, max_length), np.int32)  # never read: no report at test time
                batch = {"image": np.concatenate([images, pad]), "input_ids": tokens, "attention_mask": tokens}
                mean, std, _ = eval_step(state, train.shard_batch(batch, mesh), rng)
                mean, std = train.to_host(mean)[:n], train.to_host(std)[:n]
                calls = (mean >= thresholds).astype(int)
                for path, m, s, c in zip(ok[rows : rows + n], mean, std, calls):
                    writer.writerow([_text_cell(path), *_numbers(m), *_numbers(s), *c.tolist()])
                rows += n
                progress.update(num_done + rows + len(skipped))  # predicted or skipped
            num_done += rows
    return num_done, skipped


def _numbers(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in values]
