"""Cached report features for a frozen text encoder.

A frozen encoder maps each report to the same pooled features every epoch, so they are
computed once, in batches on the accelerator, and looked up afterwards: training then runs
no BERT at all. A report belongs to a study, so a run's features are looked up by the
batches' study keys (`study_id`, int64, made by the input pipeline): one `searchsorted` per
batch. Identical reports (e.g. the empty report of studies without one, and of the eval
batches' padding rows) are encoded once.

On disk the features are stored by report (the digest of its token ids), in one file per set
of distinct reports and encoder: its name hashes the reports' digests, the encoder (the
checkpoint's files, the pooling, the compute dtype, the architecture and seed of a random
encoder) and the file format, nothing of the image build. So the same reports are encoded
once per machine (`default_dir`), whatever image size or build they come with.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterable

import jax
import numpy as np
from absl import logging

from vkd_jax.runs import log, study_table

# 1: keyed by token-row digests (no "format" entry in the file); 2: keyed by study keys;
# 3: features by report digest, the file named by the reports and the encoder.
FORMAT = 3
# Fields of `model.text_encoder` that change no feature of a frozen encoder.
_NOT_FEATURES = ("cache_dir", "cache_features", "lr_multiplier", "train_mode", "train_last_k", "remat", "tokenizer")


def default_dir() -> str:
    """One cache per machine: `$VKD_JAX_CACHE/text_features`, else
    `$XDG_CACHE_HOME/vkd-jax/text_features` (`~/.cache/vkd-jax/text_features`)."""
    root = os.environ.get("VKD_JAX_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser(os.path.join("~", ".cache")), "vkd-jax"
    )
    return os.path.join(root, "text_features")


def _file_stamp(path: str) -> list:
    if not path:
        return []
    files = (
        [path]
        if os.path.isfile(path)
        else sorted(os.path.join(path, f) for f in os.listdir(path) if os.path.isfile(os.path.join(path, f)))
    )
    return [[os.path.basename(f), os.path.getsize(f), int(os.path.getmtime(f))] for f in files]


def encoder_key(config) -> dict:
    """What, besides the reports' token ids, the features depend on: the encoder."""
    txt = config.model.text_encoder
    return {
        "checkpoint": [os.path.abspath(txt.init_from) if txt.init_from else "", _file_stamp(txt.init_from)],
        "text_encoder": {k: v for k, v in txt.to_dict().items() if k not in _NOT_FEATURES},
        "pooling": config.model.text_pooling,
        "dtype": config.model.dtype,
        "seed": config.seed if not txt.init_from else None,  # a random encoder depends on it
    }


@dataclasses.dataclass
class Reports:
    """The distinct tokenized reports of some batches, and which study has which.

    `digests` `[M]` (16 bytes each, of the masked token row), `input_ids` and
    `attention_mask` `[M, L]`; `study_keys` int64 `[N]` (distinct) and `report_of` `[N]`
    their reports' indices."""

    digests: list[bytes]
    input_ids: np.ndarray
    attention_mask: np.ndarray
    study_keys: np.ndarray
    report_of: np.ndarray


def read_reports(batches: Iterable[dict]) -> Reports:
    """The reports of host batches with input_ids, attention_mask and study_id (image_id,
    where there, names rows in errors). A study key that comes with two different reports
    is a `ValueError`: the cache holds one report per study."""
    distinct: dict[bytes, int] = {}  # digest of a masked token row -> its report's index
    tokens: list[tuple[np.ndarray, np.ndarray]] = []  # (input_ids, attention_mask) per report
    report_of: dict[int, int] = {}  # study key -> report index
    named: dict[int, str] = {}  # study key -> the image id that first showed it
    for batch in batches:  # padding rows included: eval batches look them up too
        ids, mask = np.asarray(batch["input_ids"]), np.asarray(batch["attention_mask"])
        masked = np.ascontiguousarray((ids * mask).astype(np.int32))
        image_ids = batch.get("image_id", [""] * len(ids))
        for key, row, i, m, image_id in zip(np.asarray(batch["study_id"]).tolist(), masked, ids, mask, image_ids):
            r = distinct.setdefault(hashlib.blake2b(row.tobytes(), digest_size=16).digest(), len(tokens))
            if r == len(tokens):
                tokens.append((i, m))
            if report_of.setdefault(key, r) != r:
                raise ValueError(
                    f"study key {key}: images {named[key] or '?'} and {image_id or '?'} have different "
                    "reports; the text-feature cache needs one report per study"
                )
            named.setdefault(key, image_id)
    return Reports(
        digests=list(distinct),
        input_ids=np.stack([t[0] for t in tokens]),
        attention_mask=np.stack([t[1] for t in tokens]),
        study_keys=np.fromiter(report_of, np.int64, len(report_of)),
        report_of=np.fromiter(report_of.values(), np.int64, len(report_of)),
    )


def fingerprint(encoder: dict, reports: Reports) -> str:
    """A short hash of what the cached features depend on (the cache file's name): the
    encoder (`encoder_key`), the set of distinct reports and the file format."""
    h = hashlib.sha256(json.dumps({"format": FORMAT, "encoder": encoder}, sort_keys=True, default=str).encode())
    h.update(b"".join(sorted(reports.digests)))
    return h.hexdigest()[:16]


class FormatError(ValueError):
    """A cache file written in another format."""


