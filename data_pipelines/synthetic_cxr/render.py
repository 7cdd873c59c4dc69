"""Renders a frontal chest-X-ray-like grayscale image of a synthetic study (pure numpy).

Coordinates are in [-1, 1]: `x` grows to the image's right, `y` downwards. Films are
read as if facing the patient, so the patient's right is the image's left (sign -1) and
the heart sits right of centre. Brighter means denser (bone, fluid, tissue); air is dark.

Every finding leaves a trace whose contrast (or size change) is proportional to
`strength[finding] * image_signal`, halved for uncertain findings; at zero strength the
image does not depend on the finding at all. Random draws are made in a fixed order and
number whatever the findings, so flipping one label changes only that finding's trace.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

from data_pipelines import labels as labels_lib
from data_pipelines.synthetic_cxr import findings as findings_lib

# Visual strength of each finding's trace at `image_signal=1`. Devices are bright metal
# and easy to see; diffuse or small findings are subtle, as on real films.
DEFAULT_STRENGTHS: dict[str, float] = {
    "Atelectasis": 0.45,
    "Cardiomegaly": 0.5,
    "Consolidation": 0.5,
    "Edema": 0.5,
    "Enlarged Cardiomediastinum": 0.5,
    "Fracture": 0.8,
    "Lung Lesion": 0.7,
    "Lung Opacity": 0.6,
    "Pleural Effusion": 0.5,
    "Pleural Other": 0.6,
    "Pneumonia": 0.6,
    "Pneumothorax": 0.8,
    "Support Devices": 0.7,
}
_SEVERITY = (0.7, 1.0, 1.3)
_SIGNS = {"right": (-1,), "left": (1,), "bilateral": (-1, 1), "": ()}
_NUM_UNIFORMS = 8  # Placement draws per finding.


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates `(x, y)`, each float32 [size, size] in [-1, 1]."""
    c = ((np.arange(size) + 0.5) / size * 2 - 1).astype(np.float32)
    return tuple(np.meshgrid(c, c))


@functools.lru_cache(maxsize=16)
def _upsampler(size: int, cells: int) -> np.ndarray:
    """Gaussian interpolation weights [size, cells] from a coarse grid to pixels."""
    x = (np.arange(size) + 0.5) / size
    c = (np.arange(cells) + 0.5) / cells
    w = np.exp(-0.5 * ((x[:, None] - c[None]) * cells) ** 2)
    return (w / w.sum(1, keepdims=True)).astype(np.float32)


def _smooth(coarse: np.ndarray, size: int) -> np.ndarray:
    """Upsamples coarse noise [c, c] to a smooth field [size, size] of unit std."""
    m = _upsampler(size, coarse.shape[0])
    # einsum without `optimize` stays off multi-threaded BLAS, whose thread wake-ups
    # cost more than this whole product (10x slower at 224x224 on 2 cores).
    field = np.einsum("ic,jc->ij", np.einsum("ic,cd->id", m, coarse.astype(np.float32)), m)
    return field / (field.std() + 1e-6)


def _soft(d, width: float):
    """Soft indicator of `d > 0` with an edge `width` wide."""
    return 0.5 + 0.5 * np.tanh(d / (2 * width))  # A logistic sigmoid that cannot overflow.


def _blob(x, y, x0, y0, sx, sy):
    return np.exp(-0.5 * (((x - x0) / sx) ** 2 + ((y - y0) / sy) ** 2))


def _segment(x, y, p0, p1, width: float):
    """Gaussian profile of a line segment from `p0` to `p1` (a tube or wire)."""
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy), 0, 1)
    return np.exp(-0.5 * ((x - x0 - t * dx) ** 2 + (y - y0 - t * dy) ** 2) / width**2)


class _Lung(NamedTuple):
    cx: float
    cy: float
    rx: float
    ry: float
    r: np.ndarray  # [S, S] superellipse radius, 1 on the lung's edge.
    mask: np.ndarray  # [S, S] soft lung field.


