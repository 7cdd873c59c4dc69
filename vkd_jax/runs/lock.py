"""An exclusive lock on a workdir for the commands that write into it.

Who locks: training (`training.train_and_evaluate`, from just after the config is checked
until its test evaluation is written, on success, error or preemption alike) and evaluation
(`training.evaluate_checkpoint`: it writes results, report, figures and `thresholds.json`).
Predict and export do not: they only read the workdir (predict's default output,
`<workdir>/predictions.csv`, is a file no training or evaluation writes; export writes only
its `--output` directory), so they may run beside a training.

A second writer is refused before it writes anything: `WorkdirBusy`, one `error:` line naming
the holder (its pid, host, start time and command), which it wrote into `<workdir>/.lock.json`
(`workdir.LOCK_HOLDER`) when it took the lock on `<workdir>/.lock` (`workdir.LOCK`).

The lock is an OS-level one (`filelock.FileLock`: `flock` on Unix), not a marker file
(`filelock.SoftFileLock`): the OS releases it when its holder exits, however it exits, so a
lock left by a killed training (SIGKILL, out of memory, a lost node) is never stale and
nothing has to guess whether a pid is still alive. The holder file a killed holder leaves
behind says who it was: the next command takes the lock over with a warning that names it.
(On a file system without `flock`, filelock falls back to a marker file by itself.)

With several processes (`jax.process_count() > 1`), only process 0 takes the lock (the
workdir is shared storage, and process 0 writes its files); if it is refused, the others stop
when it exits.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
import time

import filelock
import jax
from absl import logging

from vkd_jax.errors import StorageError, WorkdirBusy
from vkd_jax.runs import workdir as wd

_HOLDER_WAIT_S = 2.0  # how long a refused command waits for a new holder to name itself


class WorkdirLock:
    """The lock on one workdir, held from `acquire` until `release` (both once)."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self._lock: filelock.BaseFileLock | None = None

    def acquire(self) -> WorkdirLock:
        """Takes the lock, creating the workdir if needed; `WorkdirBusy` naming the holder if
        another process holds it, `StorageError` if the workdir cannot be written."""
        lock_file = wd.path(self.workdir, wd.LOCK)
        try:
            os.makedirs(self.workdir, exist_ok=True)
            lock = filelock.FileLock(lock_file)
            lock.acquire(timeout=0)
        except filelock.Timeout:
            raise WorkdirBusy(
                f"workdir {self.workdir} is in use by {_describe(self._wait_for_holder())}; wait for it to end "
                "or choose another --workdir"
            ) from None
        except OSError as e:
            raise StorageError(
                f"workdir {self.workdir} is not writable ({e.strerror or e}); choose another --workdir"
            ) from None
        self._lock = lock
        try:
            previous = self._read_holder()
            if previous is not None:  # its holder ended without releasing the lock: it was killed
                logging.warning(
                    "took over the lock of workdir %s from %s, which %s (killed?)",
                    self.workdir,
                    _describe(previous),
                    "no longer runs" if _gone(previous) else "no longer holds it",
                )
            wd.write_json(self.workdir, wd.LOCK_HOLDER, _this_holder())
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        """Lets the lock go (the holder file first, so that it never names a later holder)."""
        if self._lock is None:
            return
        lock, self._lock = self._lock, None
        try:
            os.remove(wd.path(self.workdir, wd.LOCK_HOLDER))
        except OSError:
            pass
        finally:
            lock.release()

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def _read_holder(self) -> dict | None:
        try:
            with open(wd.path(self.workdir, wd.LOCK_HOLDER)) as f:
                holder = json.load(f)
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    def _wait_for_holder(self) -> dict | None:
        """The holder's description; a holder that has just taken the lock writes it a moment later."""
        deadline = time.monotonic() + _HOLDER_WAIT_S
        while (holder := self._read_holder()) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        return holder


def acquire(workdir: str) -> WorkdirLock:
    """The workdir's lock, taken by process 0 (on the others, one that holds nothing)."""
    held = WorkdirLock(workdir)
    return held.acquire() if jax.process_index() == 0 else held


def _this_holder() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]])[:500] if sys.argv else "",
    }


def _describe(holder: dict | None) -> str:
    if holder is None:
        return "another process (which has not written who it is)"
    text = f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}"
    return text + (f" (command: {holder['command']})" if holder.get("command") else "")


def _gone(holder: dict) -> bool:
    """Whether the holder's process no longer exists (known only on its own host)."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False
