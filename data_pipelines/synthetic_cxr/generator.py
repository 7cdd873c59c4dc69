"""A deterministic synthetic paired chest X-ray dataset: image, report and 14 labels.

Pure numpy (no TensorFlow), so it can be used and tested anywhere. An example is a
function of `(seed, index)` alone: the labels, the report wording and the image are
drawn from three independent streams spawned from `np.random.SeedSequence([seed,
index])`, so changing `image_size`, `image_signal` or `noise` changes the image only,
never the labels or the report.

By default the image signal is weak and noisy whereas the report nearly determines the
labels, as in the paper's premise.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from data_pipelines.synthetic_cxr import findings as findings_lib, render, report as report_lib

DEFAULT_IMAGE_SIZE = 64
DEFAULT_IMAGE_SIGNAL = 1.0
DEFAULT_NOISE = 1.0
DEFAULT_STRENGTHS = render.DEFAULT_STRENGTHS


def vocabulary() -> list[str]:
    """Every lowercase word and punctuation token a report can contain, sorted."""
    return report_lib.vocabulary()


def _streams(seed: int, index: int) -> tuple[np.random.Generator, ...]:
    """Independent generators for labels, report, image and label noise of example `index`
    (spawned children 0-3: adding a stream leaves the earlier ones unchanged)."""
    children = np.random.SeedSequence([seed, index]).spawn(4)
    return tuple(np.random.default_rng(c) for c in children)


def study_of(index: int, *, seed: int = 0) -> findings_lib.Study:
    """The labels and details (side, severity, devices, ...) that example `index` is made from."""
    return findings_lib.sample_study(_streams(seed, index)[0])


def noisy_labels(labels: np.ndarray, rate: float, *, seed: int, index: int) -> np.ndarray:
    """`labels` int8 [14] with each positive (1) dropped to not mentioned (-2) with
    probability `rate`, from example `index`'s own stream: the image and the report keep
    the true findings, so only the training signal is noisy."""
    if not 0 <= rate <= 1:
        raise ValueError(f"label_noise must be in [0, 1], got {rate}")
    u = _streams(seed, index)[3].random(labels.shape)
    return np.where((labels == 1) & (u < rate), np.int8(-2), labels).astype(np.int8)


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
    label_rng, report_rng, image_rng, _ = _streams(seed, index)
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