class TextFeatureCache(study_table.StudyTable):
    """Study key -> `[H]` float32 features; `add_to(batch)` adds `text_features` `[B, H]`.

    `keys` int64 `[N]` (distinct, N > 0), `rows` `[N]` their rows of `features` `[M, H]`
    (M <= N: studies with the same report share a row); `path` names the file in errors.
    """

    def __init__(self, keys: np.ndarray, rows: np.ndarray, features: np.ndarray, path: str = ""):
        features = np.asarray(features, np.float32)
        super().__init__(keys, rows, {"text_features": features}, "text-feature cache", path)

    @property
    def features(self) -> np.ndarray:
        return self.columns["text_features"]


def save(path: str, reports: Reports, features: np.ndarray) -> None:
    """Writes `features` `[M, H]` of `reports` (by digest) to `path`, atomically: runs on one
    machine share the file, and a reader never sees half of it."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    digests = np.frombuffer(b"".join(reports.digests), np.uint8).reshape(-1, 16)
    np.savez(tmp, format=np.int64(FORMAT), digests=digests, features=np.asarray(features, np.float32))
    os.replace(tmp, path)


def load(path: str, reports: Reports) -> np.ndarray:
    """The features `[M, H]` of `reports`, in their order, from the file at `path`;
    `FormatError` if another format wrote it or it lacks one of the reports."""
    with np.load(path) as f:
        found = int(f["format"]) if "format" in f else 1
        if found != FORMAT:
            raise FormatError(f"{path} is a text-feature cache of format {found}, not {FORMAT}")
        row = {d.tobytes(): i for i, d in enumerate(f["digests"])}
        features = f["features"]
    missing = [d for d in reports.digests if d not in row]
    if missing:
        raise FormatError(f"{path} lacks {len(missing)} of the {len(reports.digests)} reports")
    return features[[row[d] for d in reports.digests]]


def encode_reports(
    reports: Reports,
    encode: Callable[[dict], jax.Array],
    batch_size: int,
    to_host: Callable = np.asarray,
    length_bucket: int = 32,
) -> np.ndarray:
    """The features `[M, H]` of `reports`, in their order, `batch_size` reports per `encode`
    call, with progress lines in the log.

    Reports are sorted by length and each call is cut to its longest report (rounded up to
    `length_bucket`, which bounds the number of compiled shapes): padding past a report's
    end changes nothing under the attention mask, and short reports cost less.
    """
    num = len(reports.digests)
    logging.info("text-feature cache: encoding %d reports with the frozen text encoder...", num)
    order = np.argsort(reports.attention_mask.sum(1), kind="stable")
    ids, mask = reports.input_ids[order], reports.attention_mask[order]
    progress = log.progress("text-feature cache encoded", num, "reports")
    features = []
    for start in range(0, num, batch_size):
        chunk_ids, chunk_mask = ids[start : start + batch_size], mask[start : start + batch_size]
        length = min(ids.shape[1], -(-int(chunk_mask.sum(1).max()) // length_bucket) * length_bucket)
        chunk_ids, chunk_mask = chunk_ids[:, :length], chunk_mask[:, :length]
        pad = batch_size - len(chunk_ids)
        if pad:
            chunk_ids = np.concatenate([chunk_ids, np.repeat(chunk_ids[:1], pad, 0)])
            chunk_mask = np.concatenate([chunk_mask, np.repeat(chunk_mask[:1], pad, 0)])
        out = to_host(encode({"input_ids": chunk_ids, "attention_mask": chunk_mask}))
        features.append(out[: batch_size - pad])
        progress.update(batch_size - pad)
    position = np.empty(num, np.int64)
    position[order] = np.arange(num)  # report index -> its row of the length-ordered features
    return np.concatenate(features)[position]


def build(
    batches: Iterable[dict],
    encode: Callable[[dict], jax.Array],
    batch_size: int,
    to_host: Callable = np.asarray,
    length_bucket: int = 32,
) -> TextFeatureCache:
    """The in-memory cache of every report in `batches` (`read_reports`), encoded
    (`encode_reports`)."""
    reports = read_reports(batches)
    return _cache(reports, encode_reports(reports, encode, batch_size, to_host, length_bucket))


def _cache(reports: Reports, features: np.ndarray, path: str = "") -> TextFeatureCache:
    return TextFeatureCache(reports.study_keys, reports.report_of, features, path)


def load_or_build(
    cache_dir: str,
    encoder: dict,
    batches: Iterable[dict],
    encode,
    batch_size: int,
    to_host=np.asarray,
) -> TextFeatureCache:
    """The features of the reports in `batches` by `encoder` (`encoder_key`): read from
    `cache_dir` if a run with the same reports and encoder stored them, else encoded and
    stored there (by process 0)."""
    reports = read_reports(batches)
    path = os.path.join(cache_dir, fingerprint(encoder, reports) + ".npz")
    logging.info(
        "text-feature cache: %d studies, %d distinct reports (%s)", len(reports.study_keys), len(reports.digests), path
    )
    if os.path.exists(path):
        try:
            features = load(path, reports)
            logging.info("text-feature cache: reusing %s", path)
            return _cache(reports, features, path)
        except FormatError as e:
            logging.warning("%s; rebuilding it", e)
    features = encode_reports(reports, encode, batch_size, to_host)
    if jax.process_index() == 0:
        save(path, reports, features)
    return _cache(reports, features, path)
