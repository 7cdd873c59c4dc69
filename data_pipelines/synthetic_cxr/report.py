"""Free-text radiology reports written from a study's labels, with a closed vocabulary.

Each finding has several phrasings for a positive, an uncertain ("possible ...",
"cannot exclude ...") and a negated ("no ...") mention; not-mentioned findings are
absent from the text. The report thus nearly determines the labels, which is the premise
of VKD: the text carries knowledge that is hard to read off the image.
"""

from __future__ import annotations

import itertools
import re
from typing import NamedTuple

import numpy as np

from data_pipelines import labels as labels_lib
from data_pipelines.synthetic_cxr import findings as findings_lib

_DEGREE = ("mild", "moderate", "severe")
_SIZE = ("small", "moderate", "large")


class _Phrases(NamedTuple):
    severity_words: tuple[str, ...]
    # Noun phrases with {sev}, {side}, {zone}, {rib} slots; used in every kind of mention.
    nouns: tuple[str, ...]
    # Extra finding-specific positive sentences.
    sentences: tuple[str, ...]
    # Negated mentions (whole sentences).
    negations: tuple[str, ...]


_PHRASES: dict[str, _Phrases] = {
    "Atelectasis": _Phrases(
        _DEGREE,
        (
            "{sev} {side} basilar atelectasis",
            "{side} basilar atelectasis",
            "subsegmental atelectasis at the {side} base",
            "{sev} atelectasis",
        ),
        ("linear atelectasis at the {side} lung base.",),
        ("no atelectasis.",),
    ),
    "Cardiomegaly": _Phrases(
        _DEGREE,
        ("{sev} cardiomegaly", "cardiomegaly", "{sev} enlargement of the heart"),
        ("the heart is enlarged.", "the cardiac silhouette is enlarged."),
        ("heart size is normal.", "no cardiomegaly.", "the heart is not enlarged."),
    ),
    "Consolidation": _Phrases(
        _DEGREE,
        ("focal consolidation in the {side} {zone} lobe", "{side} {zone} lobe consolidation", "{sev} consolidation"),
        ("dense consolidation in the {side} {zone} lung zone.",),
        ("no focal consolidation.", "there is no consolidation."),
    ),
    "Edema": _Phrases(
        _DEGREE,
        ("{sev} pulmonary edema", "pulmonary edema", "{sev} interstitial edema"),
        ("perihilar haziness with vascular congestion consistent with edema.",),
        ("no pulmonary edema.", "there is no edema."),
    ),
    "Enlarged Cardiomediastinum": _Phrases(
        _DEGREE,
        (
            "widening of the mediastinum",
            "{sev} widening of the cardiomediastinal silhouette",
            "enlarged cardiomediastinal silhouette",
        ),
        ("the mediastinum is widened.",),
        ("the cardiomediastinal silhouette is normal.", "mediastinal contours are normal."),
    ),
    "Fracture": _Phrases(
        _DEGREE,
        ("{side} {rib} rib fracture", "fracture of the {side} {rib} rib", "displaced {side} {rib} rib fracture"),
        (),
        ("no acute fracture.", "no displaced rib fracture.", "the osseous structures are unremarkable."),
    ),
    "Lung Lesion": _Phrases(
        _SIZE,
        ("{sev} nodule in the {side} {zone} lobe", "{sev} {side} {zone} lobe nodule", "{side} {zone} lung mass"),
        ("a {sev} rounded nodule projects over the {side} {zone} lung.",),
        ("no pulmonary nodules.", "no suspicious nodule or mass."),
    ),
    "Lung Opacity": _Phrases(
        _DEGREE,
        (
            "{side} {zone} opacity",
            "hazy opacity in the {side} {zone} lung",
            "{sev} patchy opacities in the {side} lung",
        ),
        ("ill defined opacity at the {side} {zone} lung zone.",),
        ("no focal opacity.", "the lungs are without opacity."),
    ),
    "Pleural Effusion": _Phrases(
        _SIZE,
        ("{sev} {side} pleural effusion", "{side} pleural effusion", "{sev} pleural effusion"),
        ("blunting of the {side} costophrenic angle from a {sev} effusion.",),
        ("no pleural effusion.", "there is no effusion.", "the costophrenic angles are sharp."),
    ),
    "Pleural Other": _Phrases(
        _DEGREE,
        (
            "{side} pleural thickening",
            "{side} apical pleural thickening",
            "pleural scarring along the {side} chest wall",
        ),
        (),
        ("no pleural thickening.",),
    ),
    "Pneumonia": _Phrases(
        _DEGREE,
        ("pneumonia", "{side} {zone} lobe pneumonia", "{sev} {side} pneumonia"),
        ("findings are concerning for pneumonia.", "appearance suggests infection."),
        ("no evidence of pneumonia.", "no findings of infection."),
    ),
    "Pneumothorax": _Phrases(
        _SIZE,
        ("{sev} {side} pneumothorax", "{side} apical pneumothorax", "{sev} pneumothorax"),
        ("{side} pneumothorax with a visible pleural line.",),
        ("no pneumothorax.", "there is no pneumothorax."),
    ),
    "Support Devices": _Phrases(
        (),
        (),
        (),
        ("no support devices.", "no lines or tubes are seen."),
    ),
}

