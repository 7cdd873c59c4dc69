"""The 14 CheXpert findings, their order, and the label codes stored in every record.

Raw labels are stored as they appear in the source (`int8`); how uncertain and unmentioned
findings become training targets is decided in the input pipeline from the config, so a
change of policy needs no rebuild.
"""

from __future__ import annotations

import math

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)
NUM_CLASSES = len(CLASS_NAMES)
NO_FINDING = CLASS_NAMES.index("No Finding")

# Codes of the stored `labels` feature.
POSITIVE, NEGATIVE, UNCERTAIN, NOT_MENTIONED = 1, 0, -1, -2

UNCERTAINTY_POLICIES = ("zeros", "ones", "ignore")


def apply_uncertainty_policy(
    labels: np.ndarray, policy: str = "zeros", no_finding_rule: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Maps raw label codes `[..., 14]` to `(targets, mask)`, both float32 `[..., 14]`.

    `zeros` (the reference's): uncertain and not-mentioned become 0; `ones`: uncertain
    becomes 1, not-mentioned 0; `ignore`: uncertain and not-mentioned are masked out of
    the loss (mask 0). With `no_finding_rule`, "No Finding" is set to 1 (and unmasked)
    wherever no other finding ends up positive, as the reference code does.
    """
    if policy not in UNCERTAINTY_POLICIES:
        raise ValueError(f"uncertainty policy must be one of {UNCERTAINTY_POLICIES}, got {policy!r}")
    labels = np.asarray(labels)
    if labels.shape[-1] != NUM_CLASSES:
        raise ValueError(f"labels must end in {NUM_CLASSES} classes, got shape {labels.shape}")
    positive = labels == POSITIVE
    uncertain = labels == UNCERTAIN
    targets = positive | (uncertain if policy == "ones" else False)
    mask = np.ones(labels.shape, bool)
    if policy == "ignore":
        mask = (labels == POSITIVE) | (labels == NEGATIVE)
    targets = targets.astype(np.float32)
    mask = mask.astype(np.float32)
    if no_finding_rule:
        others = np.delete(targets, NO_FINDING, axis=-1).max(axis=-1) == 0
        targets[..., NO_FINDING] = np.where(others, 1.0, targets[..., NO_FINDING])
        mask[..., NO_FINDING] = np.where(others, 1.0, mask[..., NO_FINDING])
    return targets, mask


# NIH ChestX-ray14's 14 findings, in the order of the `nih_labels` feature of `chestxray14`.
NIH_CLASS_NAMES: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Effusion",
    "Emphysema",
    "Fibrosis",
    "Hernia",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pleural_Thickening",
    "Pneumonia",
    "Pneumothorax",
)
NIH_NO_FINDING = "No Finding"  # A `Finding Labels` value, not one of the 14 classes.

# NIH name -> CheXpert name, only where the two name the same finding. Left out on
# purpose: Infiltration (~ Lung Opacity), Mass and Nodule (~ Lung Lesion) and
# Pleural_Thickening (~ Pleural Other) are narrower than their CheXpert neighbours, and
# Emphysema, Fibrosis and Hernia have none. "No Finding" means none of the 14 NIH
# findings, which is close to, not the same as, CheXpert's (support devices allowed).
NIH_TO_CHEXPERT: dict[str, str] = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Consolidation": "Consolidation",
    "Edema": "Edema",
    "Effusion": "Pleural Effusion",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
    NIH_NO_FINDING: "No Finding",
}

LABEL_SETS = ("chexpert", "nih")


def class_names(label_set: str = "chexpert") -> tuple[str, ...]:
    """Class names, in order, of a label set: 'chexpert' (`labels`) or 'nih' (`nih_labels`)."""
    if label_set not in LABEL_SETS:
        raise ValueError(f"label set must be one of {LABEL_SETS}, got {label_set!r}")
    return CLASS_NAMES if label_set == "chexpert" else NIH_CLASS_NAMES


def nih_findings_to_labels(findings: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """A ChestX-ray14 image's findings -> `(labels, nih_labels)`, both int8 [14].

    `nih_labels` is 1/0 in `NIH_CLASS_NAMES` order. `labels` is in CheXpert order: 1/0 for
    the classes of `NIH_TO_CHEXPERT` (the NLP-mined NIH labels have no uncertain value) and
    NOT_MENTIONED for the rest, so a MIMIC-trained model is scored on the shared findings
    only under the 'ignore' policy.
    """
    unknown = findings - set(NIH_CLASS_NAMES) - {NIH_NO_FINDING}
    if unknown:
        raise ValueError(
            f"unknown ChestX-ray14 findings {sorted(unknown)}; expected names "
            f"from {NIH_CLASS_NAMES} or {NIH_NO_FINDING!r}"
        )
    nih = np.array([name in findings for name in NIH_CLASS_NAMES], np.int8)
    labels = np.full(NUM_CLASSES, NOT_MENTIONED, np.int8)
    for nih_name, name in NIH_TO_CHEXPERT.items():
        labels[CLASS_NAMES.index(name)] = POSITIVE if nih_name in findings else NEGATIVE
    labels[NO_FINDING] = POSITIVE if not nih.any() else NEGATIVE
    return labels, nih


def parse_chexpert_value(value: str | None) -> int:
    """A CheXpert-labeler CSV cell ('1.0', '0.0', '-1.0' or empty) -> a label code.

    Raises ValueError for anything else. `float` reads the spellings tables use ('1',
    '1.0', '1e0', ' -1 '), but it also reads '0.5', 'inf' and 'nan', which are no label:
    truncating them stored 0.5 as a negative and made 'inf' an OverflowError.
    """
    text = (value or "").strip()
    if text == "":
        return NOT_MENTIONED
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if number not in (POSITIVE, NEGATIVE, UNCERTAIN):  # NaN is equal to none of them.
        raise ValueError(f"a CheXpert label is 1, 0, -1 or empty, got {text!r}")
    return int(number)
