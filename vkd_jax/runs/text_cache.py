"""Cached report features for a frozen text encoder.

A frozen encoder maps each report to the same pooled features every epoch, so they are
computed once, in batches on the accelerator, and looked up afterwards: training then runs
no BERT at all. A report belongs to a study, so features are keyed by the batches' study
keys (`study_id`, int64, made by the input pipeline): a lookup is one `searchsorted` per
batch. Identical reports (e.g. the empty report of studies without one, and of the eval
batches' padding rows) are encoded once. The cache is kept on disk under a fingerprint of
everything that determines the features: the file format, the checkpoint, the tokenizer,
the maximum length, the pooling and the dataset (whose study ids are the keys).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator

import jax
import numpy as np
from absl import logging

from data_pipelines.dataset_options import active_data

# 1: keyed by token-row digests (no "format" entry in the file); 2: keyed by study keys.
FORMAT = 2


def _file_stamp(path: str) -> list:
    if not path:
        return []
    files = (
        [path]
        if os.path.isfile(path)
        else sorted(os.path.join(path, f) for f in os.listdir(path) if os.path.isfile(os.path.join(path, f)))
    )
    return [[os.path.basename(f), os.path.getsize(f), int(os.path.getmtime(f))] for f in files]


def fingerprint(config, num_examples: dict, tokenizer) -> str:
    """A short hash of what the cached features depend on (the cache file's name)."""
    txt = config.model.text_encoder
    data = active_data(config.data.to_dict())  # another dataset's build options change nothing
    data.pop("augment", None)  # image-only settings do not change report features
    parts = {
        "format": FORMAT,  # a file of another format is never found, so never misread
        "checkpoint": [os.path.abspath(txt.init_from) if txt.init_from else "", _file_stamp(txt.init_from)],
        "tokenizer": [txt.tokenizer, len(tokenizer), type(tokenizer).__name__],
        "max_length": txt.max_length,
        "pooling": config.model.text_pooling,
        "seed": config.seed if not txt.init_from else None,  # a random encoder depends on it
        "dataset": data,
        "num_examples": num_examples,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class FormatError(ValueError):
    """A cache file written in another format."""


class TextFeatureCache:
    """Study key -> `[H]` float32 features; `add_to(batch)` adds `text_features` `[B, H]`.

    `keys` int64 `[N]` (distinct, N > 0), `rows` `[N]` their rows of `features` `[M, H]`
    (M <= N: studies with the same report share a row); `path` names the file in errors.
    """

    def __init__(self, keys: np.ndarray, rows: np.ndarray, features: np.ndarray, path: str = ""):
        order = np.argsort(keys, kind="stable")
        self.keys = np.asarray(keys, np.int64)[order]
        self.rows = np.asarray(rows, np.int64)[order]
        self.features = np.asarray(features, np.float32)
        self.path = path

    def add_to(self, batch: dict) -> dict:
        """`batch` plus the features of its `study_id`s. Padding rows (`mask` 0) whose key
        is not cached (an eval batch layout the build did not see) get zeros."""
        keys = np.asarray(batch["study_id"], np.int64)
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        found = self.keys[pos] == keys
        features = self.features[self.rows[pos]]
        if not found.all():
            missing = np.flatnonzero(~found & (np.asarray(batch.get("mask", 1.0)) > 0))
            if len(missing):
                more = f", and {len(missing) - 1} more" if len(missing) > 1 else ""
                raise KeyError(
                    f"study key {int(keys[missing[0]])} (row {missing[0]} of the batch{more}) is not in the "
                    f"text-feature cache {self.path or '(in memory)'}: it was built from other data. Delete "
                    "the file to rebuild it from the dataset the config names (the next run does)"
                )
            features[~found] = 0.0
        return dict(batch, text_features=features)

    def wrap(self, batches: Iterable[dict]) -> Iterator[dict]:
        for batch in batches:
            yield self.add_to(batch)

    def save(self, path: str) -> None:
        tmp = path + ".tmp.npz"
        np.savez(tmp, format=np.int64(FORMAT), keys=self.keys, rows=self.rows, features=self.features)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> TextFeatureCache:
        """The cache saved at `path`; `FormatError` if another format wrote it."""
        with np.load(path) as f:
            found = int(f["format"]) if "format" in f else 1
            if found != FORMAT:
                raise FormatError(f"{path} is a text-feature cache of format {found}, not {FORMAT}")
            return cls(f["keys"], f["rows"], f["features"], path)


def build(
    batches: Iterable[dict],
    encode: Callable[[dict], jax.Array],
    batch_size: int,
    to_host: Callable = np.asarray,
    length_bucket: int = 32,
) -> TextFeatureCache:
    """Encodes every distinct report in `batches` (host batches with input_ids,
    attention_mask and study_id; image_id, where there, names rows in errors),
    `batch_size` reports per `encode` call. A study key that comes with two different
    reports is a `ValueError`: the cache holds one report per study.

    Reports are sorted by length and each call is cut to its longest report (rounded up to
    `length_bucket`, which bounds the number of compiled shapes): padding past a report's
    end changes nothing under the attention mask, and short reports cost less.
    """
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
    order = sorted(range(len(tokens)), key=lambda r: int(tokens[r][1].sum()))
    ids = np.stack([tokens[r][0] for r in order])
    mask = np.stack([tokens[r][1] for r in order])
    features = []
    for start in range(0, len(order), batch_size):
        chunk_ids, chunk_mask = ids[start : start + batch_size], mask[start : start + batch_size]
        length = min(ids.shape[1], -(-int(chunk_mask.sum(1).max()) // length_bucket) * length_bucket)
        chunk_ids, chunk_mask = chunk_ids[:, :length], chunk_mask[:, :length]
        pad = batch_size - len(chunk_ids)
        if pad:
            chunk_ids = np.concatenate([chunk_ids, np.repeat(chunk_ids[:1], pad, 0)])
            chunk_mask = np.concatenate([chunk_mask, np.repeat(chunk_mask[:1], pad, 0)])
        out = to_host(encode({"input_ids": chunk_ids, "attention_mask": chunk_mask}))
        features.append(out[: batch_size - pad])
    logging.info("text-feature cache: encoded %d distinct reports of %d studies", len(order), len(report_of))
    position = np.empty(len(order), np.int64)
    position[order] = np.arange(len(order))  # report index -> its row of `features` (length order)
    keys = np.fromiter(report_of, np.int64, len(report_of))
    return TextFeatureCache(
        keys, position[np.fromiter(report_of.values(), np.int64, len(report_of))], np.concatenate(features)
    )


def load_or_build(
    path: str, make_batches: Callable[[], Iterable[dict]], encode, batch_size: int, to_host=np.asarray
) -> TextFeatureCache:
    """The cache at `path`, built (and saved there) if it is not there yet, or is of
    another format."""
    if os.path.exists(path):
        try:
            cache = TextFeatureCache.load(path)
            logging.info("text-feature cache: reusing %s", path)
            return cache
        except FormatError as e:
            logging.warning("%s; rebuilding it", e)
    cache = build(make_batches(), encode, batch_size, to_host)
    cache.path = path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if jax.process_index() == 0:
        cache.save(path)
    return cache