# Findings whose report can state a severity or size ("mild", "small", ...): all but Support
# Devices, whose drawn severity only sets how bright its metal is in the image.
GRADED: tuple[str, ...] = tuple(name for name, phrases in _PHRASES.items() if phrases.severity_words)

# Support devices get one mention per device, in place of the generic noun phrases.
_DEVICE_SENTENCES: dict[str, tuple[str, ...]] = {
    "endotracheal tube": (
        "the endotracheal tube terminates {cm} cm above the carina.",
        "endotracheal tube in standard position.",
    ),
    "central line": (
        "right internal jugular central line tip in the svc.",
        "central venous catheter ends in the low svc.",
    ),
    "enteric tube": ("an enteric tube courses below the diaphragm.", "nasogastric tube tip in the stomach."),
    "pacemaker": (
        "left chest wall pacemaker with leads in the right ventricle.",
        "cardiac pacemaker leads are in place.",
    ),
}
_CENTIMETRES = ("2", "3", "4", "5", "6")

_POSITIVE_FRAMES = (
    "{np}.",
    "{np} is seen.",
    "{np} is present.",
    "there is {np}.",
    "findings are consistent with {np}.",
)
_UNCERTAIN_FRAMES = (
    "possible {np}.",
    "cannot exclude {np}.",
    "{np} is not excluded.",
    "questionable {np}.",
    "findings may represent {np}.",
    "{np} is suspected but not certain.",
)
_VIEW_SENTENCES = {
    "PA": ("pa and lateral views of the chest.", "frontal and lateral chest radiographs."),
    "AP": ("portable ap view of the chest.", "single portable frontal view of the chest."),
}
_COMPARISONS = ("comparison is made to the prior study.", "no prior studies for comparison.")
_NORMAL_FINDINGS = ("the lungs are clear.", "the lungs are well expanded and clear.")
_NORMAL_IMPRESSIONS = (
    "no acute cardiopulmonary process.",
    "normal chest radiograph.",
    "no acute cardiopulmonary abnormality.",
)
_SECTIONS = ("FINDINGS:", "IMPRESSION:")

_TOKEN = re.compile(r"[a-z0-9]+|[^a-z0-9\s]")


def _choice(rng: np.random.Generator, options):
    return options[rng.integers(len(options))]


def _noun(rng, name: str, detail: findings_lib.Detail) -> str:
    phrases = _PHRASES[name]
    template = _choice(rng, phrases.nouns)
    return template.format(
        sev=phrases.severity_words[detail.severity] if phrases.severity_words else "",
        side=detail.side,
        zone=detail.zone,
        rib=findings_lib.RIBS[detail.rib],
    )


