"""The details a synthetic report states (side, zone, severity, rib, devices), parsed from its text.

`parse(report)` reads the report alone, never the study it was written from: every sentence
of `report.py`'s closed grammar is matched whole against the grammar's own templates (its
phrases with the slots `{sev}`, `{side}`, `{zone}`, `{rib}` and `{cm}` as alternatives of
their words), so a report of another grammar is an error rather than a silent guess.

The targets, `DETAIL_NAMES` (D = 78), per finding of `findings.FINDINGS`:
- `<finding>: present`: mentioned as present (positive or uncertain). Always stated (mask
  1): a report mentions every present finding and never an absent one as present.
- `<finding>: right` / `left` (the findings whose phrases name a side; bilateral sets both),
  `<finding>: upper` / `lower` (those that name a lung zone), and one bit per severity word
  (`mild`/`moderate`/`severe`, or `small`/`moderate`/`large`; those that name a severity).
  Stated (mask 1) only where a present mention's phrasing names them: a slot's bits are
  masked where the chosen phrase has no such slot, and every detail bit of a finding not
  mentioned as present is masked (a negation states no side).
- `Fracture: <rib> rib`: the fractured posterior rib (every fracture phrase names it).
- `Support Devices: <device>`: a positive mention lists every device, one sentence each
  (all four bits stated); an uncertain one ("possible central line.") names one device
  (that bit alone stated).
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

import numpy as np

from data_pipelines.synthetic_cxr import findings as findings_lib, report as report_lib

_SLOTS = ("sev", "side", "zone", "rib")


def _has_slot(name: str, slot: str) -> bool:
    """Whether some phrase of finding `name` names `slot` (its side, zone, ...)."""
    phrases = report_lib._PHRASES[name]
    return any(f"{{{slot}}}" in t for t in phrases.nouns + phrases.sentences)


def _detail_names() -> tuple[str, ...]:
    names = []
    for name in findings_lib.FINDINGS:
        names.append(f"{name}: present")
        if _has_slot(name, "side"):
            names += [f"{name}: right", f"{name}: left"]
        if _has_slot(name, "zone"):
            names += [f"{name}: {z}" for z in findings_lib.ZONES]
        if _has_slot(name, "sev"):
            names += [f"{name}: {w}" for w in report_lib._PHRASES[name].severity_words]
        if _has_slot(name, "rib"):
            names += [f"{name}: {r} rib" for r in findings_lib.RIBS]
        if name == "Support Devices":
            names += [f"{name}: {d}" for d in findings_lib.DEVICES]
    return tuple(names)


DETAIL_NAMES: tuple[str, ...] = _detail_names()
_INDEX = {n: i for i, n in enumerate(DETAIL_NAMES)}


class _Fact(NamedTuple):
    """What one sentence says of one finding."""

    finding: str
    present: bool
    slots: tuple[tuple[str, str], ...] = ()  # (slot, word), e.g. ("side", "left")
    devices_listed: bool = False  # a positive device sentence: the mention lists them all


def _pattern(template: str, words: dict[str, tuple[str, ...]], prefix: str) -> str:
    """`template` as a regex: its literal text escaped, each `{slot}` a named group of its words."""
    parts = re.split(r"\{(\w+)\}", template)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"(?P<{prefix}{part}>{'|'.join(map(re.escape, words[part]))})")
        else:
            out.append(re.escape(part))
    return "".join(out)


def _grammar() -> tuple[re.Pattern, list[tuple[str, bool, bool, str]]]:
    """One alternation of every sentence the grammar writes; per alternative (finding,
    present, devices_listed, device)."""
    alternatives, meaning = [], []

    def add(template, finding, present, slot_words, devices_listed=False, device=""):
        prefix = f"t{len(meaning)}_"
        alternatives.append(f"(?P<t{len(meaning)}>{_pattern(template, slot_words, prefix)})")
        meaning.append((finding, present, devices_listed, device))

    sides = ("right", "left", "bilateral")
    for name in findings_lib.FINDINGS:
        phrases = report_lib._PHRASES[name]
        words = {
            "sev": phrases.severity_words,
            "side": sides,
            "zone": findings_lib.ZONES,
            "rib": findings_lib.RIBS,
            "cm": report_lib._CENTIMETRES,
        }
        for frame in report_lib._POSITIVE_FRAMES + report_lib._UNCERTAIN_FRAMES:
            for noun in phrases.nouns:
                add(frame.replace("{np}", noun), name, True, words)
        for sentence in phrases.sentences:
            add(sentence, name, True, words)
        for negation in phrases.negations:
            add(negation, name, False, words)
    for device, sentences in report_lib._DEVICE_SENTENCES.items():
        for sentence in sentences:
            add(sentence, "Support Devices", True, {"cm": report_lib._CENTIMETRES}, True, device)
        for frame in report_lib._UNCERTAIN_FRAMES:
            add(frame.replace("{np}", device), "Support Devices", True, {}, False, device)
    # Sentences that state no finding: the view, the comparison, a normal study's.
    neutral = report_lib._COMPARISONS + report_lib._NORMAL_FINDINGS + report_lib._NORMAL_IMPRESSIONS
    for sentence in neutral + tuple(s for v in report_lib._VIEW_SENTENCES.values() for s in v):
        add(sentence, "", False, {})
    return re.compile("|".join(alternatives)), meaning


_GRAMMAR, _MEANING = _grammar()
_SECTIONS = re.compile("|".join(re.escape(s.lower()) for s in report_lib._SECTIONS))


@functools.lru_cache(maxsize=65536)
def _sentence(sentence: str) -> _Fact | None:
    """The fact one lowercase sentence states (None: it states none); `ValueError` for a
    sentence the grammar does not write. Reports repeat sentences, hence the cache."""
    m = _GRAMMAR.fullmatch(sentence)
    if m is None:
        raise ValueError(f"report_details: not a sentence of the synthetic_cxr report grammar: {sentence!r}")
    k = int(m.lastgroup[1:])
    finding, present, devices_listed, device = _MEANING[k]
    if not finding:
        return None
    prefix = f"t{k}_"
    slots = tuple((s, m.group(prefix + s)) for s in _SLOTS if m.groupdict().get(prefix + s))
    if device:
        slots += (("device", device),)
    return _Fact(finding, present, slots, devices_listed)


def _set(targets, mask, name: str, value: bool) -> None:
    i = _INDEX[name]
    if mask[i] and targets[i] != value:
        raise ValueError(f"report_details: the report states {name!r} both ways")
    targets[i], mask[i] = value, 1.0


def parse(report: str) -> tuple[np.ndarray, np.ndarray]:
    """(targets, mask), each float32 `[D]` in the order of `DETAIL_NAMES`, of a report's
    text (see the module docstring); `ValueError` if a sentence is not of the grammar."""
    targets = np.zeros(len(DETAIL_NAMES), np.float32)
    mask = np.zeros(len(DETAIL_NAMES), np.float32)
    facts = []
    for sentence in re.split(r"(?<=\.)\s+", _SECTIONS.sub(" ", report.lower()).strip()):
        fact = _sentence(" ".join(sentence.split())) if sentence else None
        if fact is not None:
            facts.append(fact)
    present = {f.finding for f in facts if f.present}
    for name in findings_lib.FINDINGS:
        _set(targets, mask, f"{name}: present", name in present)
    for fact in facts:
        if not fact.present:
            continue
        name = fact.finding
        for slot, word in fact.slots:
            if slot == "side":
                _set(targets, mask, f"{name}: right", word in ("right", "bilateral"))
                _set(targets, mask, f"{name}: left", word in ("left", "bilateral"))
            elif slot == "zone":
                for zone in findings_lib.ZONES:
                    _set(targets, mask, f"{name}: {zone}", word == zone)
            elif slot == "sev":
                for w in report_lib._PHRASES[name].severity_words:
                    _set(targets, mask, f"{name}: {w}", word == w)
            elif slot == "rib":
                for rib in findings_lib.RIBS:
                    _set(targets, mask, f"{name}: {rib} rib", word == rib)
            elif slot == "device":
                _set(targets, mask, f"{name}: {word}", True)
        if fact.devices_listed:  # a positive mention lists every device: the others are absent
            listed = {w for f in facts if f.devices_listed for s, w in f.slots if s == "device"}
            for device in findings_lib.DEVICES:
                _set(targets, mask, f"{name}: {device}", device in listed)
    return targets, mask
