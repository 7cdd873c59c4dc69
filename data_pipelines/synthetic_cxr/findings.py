"""Which findings a synthetic study has, and the details (side, severity, ...) of each.

The labels and their details are drawn first, from their own random stream; the report
and the image are then both written from them, so the two views of a study agree
(a "small right pleural effusion" in the report is a small effusion on the patient's
right in the image).
"""

from __future__ import annotations

import statistics
from typing import NamedTuple

import numpy as np

from data_pipelines import labels as labels_lib

# Every finding except "No Finding", which is derived from the others.
FINDINGS: tuple[str, ...] = tuple(n for n in labels_lib.CLASS_NAMES if n != "No Finding")

# Fraction of studies in which a finding is present (positive or uncertain); roughly the
# MIMIC-CXR CheXpert-labeller rates.
PREVALENCE: dict[str, float] = {
    "Atelectasis": 0.20,
    "Cardiomegaly": 0.20,
    "Consolidation": 0.05,
    "Edema": 0.12,
    "Enlarged Cardiomediastinum": 0.04,
    "Fracture": 0.03,
    "Lung Lesion": 0.04,
    "Lung Opacity": 0.22,
    "Pleural Effusion": 0.24,
    "Pleural Other": 0.02,
    "Pneumonia": 0.07,
    "Pneumothorax": 0.04,
    "Support Devices": 0.29,
}

# Correlations of the latent Gaussians that decide presence (a Gaussian copula, so the
# marginal prevalences above are kept exactly). Heart failure (cardiomegaly, edema,
# effusion), infection (pneumonia, consolidation, opacity) and ICU patients (devices).
_CORRELATIONS: dict[tuple[str, str], float] = {
    ("Cardiomegaly", "Edema"): 0.4,
    ("Cardiomegaly", "Pleural Effusion"): 0.3,
    ("Cardiomegaly", "Enlarged Cardiomediastinum"): 0.3,
    ("Edema", "Pleural Effusion"): 0.4,
    ("Atelectasis", "Pleural Effusion"): 0.3,
    ("Pneumonia", "Consolidation"): 0.5,
    ("Pneumonia", "Lung Opacity"): 0.4,
    ("Consolidation", "Lung Opacity"): 0.3,
    ("Support Devices", "Edema"): 0.2,
    ("Support Devices", "Pleural Effusion"): 0.2,
}

# Probability that a present finding is reported as uncertain ("possible pneumonia").
UNCERTAIN_RATE: dict[str, float] = {name: 0.10 for name in FINDINGS} | {"Pneumonia": 0.25}

# Probability that an absent finding is explicitly negated ("no pneumothorax"), otherwise
# it is not mentioned. Radiologists negate what the referring clinician worries about.
NEGATION_RATE: dict[str, float] = {
    "Atelectasis": 0.05,
    "Cardiomegaly": 0.30,
    "Consolidation": 0.40,
    "Edema": 0.35,
    "Enlarged Cardiomediastinum": 0.25,
    "Fracture": 0.15,
    "Lung Lesion": 0.05,
    "Lung Opacity": 0.08,
    "Pleural Effusion": 0.50,
    "Pleural Other": 0.02,
    "Pneumonia": 0.25,
    "Pneumothorax": 0.55,
    "Support Devices": 0.02,
}

# Sides are the patient's. Findings absent from this table have no side.
SIDES: dict[str, tuple[str, ...]] = {
    "Atelectasis": ("right", "left", "bilateral"),
    "Consolidation": ("right", "left", "bilateral"),
    "Edema": ("bilateral",),
    "Fracture": ("right", "left"),
    "Lung Lesion": ("right", "left"),
    "Lung Opacity": ("right", "left", "bilateral"),
    "Pleural Effusion": ("right", "left", "bilateral"),
    "Pleural Other": ("right", "left"),
    "Pneumonia": ("right", "left", "bilateral"),
    "Pneumothorax": ("right", "left"),
}
ZONES = ("upper", "lower")
RIBS = ("fourth", "fifth", "sixth", "seventh", "eighth")  # Posterior rib of a fracture.
DEVICES = ("endotracheal tube", "central line", "enteric tube", "pacemaker")
_DEVICE_RATES = (0.5, 0.5, 0.35, 0.2)
VIEWS = ("PA", "AP")


