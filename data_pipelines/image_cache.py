"""Parallel, restartable image preprocessing for the dataset builds.

Each source image is decoded, resized (`images.square_gray`) and written once as a PNG
under a cache directory, in worker processes. A restarted build finds the PNGs already
written and skips them, so an interrupted build loses only the images in flight. The
tfds builders then copy the cached PNG bytes into their records.

A PNG made from a file carries that file's modification time as its own, so a source
replaced since (another mtime) is preprocessed again rather than its old PNG reused by a
build kept with `--keep_cache`. On a file system with coarser times than the source's the
times never match and images are redone: slower, never stale.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import multiprocessing
import os
from collections.abc import Iterable, Iterator

from data_pipelines import images, progress as progress_lib


def path(cache_dir: str, key: str) -> str:
    """Where the PNG of `key` lives: sharded by a hash, so no folder holds 377k files."""
    shard = hashlib.sha1(key.encode()).hexdigest()[:2]
    return os.path.join(cache_dir, shard, f"{key}.png")


def is_cached(cache_dir: str, key: str, source: str | None = None) -> bool:
    """Whether the PNG of `key` is written and, where `source` is a file, made from it as it
    is now (the PNG's mtime is the source's, `_process`)."""
    try:
        cached = os.stat(path(cache_dir, key)).st_mtime_ns
    except FileNotFoundError:
        return False
    if source is None or not os.path.isfile(source):  # Bytes from an archive, or a key.
        return True
    return cached == os.stat(source).st_mtime_ns


def _process(key: str, source: str | bytes, size: int, out: str) -> tuple[str, str | None]:
    """Writes one image's PNG to `out` (atomically); returns (key, error or None)."""
    try:
        # Stat before reading: a file replaced while it is decoded leaves a stamp older than
        # the new file's, so the next build redoes it.
        mtime = os.stat(source).st_mtime_ns if isinstance(source, str) else None
        png = images.encode_png(images.square_gray(source, size))
    except images.ImageError as e:
        return key, str(e)
    except OSError as e:  # e.g. a file that vanished or cannot be opened.
        return key, f"{type(e).__name__}: {e}"
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = f"{out}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(png)
    if mtime is not None:  # The stamp `is_cached` compares.
        os.utime(tmp, ns=(mtime, mtime))
    os.replace(tmp, out)  # A killed build never leaves a half-written PNG behind.
    return key, None


def _results(sources, cache_dir: str, size: int, workers: int) -> Iterator[tuple[str, str | None]]:
    if workers <= 1:
        for key, source in sources:
            yield _process(key, source, size, path(cache_dir, key))
        return
    # 'spawn': the parent holds TensorFlow's threads, which forking would copy mid-flight.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        pending = set()
        for key, source in sources:
            pending.add(pool.submit(_process, key, source, size, path(cache_dir, key)))
            if len(pending) >= 4 * workers:  # Bounded: sources may be bytes in memory.
                done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                yield from (f.result() for f in done)
        for future in concurrent.futures.as_completed(pending):
            yield future.result()


def cache_images(
    sources: Iterable[tuple[str, str | bytes]],
    total: int,
    *,
    cache_dir: str,
    size: int,
    workers: int = 1,
    name: str = "images",
) -> dict[str, str]:
    """Preprocesses `total` (key, path-or-bytes) sources into `cache_dir`, `workers` at a time.

    Prints progress to stderr; returns {key: error} for the images that failed.
    """
    errors: dict[str, str] = {}
    counter = progress_lib.Progress(f"{name}: preprocessed", total, "images")
    for key, error in _results(sources, cache_dir, size, workers):
        if error is not None:
            errors[key] = error
            counter.note(f"{len(errors)} unreadable")
        counter.update()
    return errors
