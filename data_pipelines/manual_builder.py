"""The shared tfds builder of the real datasets, built from a user's manual download.

A dataset module only indexes its source files into `Entry`s (ids, split, report text,
raw labels, where the image is); this base class preprocesses the images in parallel
into a restartable cache (`image_cache`), writes the records, and keeps a build report
(examples per split, files skipped and why) that `data_pipelines.build` prints and saves.
Records (all datasets):
  image       uint8 [S, S, 1] PNG, S the config's `image_size`;
  report      text ("" where there is none), the same for every image of a study;
  labels      int8 [14], CheXpert order (`labels.CLASS_NAMES`), codes 1/0/-1/-2;
  subject_id, study_id, image_id, view   text;
plus dataset-specific features (`EXTRA_FEATURES`).

A builder with `STAMPS_IMAGES` (the `csv` one: its index is cheap to redo) also records
each image file's size and mtime (`image_stamps`, saved beside the records) and their
digest in the report's `sources`, so `data_pipelines.build` refuses to reuse a build whose
images were replaced under an unchanged table, naming them.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from data_pipelines import image_cache, progress as progress_lib, records, source_files

SPLITS = ("train", "validation", "test")
_LISTED = 20  # Files listed per skip reason in the report (all are counted).
STAMPS_FILE = "image_stamps.json"  # Beside the records: {image path: [size, mtime_ns]}.


@dataclasses.dataclass
class Entry:
    """One image to write; `source` is a path, or a key `_image_sources` resolves."""

    split: str
    image_id: str
    source: str
    subject_id: str
    study_id: str
    view: str
    report: str
    labels: np.ndarray  # int8 [14]
    extra: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Index:
    """What a dataset module found: entries to write, and what it left out or noticed."""

    entries: list[Entry] = dataclasses.field(default_factory=list)
    skipped: dict[str, list[str]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list)
    )  # reason -> ids or files
    notes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    # reason -> ids or files kept but worth a look (e.g. a symlink out of the image folder).
    warned: dict[str, list[str]] = dataclasses.field(default_factory=lambda: collections.defaultdict(list))

    def skip(self, reason: str, what: str) -> None:
        self.skipped[reason].append(what)

    def warn(self, reason: str, what: str) -> None:
        self.warned[reason].append(what)


@dataclasses.dataclass(eq=False)
class ManualConfig(tfds.core.BuilderConfig):
    image_size: int = 224


class ManualBuilder(tfds.core.GeneratorBasedBuilder):
    """Base of the `mimic_cxr`, `openi` and `chestxray14` builders (not registered)."""

    EXTRA_FEATURES: dict = {}
    EXTRA_METADATA: dict = {}
    STAMPS_IMAGES = False  # Record image stamps (module doc): only where `_index` is cheap.
    code_path = epath.Path(__file__)  # tfds 4.9.10 otherwise imports importlib_resources.

    def __init__(self, *, workers: int = 1, **kwargs):
        self.workers = workers  # Image preprocessing processes; not part of the dataset.
        self.build_report: dict | None = None
        self.image_stamps: dict[str, list[int]] | None = None  # Set by a build with STAMPS_IMAGES.
        super().__init__(**kwargs)

    @abc.abstractmethod  # Also keeps this base class out of tfds's registry.
    def _index(self, manual_dir: str) -> Index:
        """Finds the entries to write in `manual_dir`."""

    def source_digests(self, manual_dir: str) -> dict[str, str]:
        """{file: sha1} of the source files whose edits a rebuild must not miss; the build
        report records them and `data_pipelines.build` refuses a stale build. None here."""
        del manual_dir
        return {}

    def current_image_stamps(self, manual_dir: str) -> dict[str, list[int]] | None:
        """The image stamps a build from `manual_dir` would record now (it re-indexes), or
        None for a builder without STAMPS_IMAGES."""
        if not self.STAMPS_IMAGES:
            return None
        return image_stamps(_unique(self._index(manual_dir)), manual_dir)

    def _image_sources(self, entries: list[Entry], manual_dir: str) -> Iterator[tuple[str, str | bytes]]:
        """(image_id, path or bytes) for `entries`; by default `source` is a path."""
        del manual_dir
        for e in entries:
            yield e.image_id, e.source

    def _info(self) -> tfds.core.DatasetInfo:
        return records.record_info(
            self, self.builder_config.image_size, self.__doc__, self.EXTRA_FEATURES, self.EXTRA_METADATA
        )

    def cache_dir(self) -> str:
        """Preprocessed PNGs of this image size, shared by every config of the dataset."""
        root = os.fspath(self._data_dir_root)
        return os.path.join(root, "_build_cache", self.name, f"s{self.builder_config.image_size}")

    def _split_generators(self, dl_manager):
        manual_dir = source_files.require_dir(dl_manager.manual_dir, self.name, self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        print(f"{self.name}: indexing {manual_dir}", flush=True)
        index = self._index(manual_dir)
        entries = _unique(index)
        _check_one_report_per_study(entries)
        cache = self.cache_dir()
        pending = [e for e in entries if not image_cache.is_cached(cache, e.image_id, e.source)]
        print(
            f"{self.name}: {len(entries)} images indexed, {len(entries) - len(pending)} "
            f"already preprocessed in {cache}",
            flush=True,
        )
        errors = image_cache.cache_images(
            self._image_sources(pending, manual_dir),
            len(pending),
            cache_dir=cache,
            size=self.builder_config.image_size,
            workers=self.workers,
            name=self.name,
        )
        # Paths relative to manual_dir: shorter, and the same wherever the data is mounted.
        sources = {e.image_id: e.source.removeprefix(manual_dir.rstrip(os.sep) + os.sep) for e in entries}
        for key in sorted(errors):
            index.skip("unreadable image", f"{sources[key]} ({errors[key]})")
        kept = [e for e in entries if e.image_id not in errors]
        by_split = {split: [e for e in kept if e.split == split] for split in SPLITS}
        sources = self.source_digests(manual_dir)
        if self.STAMPS_IMAGES:  # Of every indexed image, the unreadable too: as a re-index sees them.
            self.image_stamps = image_stamps(entries, manual_dir)
            sources["images"] = stamps_digest(self.image_stamps)
        self.build_report = _report(self.name, by_split, index) | {"sources": sources}
        return {split: self._generate_examples(es, cache, split) for split, es in by_split.items()}

    def _generate_examples(self, entries: list[Entry], cache: str, split: str = ""):
        progress = progress_lib.Progress(f"{self.name}: wrote {split}", len(entries), "examples")
        for e in progress_lib.track(entries, progress):
            yield (
                e.image_id,
                {
                    "image": image_cache.path(cache, e.image_id),
                    "report": e.report,
                    "labels": e.labels,
                    "subject_id": e.subject_id,
                    "study_id": e.study_id,
                    "image_id": e.image_id,
                    "view": e.view,
                    **e.extra,
                },
            )


def _unique(index: Index) -> list[Entry]:
    """Entries with duplicate image ids dropped (the first is kept) and reported."""
    seen, unique = set(), []
    for e in index.entries:
        if e.image_id in seen:
            index.skip("duplicate image id", e.image_id)
            continue
        seen.add(e.image_id)
        unique.append(e)
    return unique


def _check_one_report_per_study(entries: list[Entry]) -> None:
    """A study's images must share one report (training looks report features up by study,
    `vkd_jax.runs.text_cache`); raises naming a study whose images differ."""
    first: dict[str, Entry] = {}
    for e in entries:
        seen = first.setdefault(e.study_id, e)
        if seen.report != e.report:
            raise ValueError(
                f"study {e.study_id!r}: images {seen.image_id!r} and {e.image_id!r} have different "
                "reports; a study has one report"
            )


def _report(name: str, by_split: dict[str, list[Entry]], index: Index) -> dict:
    """Counts and ids only: never report text or other patient data."""
    return {
        "dataset": name,
        "examples": {split: len(es) for split, es in by_split.items()},
        "subjects": {split: len({e.subject_id for e in es}) for split, es in by_split.items()},
        "skipped": {
            reason: {"count": len(items), "first": sorted(items)[:_LISTED]}
            for reason, items in sorted(index.skipped.items())
        },
        "notes": dict(sorted(index.notes.items())),
        "warnings": {
            reason: {"count": len(items), "first": sorted(items)[:_LISTED]}
            for reason, items in sorted(index.warned.items())
        },
    }


def format_report(report: dict) -> str:
    """The build report as a few human-readable lines."""
    lines = [f"{report['dataset']}: examples written " + ", ".join(f"{s} {n}" for s, n in report["examples"].items())]
    for reason, info in report["skipped"].items():
        lines.append(f"  skipped {info['count']} ({reason}), e.g. {', '.join(info['first'][:5])}")
    for note, count in report["notes"].items():
        lines.append(f"  {note}: {count}")
    for reason, info in report.get("warnings", {}).items():  # Reports of older builds have none.
        lines.append(f"  warning: {info['count']} {reason}, e.g. {', '.join(info['first'][:5])}")
    return "\n".join(lines)


def image_stamps(entries: list[Entry], manual_dir: str) -> dict[str, list[int]]:
    """{image path relative to manual_dir: [size, mtime_ns]} of the entries whose source is
    a file (following symlinks: a retargeted link is a changed image)."""
    stamps = {}
    for e in entries:
        try:
            st = os.stat(e.source)
        except (OSError, ValueError):  # A key rather than a path, or a file gone since.
            continue
        stamps[os.path.relpath(e.source, manual_dir).replace(os.sep, "/")] = [st.st_size, st.st_mtime_ns]
    return stamps


def stamps_digest(stamps: dict[str, list[int]]) -> str:
    text = json.dumps(sorted(stamps.items()), separators=(",", ":"))
    return f"{len(stamps)} files, sha1 {hashlib.sha1(text.encode()).hexdigest()}"


def stamp_changes(built: dict[str, list[int]] | None, now: dict[str, list[int]]) -> str:
    """What differs between the stamps a build recorded and today's, naming a few files."""
    if built is None:
        return "their sizes or modification times differ (the build's image_stamps.json is gone)"
    parts = []
    for what, names in (
        ("replaced (size or mtime)", [p for p in now if p in built and now[p] != built[p]]),
        ("new", [p for p in now if p not in built]),
        ("gone", [p for p in built if p not in now]),
    ):
        if names:
            more = f" and {len(names) - 5} more" if len(names) > 5 else ""
            parts.append(f"{len(names)} {what}: {', '.join(sorted(names)[:5])}{more}")
    return "; ".join(parts) or "their sizes or modification times differ"


def seeded_split(subject_id: str, seed: int, fractions: dict[str, float]) -> str:
    """A patient's split, a fixed function of (seed, subject_id): every image of a patient
    lands in the same split, whatever else is in the dataset. `fractions` sum to 1."""
    digest = hashlib.sha256(f"{seed}:{subject_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    total = 0.0
    for split, fraction in fractions.items():
        total += fraction
        if u < total:
            return split
    return split  # Rounding of the fractions' sum.
