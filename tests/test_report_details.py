"""The synthetic reports' details parsed from their text against the studies they were written from."""

import numpy as np
import pytest

from data_pipelines import labels as labels_lib
from data_pipelines.synthetic_cxr import (
    findings as findings_lib,
    generator,
    report as report_lib,
    report_details as details,
)

_NAMES = {n: i for i, n in enumerate(details.DETAIL_NAMES)}
_OTHER = {  # a slot's value -> another one, to see whether the text names the slot
    "side": lambda d: d._replace(side="left" if d.side == "right" else "right"),
    "zone": lambda d: d._replace(zone="lower" if d.zone == "upper" else "upper"),
    "severity": lambda d: d._replace(severity=(d.severity + 1) % 3),
    "rib": lambda d: d._replace(rib=(d.rib + 1) % len(findings_lib.RIBS)),
}


def _slot_bits(name: str, slot: str, detail: findings_lib.Detail) -> dict[int, bool]:
    """The detail bits of one slot of finding `name` and their true values (empty: no such bits)."""
    words = {
        "side": {"right": detail.side in ("right", "bilateral"), "left": detail.side in ("left", "bilateral")},
        "zone": {z: detail.zone == z for z in findings_lib.ZONES},
        "severity": {w: i == detail.severity for i, w in enumerate(report_lib._PHRASES[name].severity_words)},
        "rib": {f"{r} rib": i == detail.rib for i, r in enumerate(findings_lib.RIBS)},
    }[slot]
    return {_NAMES[f"{name}: {w}"]: v for w, v in words.items() if f"{name}: {w}" in _NAMES}


def test_names_are_the_findings_details():
    assert len(details.DETAIL_NAMES) == len(set(details.DETAIL_NAMES)) == 78
    assert [n for n in details.DETAIL_NAMES if n.endswith(": present")] == [
        f"{f}: present" for f in findings_lib.FINDINGS
    ]


def test_every_stated_fact_is_true_and_every_fact_the_text_states_is_unmasked():
    """3,000 studies, each report written with its own stream. A slot (side, zone, severity,
    rib) of a present finding is stated iff writing the report again, from the same stream,
    with that slot changed changes the text: exactly then its bits must be unmasked."""
    stated, detail_bits = 0, 0
    for i in range(3000):
        study = generator.study_of(i)
        text = report_lib.write_report(study, np.random.default_rng(i))
        targets, mask = details.parse(text)
        assert targets.dtype == mask.dtype == np.float32 and targets.shape == (78,)
        for name in findings_lib.FINDINGS:
            code = study.labels[labels_lib.CLASS_NAMES.index(name)]
            present = code in (labels_lib.POSITIVE, labels_lib.UNCERTAIN)
            j = _NAMES[f"{name}: present"]
            assert mask[j] == 1 and targets[j] == present, (i, name, text)
            own = [_NAMES[n] for n in details.DETAIL_NAMES if n.startswith(f"{name}: ") and _NAMES[n] != j]
            if not present:
                assert not mask[own].any(), (i, name, text)
                continue
            detail = study.details[name]
            for slot, change in _OTHER.items():
                changed = study._replace(details={**study.details, name: change(detail)})
                says = report_lib.write_report(changed, np.random.default_rng(i)) != text
                bits = _slot_bits(name, slot, detail)
                assert bits or not says, (i, name, slot, "stated but has no bits")
                for b, value in bits.items():
                    assert mask[b] == says, (i, name, slot, text)
                    if says:
                        assert targets[b] == value, (i, details.DETAIL_NAMES[b], text)
            if name == "Support Devices":
                bits = [_NAMES[f"{name}: {d}"] for d in findings_lib.DEVICES]
                assert mask[bits].sum() == (4 if code == labels_lib.POSITIVE else 1), (i, text)
                for b, device in zip(bits, findings_lib.DEVICES):
                    if mask[b]:
                        assert targets[b] == (device in detail.devices), (i, device, text)
        stated += int(mask.sum()) - len(findings_lib.FINDINGS)
        detail_bits += len(details.DETAIL_NAMES) - len(findings_lib.FINDINGS)
    # About 1.5 detail bits of 65 per report are stated (most findings are absent).
    assert 0.01 < stated / detail_bits < 0.1, stated


def test_the_datasets_reports_parse():
    for i in range(20):
        example = generator.generate_example(i, seed=3, image_size=8)
        study = generator.study_of(i, seed=3)
        targets, mask = details.parse(example["report"])
        present = np.isin(study.labels, (labels_lib.POSITIVE, labels_lib.UNCERTAIN))
        for name in findings_lib.FINDINGS:
            assert targets[_NAMES[f"{name}: present"]] == present[labels_lib.CLASS_NAMES.index(name)]


def test_a_sentence_of_another_grammar_is_an_error():
    with pytest.raises(ValueError, match="not a sentence of the synthetic_cxr report grammar"):
        details.parse("FINDINGS: There is a tiny right effusion. IMPRESSION: Effusion.")
    targets, mask = details.parse("FINDINGS: No pneumothorax. IMPRESSION: No acute cardiopulmonary process.")
    assert mask.sum() == 13 and targets.sum() == 0