def _lung(x, y, cx, cy, rx, ry) -> _Lung:
    # Elliptic apex; a boxy superellipse base gives the deep costophrenic recesses.
    p = np.where(y < cy, 2.0, 3.5)
    r = (np.abs((x - cx) / rx) ** p + np.abs((y - cy) / ry) ** p) ** (1 / p)
    return _Lung(cx, cy, rx, ry, r, _soft(1 - r, 0.04))


def _zone_centre(lung: _Lung, sign: int, zone: str, u: np.ndarray) -> tuple[float, float]:
    """A point in a lung's upper or lower zone, placed by two uniforms `u[:2]`."""
    x = lung.cx + sign * (u[0] - 0.5) * 0.8 * lung.rx
    y = lung.cy + lung.ry * ((-0.5 if zone == "upper" else 0.4) + 0.3 * (u[1] - 0.5))
    return x, y


def _strengths(study: findings_lib.Study, image_signal: float, strengths: dict) -> dict:
    """Trace strength per finding: 0 absent, halved when uncertain, x severity."""
    out = {}
    for name in findings_lib.FINDINGS:
        code = study.labels[labels_lib.CLASS_NAMES.index(name)]
        presence = {labels_lib.POSITIVE: 1.0, labels_lib.UNCERTAIN: 0.5}.get(int(code), 0.0)
        severity = _SEVERITY[study.details[name].severity]
        out[name] = strengths[name] * image_signal * presence * severity
    return out


class _Anatomy(NamedTuple):
    """One patient's normal anatomy, in body coordinates."""

    x: np.ndarray  # [S, S] body coordinates after the pose.
    y: np.ndarray
    body: np.ndarray  # [S, S] soft body outline.
    lungs: dict[int, _Lung]  # Keyed by image side: -1 patient's right, +1 left.
    lung_dark: float  # How much darker aerated lung is than soft tissue.
    media_w: float  # Half-width of the upper mediastinum.
    heart: tuple[float, float, float]  # Centre x, y and horizontal radius.
    ribs: tuple[float, float]  # First rib's height and rib spacing.


def _anatomy(rng: np.random.Generator, image_size: int, ap: bool) -> _Anatomy:
    """Draws a pose and normal anatomical variation, which findings must stand out from."""
    angle, scale = rng.normal(0, 0.05), rng.uniform(0.9, 1.08)
    shift = rng.normal(0, 0.04, 2).tolist()  # Python floats keep the maths in float32.
    cos, sin = math.cos(angle), math.sin(angle)
    gx, gy = _grid(image_size)
    x = (cos * (gx - shift[0]) + sin * (gy - shift[1])) / scale
    y = (-sin * (gx - shift[0]) + cos * (gy - shift[1])) / scale

    body_w = rng.uniform(0.8, 0.92)
    torso = _soft(1 - (np.abs(x / body_w) ** 3 + np.abs((y - 0.2) / 1.0) ** 3), 0.03)
    body = np.maximum(torso, _soft(0.2 - np.abs(x), 0.03))  # The neck.
    cx, cy = rng.uniform(0.33, 0.39), rng.uniform(-0.1, -0.02)
    rx, ry = rng.uniform(0.27, 0.31), rng.uniform(0.55, 0.62)
    lungs = {  # The liver lifts the right hemidiaphragm.
        -1: _lung(x, y, -cx, cy + 0.02, rx, 0.96 * ry),
        1: _lung(x, y, cx, cy, rx, ry),
    }
    lung_dark = rng.uniform(0.26, 0.34) * (0.9 if ap else 1.0)  # AP films: poorer inspiration.
    media_w = rng.uniform(0.1, 0.13)
    heart = (
        0.12 + rng.uniform(-0.03, 0.03),
        0.24 + rng.uniform(-0.04, 0.04),
        rng.uniform(0.3, 0.36) * (1.06 if ap else 1.0),
    )  # AP magnifies the heart.
    ribs = (rng.uniform(-0.75, -0.68), rng.uniform(0.13, 0.15))
    return _Anatomy(x, y, body, lungs, lung_dark, media_w, heart, ribs)


