"""The files of a run's workdir: every name, every writer and every reader is here.

    <workdir>/config.json        the config of the training (eval and predict read it)
    <workdir>/model_info.json    what the model was built from besides the config
    <workdir>/checkpoints/       orbax (`vkd_jax.runs.checkpoint`)
    <workdir>/tokenizer/         the synthetic vocabulary, when the config asks for it
    <workdir>/tensorboard/       training summaries
    <workdir>/thresholds.json    per-finding decision thresholds chosen on the validation
                                 split by the last evaluation (predict's `<finding>_call`)
    <workdir>/train_metrics.json the training's last logged metrics (results.json's final_train)
                                 and the steps logged since, written with each checkpoint
    <workdir>/results.json, report.md, figures/            the test split's evaluation
    <workdir>/results_<split>.json, report_<split>.md, figures_<split>/   another split's
    <workdir>/.lock, .lock.json  the lock of the training or evaluation writing the workdir,
                                 and who holds it (`vkd_jax.runs.lock`)

Files are written atomically (a temporary file beside them, then renamed), so a command
that stops halfway leaves the old file or the new one, never a truncated one. A file that
cannot be read is a `RunFileError` naming the file and what to do.
"""

from __future__ import annotations

import dataclasses
import json
import os

import ml_collections
import transformers
from absl import logging

from vkd_jax.errors import RunFileError

CONFIG = "config.json"
MODEL_INFO = "model_info.json"
THRESHOLDS = "thresholds.json"
TRAIN_METRICS = "train_metrics.json"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
LOCK = ".lock"
LOCK_HOLDER = ".lock.json"


def path(workdir: str, name: str) -> str:
    return os.path.join(workdir, name)


def tokenizer_dir(workdir: str) -> str:
    return path(workdir, "tokenizer")


def output_names(split: str, test_split: str) -> tuple[str, str, str]:
    """(results, report, figures) names in the workdir: plain for the test split, else suffixed."""
    suffix = "" if split == test_split else f"_{split}"
    return f"results{suffix}.json", f"report{suffix}.md", f"figures{suffix}"


def write_text(workdir: str, name: str, text: str) -> None:
    """`<workdir>/<name>` replaced atomically by `text`."""
    target = path(workdir, name)
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    tmp = f"{target}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, target)


def write_json(workdir: str, name: str, value) -> None:
    write_text(workdir, name, json.dumps(value, indent=2))


def _read_json(workdir: str, name: str, *, missing: str, damaged: str) -> dict:
    file = path(workdir, name)
    if not os.path.exists(file):
        raise RunFileError(f"{file} is missing: {missing}")
    try:
        with open(file) as f:
            value = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunFileError(f"{file} cannot be read ({e}): {damaged}") from None
    if not isinstance(value, dict):
        raise RunFileError(f"{file} does not hold a JSON object: {damaged}")
    return value


# --- config.json ---------------------------------------------------------------------------


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    write_text(workdir, CONFIG, config.to_json_best_effort(indent=2))


def read_config(workdir: str) -> ml_collections.ConfigDict:
    """`<workdir>/config.json` on top of the defaults (so fields added since get their default)."""
    from configs import default  # the defaults of every field
    from data_pipelines import labels

    saved = _read_json(
        workdir,
        CONFIG,
        missing="--workdir must be the directory of a `run.py` training run",
        damaged="it was damaged; the config of the last evaluation is under 'config' in results.json: "
        "save that object as config.json (or pass --config=...)",
    )

    def tuples(x):  # JSON has lists where the config had tuples
        if isinstance(x, dict):
            return {k: tuples(v) for k, v in x.items()}
        return tuple(tuples(v) for v in x) if isinstance(x, list) else x

    saved = tuples(saved)
    train = saved.get("train", {})
    if "kl_weight" in train:  # saved by 0.1.0: a KL weight on the BCE's mean over the labels
        train["beta"] = train.pop("kl_weight") * labels.NUM_CLASSES
    config = default.get_config()
    try:
        config.update(ml_collections.ConfigDict(saved))
    except (TypeError, ValueError, KeyError) as e:
        raise RunFileError(
            f"{path(workdir, CONFIG)} does not fit the config's fields ({e}); pass --config=..."
        ) from None
    return config


