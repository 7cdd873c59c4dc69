"""Sections of a MIMIC-CXR free-text report, following the rules of the official parser.

MIT-LCP/mimic-cxr `txt/section_parser.py`: a header starts a line with one space, is
upper case (letters, spaces, `()/,-`) and ends with a colon; header names are
normalised (typos and synonyms, e.g. CONCLUSION -> impression); empty findings and
impression sections are dropped; when neither exists, the last paragraph of the last
section becomes `last_paragraph`. This is a re-implementation of those rules, not a copy.
Text after a line of underscores is an addendum and is kept out of findings/impression.
"""

from __future__ import annotations

import re

SECTIONS = ("findings_impression", "impression", "findings", "full")

_HEADER = re.compile(r"\n ([A-Z ()/,-]+):\s")
_ADDENDUM_RULE = re.compile(r"\n *_{8,} *(?=\n|$)")
_MAIN = ("impression", "findings", "history", "comparison", "addendum")
_SYNONYMS = {
    "comparisons": "comparison",
    "comparison exam": "comparison",
    "comparison film": "comparison",
    "reference exam": "comparison",
    "clinical history": "history",
    "clinical information": "history",
    "patient history": "history",
    "pfi": "history",
    "reason for examination": "indication",
    "reason for exam": "indication",
    "clinical indication": "indication",
    "exam": "examination",
    "type of examination": "examination",
    "conclusion": "impression",
    "findings and impression": "impression",
    "findings/impression": "impression",
    "chest, two views": "findings",
    "recommendation(s)": "recommendations",
    "recommendation": "recommendations",
    "wetread": "wet read",
    # Misspellings seen in the corpus.
    "impresson": "impression",
    "imprression": "impression",
    "imoression": "impression",
    "impressoin": "impression",
    "imprssion": "impression",
    "impresion": "impression",
    "imperssion": "impression",
    "mpression": "impression",
    "impession": "impression",
    "finding": "findings",
    "findins": "findings",
    "findindgs": "findings",
    "findgings": "findings",
    "findngs": "findings",
    "findnings": "findings",
    "finidngs": "findings",
    "idication": "indication",
    "comparision": "comparison",
    "comparsion": "comparison",
    "comparrison": "comparison",
}
# Headers that describe the whole study ("CHEST, PA AND LATERAL:") introduce findings.
_FINDINGS_LIKE = re.compile(
    r"chest|portable|pa and lat|lateral and pa|ap and lateral|lateral and ap|frontal and|"
    r"two views|frontal view|pa view|ap view|one view|lateral view|bone window|"
    r"frontal upright|frontal semi-upright|ribs"
)


def normalise_name(header: str) -> str:
    """A header as found (e.g. 'IMPRESSIONS') -> its normalised section name."""
    name = header.lower().strip()
    if name in _SYNONYMS:
        return _SYNONYMS[name]
    for main in _MAIN:
        if main in name:
            return main
    return "findings" if _FINDINGS_LIKE.search(name) else name


def split_sections(text: str) -> list[tuple[str, str]]:
    """A report -> [(normalised name, raw body)], in order; 'preamble' comes first."""
    text = _ADDENDUM_RULE.sub("\n ADDENDUM:\n", text)
    match = _HEADER.search(text)
    if match is None:
        sections = [("full report", text)]
    else:
        sections = [("preamble", text[: match.start(1)])]
        while match:
            name, start = normalise_name(match.group(1)), match.end()
            # Resume after the header's line, as the official parser does.
            newline = text.find("\n", start)
            match = _HEADER.search(text, newline if newline != -1 else start)
            sections.append((name, text[start : match.start() if match else len(text)]))
    sections = [(n, b) for n, b in sections if not (n in ("impression", "findings") and not b.strip())]
    names = {n for n, _ in sections}
    if "impression" not in names and "findings" not in names:
        name, body = sections[-1]
        if "\n \n" in body:
            first, rest = body.split("\n \n", 1)
            sections[-1] = (name, first)
            sections.append(("last_paragraph", rest))
    return sections


def _clean(text: str) -> str:
    # Lines wrap at 79 characters: newlines and runs of spaces are not meaningful.
    return " ".join(text.split())


def _last(sections: list[tuple[str, str]], name: str) -> str | None:
    bodies = [b for n, b in sections if n == name]
    return bodies[-1] if bodies else None


def extract(text: str, which: str = "findings_impression") -> str:
    """The report text to store: one of `SECTIONS`, whitespace-normalised.

    'findings_impression': the last findings and the last impression section, joined;
    'impression' or 'findings': that section, else the other. Both fall back, as the
    official parser does, to the last paragraph and then the comparison section, else "".
    'full': the whole report.
    """
    if which not in SECTIONS:
        raise ValueError(f"report sections must be one of {SECTIONS}, got {which!r}")
    if which == "full":
        return _clean(text)
    sections = split_sections(text)
    order = {
        "findings_impression": ("findings", "impression"),
        "impression": ("impression",),
        "findings": ("findings",),
    }[which]
    found = [b for b in (_last(sections, n) for n in order) if b is not None]
    if not found and which != "findings_impression":
        other = "findings" if which == "impression" else "impression"
        found = [b for b in [_last(sections, other)] if b is not None]
    if not found:
        found = [b for b in [_last(sections, "last_paragraph") or _last(sections, "comparison")] if b is not None]
    return _clean(" ".join(found))