def render_image(
    study: findings_lib.Study,
    rng: np.random.Generator,
    *,
    image_size: int,
    image_signal: float,
    noise: float,
    strengths: dict[str, float],
) -> np.ndarray:
    """Renders one study to uint8 [image_size, image_size, 1]."""
    s = _strengths(study, image_signal, strengths)
    det = study.details
    a = _anatomy(rng, image_size, ap=study.view == "AP")
    uniforms = rng.random((len(findings_lib.FINDINGS), _NUM_UNIFORMS)).tolist()
    u = dict(zip(findings_lib.FINDINGS, map(np.array, uniforms)))
    spots = rng.random((2, 3))  # Faint normal round densities that mimic nodules.
    markings_noise = _smooth(rng.standard_normal((12, 12)), image_size)
    patch_noise = _smooth(rng.standard_normal((16, 16)), image_size)
    x, y = a.x, a.y

    image = _soft_tissue(a, s)
    lung_mask = a.lungs[-1].mask + a.lungs[1].mask
    # Vascular markings, denser with edema, absent where a pneumothorax is.
    hilar = np.exp(-(((np.abs(x) - 0.15) / 0.3) ** 2))
    markings = 0.05 * markings_noise * (0.5 + 0.5 * hilar) * (1 + s["Edema"]) * lung_mask
    pneumothorax = np.zeros_like(x)
    for sign in _SIGNS[det["Pneumothorax"].side]:
        lung = a.lungs[sign]
        edge = 1 - (0.12, 0.2, 0.3)[det["Pneumothorax"].severity]
        upper = _soft(lung.cy + 0.1 - y, 0.05) * _soft(sign * x - abs(lung.cx) + lung.rx, 0.05)
        upper *= lung.mask
        pneumothorax += upper * _soft(lung.r - edge, 0.02)
        pleural_line = upper * np.exp(-0.5 * ((lung.r - edge) / 0.03) ** 2)
        image += 0.12 * s["Pneumothorax"] * pleural_line
    image += markings * (1 - min(1.0, s["Pneumothorax"]) * pneumothorax)
    image -= 0.1 * s["Pneumothorax"] * pneumothorax

    image += 0.07 * _ribs(x, y, a, det["Fracture"], u["Fracture"], s["Fracture"])
    image += _pleural_traces(a, det, s)
    image += _lung_traces(x, y, a.lungs, det, u, s, patch_noise)
    for (sx, sy, amp), sign in zip(spots, (-1, 1)):
        cx, cy = _zone_centre(a.lungs[sign], sign, "lower", (sx, sy))
        image += 0.1 * amp * _soft(0.04 - np.hypot(x - cx, y - cy), 0.01) * lung_mask
    devices = _devices(x, y, det["Support Devices"].devices, u["Support Devices"])
    image += 0.5 * s["Support Devices"] * devices
    return _expose(image, rng, noise)


def _soft_tissue(a: _Anatomy, s: dict[str, float]) -> np.ndarray:
    """Body, dark lungs, mediastinum (widened by ECM) and heart (grown by cardiomegaly)."""
    x, y = a.x, a.y
    mediastinum = _soft(a.media_w * (1 + 0.6 * s["Enlarged Cardiomediastinum"]) - np.abs(x), 0.02) * _soft(
        0.3 - y, 0.05
    )
    grow = 1 + 0.25 * s["Cardiomegaly"]
    heart_x, heart_y, heart_rx = a.heart
    heart_x += 0.5 * (grow - 1) * heart_rx  # The left ventricle grows to the image's right.
    heart_r = np.hypot((x - heart_x) / (heart_rx * grow), (y - heart_y) / (0.7 * heart_rx * grow))
    centre = np.maximum(mediastinum, _soft(1 - heart_r, 0.03))  # Displaces the lungs.
    lung_mask = a.lungs[-1].mask + a.lungs[1].mask
    image = 0.06 + 0.42 * a.body - a.lung_dark * lung_mask * (1 - centre) + 0.1 * centre
    image += 0.06 * _soft(0.05 - np.abs(x), 0.01) * a.body  # Spine.
    trachea = _soft(0.022 - np.abs(x), 0.008) * _soft(-0.35 - y, 0.03) * _soft(y + 0.95, 0.03)
    return image - 0.08 * trachea


