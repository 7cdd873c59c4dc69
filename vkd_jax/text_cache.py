"""Cached report features for a frozen text encoder.

A frozen encoder maps each report to the same pooled features every epoch, so they are
computed once, in batches on the accelerator, and looked up afterwards: training then runs
no BERT at all. Features are keyed by the tokenised report (ids under the attention mask),
so no example ids are needed, and identical reports are encoded once. The cache is kept on
disk under a fingerprint of everything that determines the features: the checkpoint, the
tokenizer, the maximum length, the pooling and the dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Callable, Iterable, Iterator

import jax
import numpy as np
from absl import logging


def row_keys(input_ids: np.ndarray, attention_mask: np.ndarray) -> list[bytes]:
    """One key per row of `[B, L]` token ids (padding positions zeroed)."""
    ids = np.ascontiguousarray((np.asarray(input_ids) * np.asarray(attention_mask)).astype(np.int32))
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in ids]


def _file_stamp(path: str) -> list:
    if not path:
        return []
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(path, f) for f in os.listdir(path) if os.path.isfile(os.path.join(path, f)))
    return [[os.path.basename(f), os.path.getsize(f), int(os.path.getmtime(f))] for f in files]


def fingerprint(config, num_examples: dict, tokenizer) -> str:
    """A short hash of what the cached features depend on."""
    txt = config.model.text_encoder
    data = config.data.to_dict()
    data.pop("augment", None)  # image-only settings do not change report features
    parts = {
        "checkpoint": [os.path.abspath(txt.init_from) if txt.init_from else "", _file_stamp(txt.init_from)],
        "tokenizer": [txt.tokenizer, len(tokenizer), type(tokenizer).__name__],
        "max_length": txt.max_length, "pooling": config.model.text_pooling,
        "seed": config.seed if not txt.init_from else None,  # a random encoder depends on it
        "dataset": data, "num_examples": num_examples,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class TextFeatureCache:
    """`key -> [H]` float32 features; `add_to(batch)` adds `text_features` `[B, H]`."""

    def __init__(self, keys: list[bytes], features: np.ndarray):
        self.index = {k: i for i, k in enumerate(keys)}
        self.keys = list(keys)
        self.features = np.asarray(features, np.float32)

    def add_to(self, batch: dict) -> dict:
        try:
            rows = [self.index[k] for k in row_keys(batch["input_ids"], batch["attention_mask"])]
        except KeyError:
            raise KeyError("a report is missing from the text-feature cache; delete the cache file to "
                           "rebuild it") from None
        return dict(batch, text_features=self.features[rows])

    def wrap(self, batches: Iterable[dict]) -> Iterator[dict]:
        for batch in batches:
            yield self.add_to(batch)

    def save(self, path: str) -> None:
        tmp = path + ".tmp.npz"
        np.savez(tmp, keys=np.frombuffer(b"".join(self.keys), np.uint8).reshape(-1, 16), features=self.features)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> "TextFeatureCache":
        with np.load(path) as f:
            return cls([bytes(k) for k in f["keys"]], f["features"])


def build(batches: Iterable[dict], encode: Callable[[dict], jax.Array], batch_size: int,
          to_host: Callable = np.asarray, length_bucket: int = 32) -> TextFeatureCache:
    """Encodes every distinct report in `batches` (host batches with input_ids and
    attention_mask), `batch_size` reports per `encode` call.

    Reports are sorted by length and each call is cut to its longest report (rounded up to
    `length_bucket`, which bounds the number of compiled shapes): padding past a report's
    end changes nothing under the attention mask, and short reports cost less.
    """
    rows: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
    for batch in batches:  # padding rows included: eval batches look them up too
        for key, i, m in zip(row_keys(batch["input_ids"], batch["attention_mask"]), batch["input_ids"],
                             batch["attention_mask"]):
            rows.setdefault(key, (i, m))
    keys = sorted(rows, key=lambda k: int(rows[k][1].sum()))
    ids = np.stack([rows[k][0] for k in keys])
    mask = np.stack([rows[k][1] for k in keys])
    features = []
    for start in range(0, len(keys), batch_size):
        chunk_ids, chunk_mask = ids[start:start + batch_size], mask[start:start + batch_size]
        length = min(ids.shape[1], -(-int(chunk_mask.sum(1).max()) // length_bucket) * length_bucket)
        chunk_ids, chunk_mask = chunk_ids[:, :length], chunk_mask[:, :length]
        pad = batch_size - len(chunk_ids)
        if pad:
            chunk_ids = np.concatenate([chunk_ids, np.repeat(chunk_ids[:1], pad, 0)])
            chunk_mask = np.concatenate([chunk_mask, np.repeat(chunk_mask[:1], pad, 0)])
        out = to_host(encode({"input_ids": chunk_ids, "attention_mask": chunk_mask}))
        features.append(out[:batch_size - pad])
    logging.info("text-feature cache: encoded %d distinct reports", len(keys))
    return TextFeatureCache(keys, np.concatenate(features))


def load_or_build(path: str, make_batches: Callable[[], Iterable[dict]], encode, batch_size: int,
                  to_host=np.asarray) -> TextFeatureCache:
    """The cache at `path`, built (and saved there) if it is not there yet."""
    if os.path.exists(path):
        logging.info("text-feature cache: reusing %s", path)
        return TextFeatureCache.load(path)
    cache = build(make_batches(), encode, batch_size, to_host)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if jax.process_index() == 0:
        cache.save(path)
    return cache
