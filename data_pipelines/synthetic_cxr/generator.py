"""A deterministic synthetic paired chest X-ray dataset: image, report and 14 labels.

Pure numpy (no TensorFlow), so it can be used and tested anywhere. An example is a
function of `(seed, index)` alone: the labels, the report wording and the image are
drawn from three independent streams spawned from `np.random.SeedSequence([seed,
index])`, so changing `image_size`, `image_signal`, `noise` or the strengths changes the
image only, never the labels or the report. Two more streams decide which training labels
`label_noise` and `mild_drop` drop, so neither changes anything else.

By default the image signal is weak and noisy whereas the report nearly determines the
labels, as in the paper's premise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from data_pipelines import labels as labels_lib
from data_pipelines.synthetic_cxr import findings as findings_lib, render, report as report_lib

DEFAULT_IMAGE_SIZE = 64
DEFAULT_IMAGE_SIGNAL = 1.0
DEFAULT_NOISE = 1.0
DEFAULT_STRENGTHS = render.DEFAULT_STRENGTHS
_COLUMNS = {name: labels_lib.CLASS_NAMES.index(name) for name in findings_lib.FINDINGS}


def vocabulary() -> list[str]:
    """Every lowercase word and punctuation token a report can contain, sorted."""
    return report_lib.vocabulary()


def _streams(seed: int, index: int) -> tuple[np.random.Generator, ...]:
    """Independent generators for labels, report, image, label noise and mild drops of example
    `index` (spawned children 0-4: adding a stream leaves the earlier ones unchanged)."""
    children = np.random.SeedSequence([seed, index]).spawn(5)
    return tuple(np.random.default_rng(c) for c in children)


def study_of(index: int, *, seed: int = 0) -> findings_lib.Study:
    """The labels and details (side, severity, devices, ...) that example `index` is made from."""
    return findings_lib.sample_study(_streams(seed, index)[0])


def check_rate(field: str, rate) -> None:
    """Raises ValueError naming `field` unless `rate` is a probability (`label_noise`, `mild_drop`)."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ValueError(f"{field} must be a number in [0, 1], got {rate!r}")


def noisy_labels(labels: np.ndarray, rate: float, *, seed: int, index: int) -> np.ndarray:
    """`labels` int8 [14] with each positive (1) dropped to not mentioned (-2) with
    probability `rate`, from example `index`'s own stream: the image and the report keep
    the true findings, so only the training signal is noisy."""
    check_rate("label_noise", rate)
    u = _streams(seed, index)[3].random(labels.shape)
    return np.where((labels == 1) & (u < rate), np.int8(-2), labels).astype(np.int8)


def mild_dropped_labels(labels: np.ndarray, rate: float, *, seed: int, index: int) -> np.ndarray:
    """`labels` int8 [14] with each positive (1) of a mild finding of example `index` dropped
    to not mentioned (-2) with probability `rate`, from the example's own stream.

    Mild is severity 0 ("mild", "small": the weakest image trace) of a finding whose report
    states a severity (`report.GRADED`: all but Support Devices). The image and the report keep
    the true findings; as radiologists leave mild findings unsaid more often than severe ones,
    the labels miss the findings that are hardest to see, unlike the uniform `noisy_labels`.
    """
    check_rate("mild_drop", rate)
    details = study_of(index, seed=seed).details
    mild = np.zeros(labels.shape, bool)
    for name in report_lib.GRADED:
        mild[_COLUMNS[name]] = details[name].severity == 0
    u = _streams(seed, index)[4].random(labels.shape)
    return np.where((labels == 1) & mild & (u < rate), np.int8(-2), labels).astype(np.int8)


def parse_strengths(text: str) -> dict[str, float]:
    """The factors of a strengths setting: `"Lung Lesion=0.5,Pneumothorax=2"` ->
    `{"Lung Lesion": 0.5, "Pneumothorax": 2.0}`, each multiplying that finding's default
    trace strength (`DEFAULT_STRENGTHS`); `""` is none. Factors of 1 are left out, so settings
    that render the same images parse the same. Raises ValueError naming what is wrong."""
    expected = "'Finding=factor,...' with factors >= 0, e.g. 'Lung Lesion=0.5,Pneumothorax=2'"
    if not isinstance(text, str):
        raise ValueError(f"strengths must be a string {expected}, got {text!r}")
    factors = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = (part.strip() for part in item.partition("="))
        try:
            factor = float(value) if sep else math.nan
        except ValueError:
            factor = math.nan
        if not math.isfinite(factor) or factor < 0:
            raise ValueError(f"strengths must be {expected}; {item!r} is not, in {text!r}")
        if name not in DEFAULT_STRENGTHS:
            known = ", ".join(DEFAULT_STRENGTHS)
            raise ValueError(f"strengths: unknown finding {name!r} in {text!r}; expected some of: {known}")
        if name in factors:
            raise ValueError(f"strengths: {name!r} is given twice in {text!r}")
        factors[name] = factor
    return {name: factor for name, factor in sorted(factors.items()) if factor != 1}


def strengths_text(factors: Mapping[str, float]) -> str:
    """The canonical text of `parse_strengths`'s factors (sorted, exact): equal settings, equal texts."""
    return ",".join(f"{name}={float(factor)!r}" for name, factor in sorted(factors.items()) if factor != 1)


def scaled_strengths(factors: Mapping[str, float]) -> dict[str, float]:
    """`DEFAULT_STRENGTHS` with each finding's strength multiplied by its factor."""
    return {name: s * factors.get(name, 1.0) for name, s in DEFAULT_STRENGTHS.items()}


def strengths_with_defaults(strengths: Mapping[str, float] | None) -> dict[str, float]:
    """Per-finding trace strengths: `DEFAULT_STRENGTHS` updated with `strengths`."""
    strengths = dict(strengths or {})
    unknown = set(strengths) - set(DEFAULT_STRENGTHS)
    if unknown:
        raise ValueError(f"strengths: unknown findings {sorted(unknown)}; expected some of {sorted(DEFAULT_STRENGTHS)}")
    return DEFAULT_STRENGTHS | strengths


def generate_example(
    index: int,
    *,
    seed: int = 0,
    image_size: int = DEFAULT_IMAGE_SIZE,
    image_signal: float = DEFAULT_IMAGE_SIGNAL,
    noise: float = DEFAULT_NOISE,
    strengths: Mapping[str, float] | None = None,
) -> dict:
    """Generates example `index` of the dataset with `seed`.

    Returns a dict with `image` uint8 [image_size, image_size, 1], `report` str,
    `labels` int8 [14] (order of `data_pipelines.labels.CLASS_NAMES`; 1 positive,
    0 negative, -1 uncertain, -2 not mentioned), `subject_id`, `study_id`, `image_id`
    (fake, unique per (seed, index)) and `view` ("PA" or "AP").
    """
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8, got {image_size}")
    label_rng, report_rng, image_rng, *_ = _streams(seed, index)
    study = findings_lib.sample_study(label_rng)  # = study_of(index, seed=seed)
    image = render.render_image(
        study,
        image_rng,
        image_size=image_size,
        image_signal=image_signal,
        noise=noise,
        strengths=strengths_with_defaults(strengths),
    )
    return {
        "image": image,
        "report": report_lib.write_report(study, report_rng),
        "labels": study.labels,
        "subject_id": f"p{seed}-{index:010d}",
        "study_id": f"s{seed}-{index:010d}",
        "image_id": f"synthetic-cxr-{seed}-{index:010d}",
        "view": study.view,
    }