def _mention(rng, name: str, code: int, detail: findings_lib.Detail) -> list[str]:
    """The sentences (zero or more) that mention one finding with the given label code."""
    phrases = _PHRASES[name]
    if code == labels_lib.NOT_MENTIONED:
        return []
    if code == labels_lib.NEGATIVE:
        return [_choice(rng, phrases.negations)]
    if name == "Support Devices":
        sentences = [_choice(rng, _DEVICE_SENTENCES[d]).format(cm=_choice(rng, _CENTIMETRES)) for d in detail.devices]
        if code == labels_lib.UNCERTAIN:
            sentences = [_choice(rng, _UNCERTAIN_FRAMES).format(np=detail.devices[0])]
        return sentences
    if code == labels_lib.UNCERTAIN:
        return [_choice(rng, _UNCERTAIN_FRAMES).format(np=_noun(rng, name, detail))]
    k = rng.integers(len(_POSITIVE_FRAMES) + len(phrases.sentences))
    if k < len(_POSITIVE_FRAMES):
        return [_POSITIVE_FRAMES[k].format(np=_noun(rng, name, detail))]
    sentence = phrases.sentences[k - len(_POSITIVE_FRAMES)]
    return [sentence.format(sev=phrases.severity_words[detail.severity], side=detail.side, zone=detail.zone)]


def _sentence_case(sentence: str) -> str:
    sentence = " ".join(sentence.split())  # Empty slots leave double spaces.
    return sentence[:1].upper() + sentence[1:]


def write_report(study: findings_lib.Study, rng: np.random.Generator) -> str:
    """Writes "FINDINGS: ... IMPRESSION: ..." for a study; lowercase-able English."""
    mentions, impression = [], []
    for name in findings_lib.FINDINGS:
        code = int(study.labels[labels_lib.CLASS_NAMES.index(name)])
        sentences = _mention(rng, name, code, study.details[name])
        mentions += sentences
        if code in (labels_lib.POSITIVE, labels_lib.UNCERTAIN):
            impression.append(sentences[0])
    no_finding = study.labels[labels_lib.NO_FINDING] == labels_lib.POSITIVE
    if no_finding:
        mentions.append(_choice(rng, _NORMAL_FINDINGS))
        impression = [_choice(rng, _NORMAL_IMPRESSIONS)]
    mentions = [mentions[i] for i in rng.permutation(len(mentions))]
    header = [_choice(rng, _VIEW_SENTENCES[study.view]), _choice(rng, _COMPARISONS)]
    findings_text = " ".join(_sentence_case(s) for s in header + mentions)
    impression_text = " ".join(_sentence_case(s) for s in impression)
    return f"{_SECTIONS[0]} {findings_text} {_SECTIONS[1]} {impression_text}"


def tokens(text: str) -> list[str]:
    """Splits text into lowercase words and punctuation marks, as BERT's basic tokenizer."""
    return _TOKEN.findall(text.lower())


def vocabulary() -> list[str]:
    """Every token (lowercase word or punctuation mark) a report can contain, sorted."""
    texts = list(_SECTIONS) + list(_CENTIMETRES) + list(findings_lib.RIBS)
    texts += list(findings_lib.ZONES) + list(findings_lib.DEVICES)
    texts += [s for sides in findings_lib.SIDES.values() for s in sides]
    texts += list(_DEGREE + _SIZE + _POSITIVE_FRAMES + _UNCERTAIN_FRAMES + _COMPARISONS)
    texts += list(_NORMAL_FINDINGS + _NORMAL_IMPRESSIONS)
    texts += list(itertools.chain(*_VIEW_SENTENCES.values(), *_DEVICE_SENTENCES.values()))
    for phrases in _PHRASES.values():
        texts += list(phrases.nouns + phrases.sentences + phrases.negations)
    words = set()
    for text in texts:
        words.update(tokens(re.sub(r"\{\w+\}", " ", text)))
    return sorted(words)
