"""`vkd_jax.Predictor`: a trained model on images from Python, without TensorFlow.

    p = vkd_jax.Predictor.from_workdir("/tmp/vkd-demo")
    out = p.predict(["a.png", "b.dcm", pixels])   # paths, or uint8/uint16 arrays
    out.class_names, out.probs, out.spreads, out.calls, out.warnings

The model, class names, image size and thresholds come from the training workdir
(`config.json`, `model_info.json`, `thresholds.json`, the best checkpoint restored by
`restore.restore_best`). An input is read as the dataset build reads a source image
(`data_pipelines.user_images`) and preprocessed by `data_pipelines.preprocess`, the numpy
port of the eval pipeline. Batches are padded to the devices times a power of two, at most
`batch_size`, so the model compiles for a handful of shapes at most. Every image gets the
same latent noise (`make_eval_step(shared_noise=True)`): a prediction depends on the image
alone. Predict mode (`vkd_jax.serving.predict`) runs this class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np
from absl import logging

from data_pipelines import image_checks, preprocess, user_images
from vkd_jax import errors, inference, sharding
from vkd_jax.models.vkd import IMAGE_ONLY_AT_TEST
from vkd_jax.runs import restore, workdir as wd

DEFAULT_THRESHOLD = 0.5  # the calls of a run without saved thresholds
CHUNK = 256  # inputs decoded at a time (bounds host memory on long lists)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One row per input that could be read, in input order: `names[i]` (its path, or
    `<array j>` for the j-th input), the mean probability of each finding over the latent
    samples `probs[i]`, their standard deviation `spreads[i]`, `calls[i]` (1 where the
    probability reaches `thresholds`) and its `image_checks` codes `warnings[i]`. `skipped`:
    [(name, reason)] of the inputs that could not be read."""

    names: list[str]
    class_names: tuple[str, ...]
    probs: np.ndarray  # float32 [N, K]
    spreads: np.ndarray  # float32 [N, K]
    calls: np.ndarray  # int [N, K]
    thresholds: np.ndarray  # float [K]
    warnings: list[list[str]]
    skipped: list[tuple[str, str]]


