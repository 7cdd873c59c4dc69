"""The 14 CheXpert findings, their order, and the label codes stored in every record.

Raw labels are stored as they appear in the source (`int8`); how uncertain and unmentioned
findings become training targets is decided in the input pipeline from the config, so a
change of policy needs no rebuild.
"""

from __future__ import annotations

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
