"""The training configs, installed with the package: `--config=configs/NAME.py` names one of
them wherever the command runs (`resolve`)."""

from __future__ import annotations

import os

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def resolve(path: str) -> str:
    """`path` itself when it exists; else, for a `configs/NAME.py` path, the installed
    package's `NAME.py` when there is one (the installed commands run from any directory);
    else `path`, for the caller's own missing-file error."""
    if os.path.exists(path):
        return path
    parent, name = os.path.split(os.path.normpath(path))
    packaged = os.path.join(PACKAGE_DIR, name)
    if parent == "configs" and name.endswith(".py") and os.path.isfile(packaged):
        return packaged
    return path
