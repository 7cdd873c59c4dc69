"""`run.py --mode=predict`: a trained model on the user's own images, no report needed.

The model, its class names and the preprocessing come from the training workdir (its
`config.json`, `model_info.json` and best checkpoint, read through `vkd_jax.workdir` and
`vkd_jax.sessions.restore_best`); the dataset is not needed. Each image
is read as the dataset build reads a source image (`data_pipelines.user_images`), then goes
through the eval pipeline's own resize and normalisation (`input_pipeline.image_batches`).
"""

from __future__ import annotations

import csv
import os

import jax
import numpy as np
from absl import logging

from data_pipelines import input_pipeline, user_images
from vkd_jax import config_checks, sessions, train, workdir as wd
from vkd_jax.models.vkd import IMAGE_ONLY_AT_TEST

CHUNK = 256  # files decoded at a time (bounds host memory on large folders)


def predict_files(config, workdir: str, spec: str, output: str) -> dict:
    """Writes `output` (CSV): one row per decodable image, each finding's probability (mean
    over the prior samples) and its spread (`<finding>_sd`). Undecodable files are named in
    the log and skipped. Returns counts and the skipped files."""
    if config.model.kind not in IMAGE_ONLY_AT_TEST:
        raise config_checks.ConfigError(
            f"the model in {workdir} is `{config.model.kind}`, which needs the report: predict mode runs image-only "
            f"models ({', '.join(IMAGE_ONLY_AT_TEST)})"
        )
    info = wd.read_model_info(workdir)
    paths = user_images.find_images(spec)
    mesh = train.make_mesh(config.num_devices or None)
    model, state, _, manager = sessions.restore_best(config, workdir, info, mesh)
    manager.close()
    eval_step = train.make_eval_step(model, mesh, num_samples=config.model.eval_samples)
    rng = jax.random.fold_in(jax.random.key(config.seed), 1)
    batch_size = config.train.eval_batch_size // jax.process_count()
    max_length = config.model.text_encoder.max_length
    class_names = info.class_names
    skipped = []

    def on_error(path, reason):
        logging.warning("skipped %s: %s", path, reason)
        skipped.append((path, reason))

    logging.info("predicting %d file(s) with %d prior samples each", len(paths), config.model.eval_samples)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    num_done, num_batches = 0, 0
    with open(output, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path"] + list(class_names) + [f"{c}_sd" for c in class_names])
        for start in range(0, len(paths), CHUNK):
            ok, stored, _ = user_images.load_images(
                paths[start : start + CHUNK], info.stored_image_size, on_error=on_error
            )
            rows = 0
            for images in input_pipeline.image_batches(config.data, stored, batch_size):
                n = len(images)
                pad = np.zeros((batch_size - n,) + images.shape[1:], images.dtype)
                tokens = np.zeros((batch_size, max_length), np.int32)  # never read: no report at test time
                batch = {"image": np.concatenate([images, pad]), "input_ids": tokens, "attention_mask": tokens}
                mean, std, _ = eval_step(state, train.shard_batch(batch, mesh), jax.random.fold_in(rng, num_batches))
                num_batches += 1
                mean, std = train.to_host(mean)[:n], train.to_host(std)[:n]
                for path, m, s in zip(ok[rows : rows + n], mean, std):
                    writer.writerow([path] + [f"{v:.6f}" for v in m] + [f"{v:.6f}" for v in s])
                rows += n
            num_done += rows
            logging.info("predicted %d/%d file(s)", num_done + len(skipped), len(paths))
    if skipped:
        logging.warning(
            "%d file(s) could not be decoded and were skipped: %s", len(skipped), ", ".join(p for p, _ in skipped)
        )
    logging.info("wrote %d prediction(s) to %s", num_done, output)
    return {"num_predicted": num_done, "skipped": skipped, "output": output}
