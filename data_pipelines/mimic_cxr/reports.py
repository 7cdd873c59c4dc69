"""Finds MIMIC-CXR v2.0.0 reports: `mimic-cxr-reports.zip` or its extracted folder.

Reports live at `.../files/pXX/p<subject_id>/s<study_id>.txt`; where the `files/`
folder sits varies with how the zip was unpacked, so it is searched for.
"""

from __future__ import annotations

import os
import re
import zipfile

ZIP_NAME = "mimic-cxr-reports.zip"
_MEMBER = re.compile(r"(?:^|/)files/p\d\d/p(\d+)/s(\d+)\.txt$")
_MAX_DEPTH = 3  # Of a `files/` folder below manual_dir.


def relative_path(subject_id: str, study_id: str) -> str:
    """`p10/p10000032/s50414267.txt`: the group folder is the patient folder's first 3 chars."""
    patient = f"p{subject_id}"
    return os.path.join(patient[:3], patient, f"s{study_id}.txt")


def _files_dirs(manual_dir: str) -> list[str]:
    """Every folder named `files` at most `_MAX_DEPTH` below `manual_dir` (not inside one)."""
    found = []
    for root, dirs, _ in os.walk(manual_dir):
        depth = os.path.relpath(root, manual_dir).count(os.sep) + (root != manual_dir)
        if "files" in dirs:
            found.append(os.path.join(root, "files"))
        # Never descend into a `files/` tree (hundreds of thousands of images).
        dirs[:] = [d for d in dirs if d != "files" and depth < _MAX_DEPTH]
    return sorted(found)


class Reports:
    """`get(subject_id, study_id)`: a study's raw report text, or None if there is none."""

    def __init__(self, manual_dir: str):
        self._zip = None
        self._members: dict[tuple[str, str], str] = {}
        zips = [
            os.path.join(r, ZIP_NAME)
            for r, _, fs in os.walk(manual_dir)
            if ZIP_NAME in fs and os.path.relpath(r, manual_dir).count(os.sep) < _MAX_DEPTH
        ]
        if zips:
            self._zip = zipfile.ZipFile(sorted(zips)[0])
            for name in self._zip.namelist():
                match = _MEMBER.search(name)
                if match:
                    self._members[match.groups()] = name
        self._dirs = [] if self._zip else _files_dirs(manual_dir)
        self.source = sorted(zips)[0] if zips else ", ".join(self._dirs)

    def get(self, subject_id: str, study_id: str) -> str | None:
        if self._zip is not None:
            name = self._members.get((subject_id, study_id))
            return None if name is None else self._zip.read(name).decode("utf-8", "replace")
        for files_dir in self._dirs:
            path = os.path.join(files_dir, relative_path(subject_id, study_id))
            if os.path.exists(path):
                with open(path, encoding="utf-8", errors="replace") as f:
                    return f.read()
        return None