class Detail(NamedTuple):
    """How a finding shows, drawn for every finding (used only where it is present)."""

    side: str  # "right", "left", "bilateral" (the patient's) or "" when sideless.
    severity: int  # 0 mild/small, 1 moderate, 2 severe/large.
    zone: str  # "upper" or "lower" lung zone.
    rib: int  # Index into RIBS (fractures).
    devices: tuple[str, ...]  # Support devices: a non-empty subset of DEVICES; else ().


class Study(NamedTuple):
    labels: np.ndarray  # int8 [14], codes of `data_pipelines.labels`.
    details: dict[str, Detail]
    view: str  # "PA" or "AP".


def _copula() -> tuple[np.ndarray, np.ndarray]:
    """Cholesky factor [13, 13] of the latent correlation and thresholds [13]."""
    corr = np.eye(len(FINDINGS))
    for (a, b), rho in _CORRELATIONS.items():
        i, j = FINDINGS.index(a), FINDINGS.index(b)
        corr[i, j] = corr[j, i] = rho
    thresholds = np.array([statistics.NormalDist().inv_cdf(1 - PREVALENCE[n]) for n in FINDINGS])
    return np.linalg.cholesky(corr), thresholds


_CHOLESKY, _THRESHOLDS = _copula()
_UNCERTAIN = np.array([UNCERTAIN_RATE[n] for n in FINDINGS])
_NEGATED = np.array([NEGATION_RATE[n] for n in FINDINGS])
_FINDING_COLUMNS = np.array([labels_lib.CLASS_NAMES.index(n) for n in FINDINGS])


def sample_study(rng: np.random.Generator) -> Study:
    """Draws the labels `int8[14]`, per-finding details and the view of one study.

    Always consumes the same number of draws, so that other streams derived from the
    same seed are unaffected by which findings happen to be present.
    """
    n = len(FINDINGS)
    present = _CHOLESKY @ rng.standard_normal(n) > _THRESHOLDS
    uncertain = rng.random(n) < _UNCERTAIN
    negated = rng.random(n) < _NEGATED
    codes = np.where(
        present,
        np.where(uncertain, labels_lib.UNCERTAIN, labels_lib.POSITIVE),
        np.where(negated, labels_lib.NEGATIVE, labels_lib.NOT_MENTIONED),
    )
    labels = np.full(labels_lib.NUM_CLASSES, labels_lib.NOT_MENTIONED, np.int8)
    labels[_FINDING_COLUMNS] = codes
    if not present.any():
        labels[labels_lib.NO_FINDING] = labels_lib.POSITIVE

    side_u = rng.random(n)
    severity = rng.integers(3, size=n)
    zone = rng.integers(len(ZONES), size=n)
    rib = rng.integers(len(RIBS), size=n)
    has_device = rng.random(len(DEVICES)) < _DEVICE_RATES
    has_device[rng.integers(len(DEVICES))] |= not has_device.any()
    devices = tuple(d for d, has in zip(DEVICES, has_device) if has)
    details = {}
    for k, name in enumerate(FINDINGS):
        sides = SIDES.get(name, ("",))
        side = sides[int(side_u[k] * len(sides))]
        own_devices = devices if name == "Support Devices" else ()
        details[name] = Detail(side, int(severity[k]), ZONES[zone[k]], int(rib[k]), own_devices)

    # Portable AP films are taken of the sicker patients, who carry the devices.
    p_ap = 0.75 if present[FINDINGS.index("Support Devices")] else 0.3
    view = VIEWS[int(rng.random() < p_ap)]
    return Study(labels, details, view)