class Predictor:
    """The best checkpoint of a workdir, ready to predict images (see the module docstring)."""

    def __init__(self, config, workdir: str, *, batch_size: int | None = None):
        """`config`: the run's (`workdir.read_config`, with any evaluation overrides);
        `batch_size`: images per model call (default `train.eval_batch_size` per process), a
        multiple of the devices used."""
        if batch_size is not None and not (isinstance(batch_size, int) and batch_size > 0):
            raise errors.UsageError(f"batch_size={batch_size!r}: expected a positive int (a multiple of the devices)")
        if config.model.kind not in IMAGE_ONLY_AT_TEST:
            raise errors.ConfigError(
                f"the model in {workdir} is `{config.model.kind}`, which needs the report: prediction runs "
                f"image-only models ({', '.join(IMAGE_ONLY_AT_TEST)})"
            )
        self.info = wd.read_model_info(workdir)
        self.class_names = self.info.class_names
        self.data_config = config.data
        self.mesh = sharding.make_mesh(config.num_devices or None)
        self.batch_size = batch_size or config.train.eval_batch_size // jax.process_count()
        if self.batch_size % self.mesh.size:
            raise errors.UsageError(f"batch_size={self.batch_size} is not a multiple of the {self.mesh.size} devices")
        model, self.state, _, manager = restore.restore_best(config, workdir, self.info, self.mesh, image_only=True)
        manager.close()
        self.thresholds = thresholds(wd.read_thresholds(workdir), self.class_names, int(self.state.step), workdir)
        self.num_samples = config.model.eval_samples
        self._eval_step = inference.make_eval_step(model, self.mesh, num_samples=self.num_samples, shared_noise=True)
        self._rng = inference.noise_rng(config.seed)
        self._compiled: set[int] = set()  # the batch sizes compiled so far
        self._tokens = np.zeros((self.batch_size, config.model.text_encoder.max_length), np.int32)  # never read

    @classmethod
    def from_workdir(cls, workdir: str, *, batch_size: int | None = None) -> Predictor:
        """The model trained in `workdir`, with the config saved there."""
        return cls(wd.read_config(workdir), workdir, batch_size=batch_size)

    def predict(self, images) -> Prediction:
        """`images`: a path, an array, or a sequence of them (uint8 or uint16 [H, W], [H, W, 1],
        or uint8 RGB [H, W, 3]). Unreadable inputs are logged and listed in `skipped`; each
        input with warnings gets one log line. An item that is neither a path nor an array (None,
        a number, bytes) is a mistake in the call, not in the data: `UsageError` naming it,
        before any image is read."""
        items = [images] if _is_input(images) else images
        if isinstance(items, bytes) or not isinstance(items, Sequence):
            raise errors.UsageError(f"images: expected a path, an array or a sequence of them, got {_kind(items)}")
        for i, item in enumerate(items):
            if not _is_input(item):
                raise errors.UsageError(
                    f"images[{i}]: expected a path (str or os.PathLike) or a uint8/uint16 numpy array, got "
                    f"{_kind(item)}"
                    + (" (encoded image data? save it to a file or decode it)" if isinstance(item, bytes) else "")
                )
        names, probs, spreads, warnings, skipped = [], [], [], [], []
        for first in range(0, len(items), CHUNK):
            loaded = self.load(items[first : first + CHUNK], offset=first)
            mean, std = self.probabilities(loaded.stored)
            names += loaded.names
            probs.append(mean)
            spreads.append(std)
            warnings += loaded.warnings
            skipped += loaded.failed
        k = len(self.class_names)
        probs = np.concatenate([np.zeros((0, k), np.float32), *probs])
        return Prediction(
            names=names,
            class_names=self.class_names,
            probs=probs,
            spreads=np.concatenate([np.zeros((0, k), np.float32), *spreads]),
            calls=self.calls(probs),
            thresholds=self.thresholds,
            warnings=warnings,
            skipped=skipped,
        )

    def load(self, items: Sequence, *, offset: int = 0, on_error=None) -> user_images.Loaded:
        """`user_images.load_inputs` at the model's stored size (arrays named by their place
        `offset + i`); logs each failure (unless `on_error` takes them) and each input's
        warnings, one line per input."""

        def log_error(name, reason):
            logging.warning("skipped %s: %s", name, reason)

        loaded = user_images.load_inputs(
            items, self.info.stored_image_size, offset=offset, on_error=on_error or log_error
        )
        for name, codes in zip(loaded.names, loaded.warnings):
            if codes:
                logging.warning("%s: %s", name, image_checks.describe(codes))
        return loaded

    def probabilities(self, stored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stored images (uint8 [N, S, S, 1]) -> (mean, spread) float32 [N, K], in batches of
        `batch_size` (the last padded with zeros to `padded_size`)."""
        means, stds = [np.zeros((0, len(self.class_names)), np.float32)], [np.zeros((0, len(self.class_names)))]
        for first in range(0, len(stored), self.batch_size):
            images = preprocess.eval_images(self.data_config, stored[first : first + self.batch_size])
            n = len(images)
            size = self.padded_size(n)
            pad = np.zeros((size - n,) + images.shape[1:], np.float32)
            tokens = self._tokens[:size]
            batch = {"image": np.concatenate([images, pad]), "input_ids": tokens, "attention_mask": tokens}
            if size not in self._compiled:  # the first batch of a size compiles the model for it
                logging.info("compiling the model for batches of %d image(s)...", size)
                self._compiled.add(size)
            mean, std, _ = self._eval_step(self.state, sharding.shard_batch(batch, self.mesh), self._rng)
            means.append(sharding.to_host(mean)[:n])
            stds.append(sharding.to_host(std)[:n])
        return np.concatenate(means).astype(np.float32), np.concatenate(stds).astype(np.float32)

    def padded_size(self, n: int) -> int:
        """The batch that `n` images are padded to: the devices times the smallest power of two
        that holds them, at most `batch_size`; so a lone image does not pay for a whole batch,
        and the model compiles for a handful of shapes at most."""
        size = self.mesh.size
        while size < n and size < self.batch_size:
            size *= 2
        return min(size, self.batch_size)

    def calls(self, probs: np.ndarray) -> np.ndarray:
        """1 where a probability reaches its finding's threshold, else 0 (int [N, K])."""
        return (probs >= self.thresholds).astype(int)


def _is_input(item) -> bool:
    """A path or an array (what `Predictor.predict` reads); bytes paths are not taken."""
    return isinstance(item, (str, np.ndarray)) or hasattr(item, "__fspath__") and not isinstance(item, bytes)


def _kind(item) -> str:
    return repr(item) if item is None or isinstance(item, (int, float)) else f"a {type(item).__name__}"


def thresholds(saved: dict | None, class_names, step: int, workdir: str) -> np.ndarray:
    """The per-finding thresholds of `workdir.read_thresholds` in `class_names`' order;
    DEFAULT_THRESHOLD (with a warning) where the run has none."""
    if saved is None:
        logging.warning(
            "%s has no saved thresholds (a run from before they were saved): the calls use %g; "
            "`run.py --mode=eval --workdir=%s` saves them",
            workdir,
            DEFAULT_THRESHOLD,
            workdir,
        )
        return np.full(len(class_names), DEFAULT_THRESHOLD)
    missing = [c for c in class_names if c not in saved["thresholds"]]
    if missing:
        raise errors.RunFileError(
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
