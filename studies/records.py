"""A study's recorded runs: what is kept of each run, keyed by a fingerprint of its config.

Every finished run's summary is a JSON file under the study's record directory (committed), so
a study can be stopped and resumed, across sessions and machines. A record whose config has
changed since is never silently replaced (`ChangedRun`).
"""

from __future__ import annotations

import hashlib
import json
import os

# Paths that differ between machines and do not change what a run computes.
_UNFINGERPRINTED = (
    ("data", "data_dir"),
    ("model", "text_encoder", "cache_dir"),
    ("model", "text_encoder", "init_from"),
    ("model", "text_encoder", "tokenizer"),
)
# Fields added after runs were recorded, each with the value at which a run computes what it
# computed before the field existed: left out of a fingerprint at that value, so the records
# that predate a field stay the runs of their configs.
_ADDED = {
    ("data", "synthetic", "strengths"): "",
    ("data", "synthetic", "mild_drop"): 0.0,
    ("model", "details_from"): "none",
    ("train", "details_weight"): 0.0,
    ("train", "distill_keep_positives"): False,
}


def fingerprinted(config) -> dict:
    """The part of `config` that decides what a run computes: all of it but the paths that
    differ between machines, the fields added since the first records at their neutral value
    (`_ADDED`) and the build options of datasets other than `data.name`."""
    from data_pipelines.dataset_options import active_data

    d = json.loads(config.to_json_best_effort())
    for path in (*_UNFINGERPRINTED, *_ADDED):
        node = d
        for key in path[:-1]:
            node = node.get(key, {})
        if path not in _ADDED or node.get(path[-1]) == _ADDED[path]:
            node.pop(path[-1], None)
    d["data"] = active_data(d["data"])
    return d


def fingerprint(config) -> str:
    """A short hash of `fingerprinted(config)`."""
    return hashlib.sha256(json.dumps(fingerprinted(config), sort_keys=True).encode()).hexdigest()[:16]


def config_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The dotted fields where two `fingerprinted` configs differ ('field: old -> new')."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b, name = old.get(key, "<absent>"), new.get(key, "<absent>"), prefix + key
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_changes(a, b, name + ".")
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out


def summary(results: dict, config) -> dict:
    """What the study keeps of one run's results.json."""
    return {
        "fingerprint": fingerprint(config),
        "config": fingerprinted(config),
        "macro_auc": results["macro_auc"],
        "macro_ap": results["average_precision"]["macro"],
        "val_macro_auc": results["val_macro_auc"],
        "per_class_auc": results["per_class_auc"],
        "test_kl": results.get("kl"),
        "final_train": results.get("final_train"),
        "checkpoint_step": results["checkpoint_step"],
        "elapsed_s": results["elapsed_s"],
        # The machine and libraries that evaluated the run (`vkd_jax.runs.environment`);
        # never part of the fingerprint.
        "environment": results.get("environment"),
    }


def record_path(record_dir: str, *parts: str) -> str:
    return os.path.join(record_dir, *parts[:-1], f"{parts[-1]}.json")


class ChangedRun(ValueError):
    """A recorded run's config differs from the one the study now asks for."""


def load_record(path: str, config, rerun_changed: bool = False) -> dict | None:
    """The recorded summary at `path`, None if there is none yet.

    A record of another config is never silently replaced: that raises `ChangedRun`, naming
    the changed fields where the record keeps its config, unless `rerun_changed` (then None:
    the run is trained again under the new config).
    """
    if not os.path.exists(path):
        return None
    with open(path) as f:
        rec = json.load(f)
    if rec.get("fingerprint") == fingerprint(config):
        return rec
    if rerun_changed:
        return None
    if "config" in rec:
        what = "; ".join(config_changes(rec["config"], fingerprinted(config))[:8])
    else:
        what = "the record predates recorded configs, so the fields are not known"
    raise ChangedRun(
        f"{path} was recorded for another config ({what}). Delete it, or pass --rerun_changed, "
        "to train it again under the current config"
    )


def save_record(path: str, rec: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(rec, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
