"""The config a training run saved in its workdir (`config.json`), for eval and predict modes."""

import json
import os

import ml_collections

from configs import default
from data_pipelines import labels


def load(workdir: str) -> ml_collections.ConfigDict:
    """`<workdir>/config.json` on top of the defaults (so fields added since get their default)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: --workdir must be the directory of a `run.py` training run")

    def tuples(x):  # JSON has lists where the config had tuples
        if isinstance(x, dict):
            return {k: tuples(v) for k, v in x.items()}
        return tuple(tuples(v) for v in x) if isinstance(x, list) else x

    with open(path) as f:
        saved = tuples(json.load(f))
    train = saved.get("train", {})
    if "kl_weight" in train:  # saved by 0.1.0: a KL weight on the BCE's mean over the labels
        train["beta"] = train.pop("kl_weight") * labels.NUM_CLASSES
    saved = ml_collections.ConfigDict(saved)
    config = default.get_config()
    config.update(saved)
    return config
