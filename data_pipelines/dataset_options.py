"""Where each dataset's build options live in a config's `data` section (numpy-free, no TensorFlow:
`configs/` and the run fingerprints import it)."""

from __future__ import annotations

# The section of `data` that holds each dataset's build options; a run reads only the one of
# its `data.name` (the others change nothing it computes).
DATASET_OPTIONS = {
    "mimic_cxr": "mimic_cxr",
    "openi": "openi",
    "chestxray14": "chestxray14",
    "csv": "csv",
    "synthetic_cxr": "synthetic",
}


def active_data(data: dict) -> dict:
    """A data section (as a dict) without the build options of datasets other than its
    `name`: the part a run reads (run fingerprints and feature caches hash only this)."""
    inactive = [section for name, section in DATASET_OPTIONS.items() if name != data["name"]]
    return {key: value for key, value in data.items() if key not in inactive}