# --- model_info.json -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a checkpoint's model was built from besides the config: the dataset's class
    names and stored image size, the tokenizer's size and the text encoder's architecture
    (a pretrained one's comes from its files, which eval and predict do not need)."""

    class_names: tuple[str, ...]
    stored_image_size: int
    vocab_size: int
    text_config: transformers.BertConfig | None

    def to_json(self) -> dict:
        return {
            "class_names": list(self.class_names),
            "stored_image_size": self.stored_image_size,
            "vocab_size": self.vocab_size,
            "text_config": self.text_config.to_dict() if self.text_config is not None else None,
        }


def write_model_info(workdir: str, info: ModelInfo) -> None:
    write_json(workdir, MODEL_INFO, info.to_json())


def read_model_info(workdir: str) -> ModelInfo:
    rerun = "run the training command again on this workdir (it resumes, then rewrites the file)"
    raw = _read_json(
        workdir,
        MODEL_INFO,
        damaged=f"it was damaged; {rerun}",
        missing=f"{workdir} is not the workdir of a `run.py` training (it writes {MODEL_INFO} when training starts)",
    )
    try:
        text = raw["text_config"]
        return ModelInfo(
            class_names=tuple(raw["class_names"]),
            stored_image_size=int(raw["stored_image_size"]),
            vocab_size=int(raw["vocab_size"]),
            text_config=transformers.BertConfig.from_dict(text) if text else None,
        )
    except KeyError as e:
        raise RunFileError(f"{path(workdir, MODEL_INFO)} lacks the key {e}: {rerun}") from None
    except (TypeError, ValueError) as e:
        raise RunFileError(f"{path(workdir, MODEL_INFO)} holds a bad value ({e}): {rerun}") from None


# --- thresholds.json -----------------------------------------------------------------------


def write_thresholds(workdir: str, thresholds: dict[str, float], *, method: str, split: str, step: int | None) -> None:
    """The per-finding thresholds (`probability >= threshold` is a positive call) that
    `method` chose on `split` for the checkpoint of `step`."""
    write_json(
        workdir,
        THRESHOLDS,
        {"method": method, "split": split, "checkpoint_step": step, "thresholds": thresholds},
    )


def read_thresholds(workdir: str) -> dict | None:
    """`write_thresholds`'s object, or None where the run has none (trained before they were
    saved, or never evaluated)."""
    if not os.path.exists(path(workdir, THRESHOLDS)):
        return None
    redo = f"run `run.py --mode=eval --workdir={workdir}` again (it rewrites the file)"
    raw = _read_json(workdir, THRESHOLDS, missing=redo, damaged=f"it was damaged; {redo}")
    values = raw.get("thresholds")
    if not isinstance(values, dict) or not all(isinstance(v, (int, float)) for v in values.values()):
        raise RunFileError(f"{path(workdir, THRESHOLDS)} lacks its per-finding thresholds: {redo}")
    return raw


# --- train_metrics.json --------------------------------------------------------------------


def write_train_metrics(workdir: str, step: int, last_logged: dict | None, since: list[dict[str, float]]) -> None:
    """Written with the checkpoint of `step`: the last logged training interval (results.json's
    `final_train`: `{"step", "steps", "metrics"}`) and the metrics of each step logged since,
    so that a run resumed from this checkpoint logs (and reports) the same intervals as one
    that was never stopped."""
    write_json(workdir, TRAIN_METRICS, {"step": step, "last_logged": last_logged, "since": since})


def read_train_metrics(workdir: str) -> dict | None:
    """`write_train_metrics`'s object; None, with a warning where it is damaged, where there is
    none (a run from before it was written, or one that saved no checkpoint yet)."""
    if not os.path.exists(path(workdir, TRAIN_METRICS)):
        return None
    try:
        raw = _read_json(workdir, TRAIN_METRICS, missing="", damaged="")
    except RunFileError as e:
        logging.warning("%s; results.json's final_train is left out", e)
        return None
    if not isinstance(raw.get("step"), int) or not isinstance(raw.get("since"), list):
        logging.warning(
            "%s lacks its step or metrics; results.json's final_train is left out", path(workdir, TRAIN_METRICS)
        )
        return None
    return raw