def _pleural_traces(a: _Anatomy, det, s: dict[str, float]) -> np.ndarray:
    """Effusion (basal fluid whose meniscus rises laterally, blunting the costophrenic
    angle) and pleural thickening (a bright rim along the upper lateral chest wall)."""
    x, y = a.x, a.y
    out = np.zeros_like(x)
    for sign in _SIGNS[det["Pleural Effusion"].side]:
        lung = a.lungs[sign]
        height = (0.2, 0.32, 0.45)[det["Pleural Effusion"].severity] * lung.ry
        lateral = np.clip((sign * x - abs(lung.cx)) / lung.rx, 0, 1)
        level = lung.cy + lung.ry - height - 0.3 * height * lateral
        out += 0.9 * a.lung_dark * s["Pleural Effusion"] * _soft(y - level, 0.03) * lung.mask
    for sign in _SIGNS[det["Pleural Other"].side]:
        lung = a.lungs[sign]
        rim = _soft(lung.r - 0.9, 0.02) * _soft(sign * x - abs(lung.cx), 0.03)
        out += 0.2 * s["Pleural Other"] * rim * _soft(lung.cy + 0.1 - y, 0.05) * lung.mask
    return out


def _expose(image: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Exposure and detector: low-frequency unevenness, gain, gamma, pixel noise -> uint8."""
    size = image.shape[0]
    unevenness = _smooth(rng.standard_normal((5, 5)), size)
    gain, offset, gamma = rng.uniform(0.85, 1.15), rng.normal(0, 0.03), rng.uniform(0.85, 1.2)
    pixel_noise = rng.standard_normal((size, size)).astype(np.float32)
    image = image + 0.04 * noise * unevenness
    image = np.clip(gain * image + offset, 0, 1) ** gamma + 0.035 * noise * pixel_noise
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)[..., None]


def _ribs(x, y, a: _Anatomy, detail, u, strength: float) -> np.ndarray:
    """Posterior rib arcs [S, S]; a fracture breaks and displaces one rib."""
    y0, step = a.ribs
    t = np.abs(x)  # Distance from the spine; ribs are mirror images.
    curve = -0.5 * t + 0.9 * t**2
    k = np.clip(np.round((y - curve - y0) / step), 0, 8)
    d = y - curve - y0 - k * step
    sign = _SIGNS[detail.side][0]
    broken = (k == 3 + detail.rib) & (np.sign(x) == sign)
    break_t = 0.35 + 0.25 * u[0]
    d = d - 0.05 * strength * broken * (t > break_t)  # The lateral fragment drops.
    gap = broken * np.exp(-0.5 * ((t - break_t) / 0.025) ** 2)
    ribs = np.exp(-0.5 * (d / 0.022) ** 2) * (1 - min(1.0, strength) * gap)
    return ribs * _soft(t - 0.06, 0.02) * _soft(0.78 - t, 0.04) * a.body


def _lung_traces(x, y, lungs, det, u, s, patch_noise) -> np.ndarray:
    """Additive densities [S, S] of the parenchymal findings, inside the lung fields."""
    out = np.zeros_like(x)
    for sign in _SIGNS[det["Consolidation"].side]:  # Dense, sharp-edged, lobar.
        cx, cy = _zone_centre(lungs[sign], sign, det["Consolidation"].zone, u["Consolidation"])
        lobes = sum(
            _blob(x, y, cx + 0.08 * (a - 0.5), cy + 0.08 * (b - 0.5), 0.085, 0.085)
            for a, b in u["Consolidation"][2:8].reshape(3, 2)
        )
        out += 0.25 * s["Consolidation"] * np.clip(1.6 * lobes, 0, 1) * lungs[sign].mask
    for sign in _SIGNS[det["Pneumonia"].side]:  # Patchy, multifocal.
        cx, cy = _zone_centre(lungs[sign], sign, det["Pneumonia"].zone, u["Pneumonia"])
        patches = sum(
            _blob(x, y, cx + 0.25 * (a - 0.5), cy + 0.25 * (b - 0.5), 0.05, 0.05)
            for a, b in u["Pneumonia"][2:8].reshape(3, 2)
        )
        out += 0.2 * s["Pneumonia"] * patches * (0.6 + 0.4 * patch_noise) * lungs[sign].mask
    for sign in _SIGNS[det["Lung Opacity"].side]:  # Large, faint, ill defined.
        cx, cy = _zone_centre(lungs[sign], sign, det["Lung Opacity"].zone, u["Lung Opacity"])
        out += 0.13 * s["Lung Opacity"] * _blob(x, y, cx, cy, 0.18, 0.22) * lungs[sign].mask
    for sign in (-1, 1):  # Edema: bilateral perihilar "bat wing" haze.
        haze = _blob(x, y, sign * 0.22, lungs[sign].cy + 0.05, 0.17, 0.25)
        out += 0.14 * s["Edema"] * haze * lungs[sign].mask
    for sign in _SIGNS[det["Atelectasis"].side]:  # Thin plate-like basal band.
        lung, a = lungs[sign], u["Atelectasis"]
        xa, ya = lung.cx + sign * 0.2 * (a[0] - 0.5), lung.cy + lung.ry * (0.5 + 0.1 * a[1])
        band = np.exp(-0.5 * ((y - ya - 0.4 * (a[2] - 0.5) * (x - xa)) / 0.018) ** 2)
        out += 0.3 * s["Atelectasis"] * band * _soft(0.14 - np.abs(x - xa), 0.02) * lung.mask
    for sign in _SIGNS[det["Lung Lesion"].side]:  # Small round nodule.
        cx, cy = _zone_centre(lungs[sign], sign, det["Lung Lesion"].zone, u["Lung Lesion"])
        radius = (0.035, 0.05, 0.07)[det["Lung Lesion"].severity]
        nodule = _soft(radius - np.hypot(x - cx, y - cy), 0.01)
        out += 0.3 * s["Lung Lesion"] * nodule * lungs[sign].mask
    return out


def _devices(x, y, devices: tuple[str, ...], u) -> np.ndarray:
    """Thin bright tubes and wires, and the pacemaker's box [S, S]."""
    out = np.zeros_like(x)
    if "endotracheal tube" in devices:
        tip = -0.5 + 0.15 * u[0]
        out += _segment(x, y, (0.0, -1.2), (0.0, tip), 0.012)
    if "central line" in devices:
        out += _segment(x, y, (-0.55, -0.9), (-0.06, -0.25 + 0.1 * u[1]), 0.01)
    if "enteric tube" in devices:
        out += _segment(x, y, (-0.03, -1.2), (-0.03, 0.55), 0.01)
        out += _segment(x, y, (-0.03, 0.55), (0.3, 0.7 + 0.1 * u[2]), 0.01)
    if "pacemaker" in devices:
        px, py = 0.45 + 0.1 * u[3], -0.62
        out += _soft(0.07 - np.abs(x - px), 0.01) * _soft(0.045 - np.abs(y - py), 0.01)
        out += _segment(x, y, (px, py), (0.05, 0.35), 0.01)
    return np.minimum(out, 1.5)
