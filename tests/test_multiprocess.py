"""A real multi-process run on one machine: 2 processes x 4 CPU devices (jax.distributed,
gloo collectives over loopback) train like 1 process x 8 devices (the shared `trained` run),
and one process then restores the checkpoint they wrote; SIGTERM to one process stops both
at one step; evaluation's study ids are gathered in global batch order. Each subprocess has
a deadline and is killed after it."""

import json
import signal
import socket
import subprocess
import sys

import pytest

from tests.e2e import ROOT, TRAINED_ARGS, load_json, run_py, subprocess_env
from vkd_jax.runs import report, training, workdir as wd

TIMEOUT_S = 420


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _finish(procs) -> list[str]:
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=TIMEOUT_S)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out
    return outs


# Each process holds its 4 rows of 2 global batches of 8: ids beyond int32, and negative.
GATHER = """
import json, sys
import numpy as np
from vkd_jax.runs import distributed, evaluation
from vkd_jax import train
from vkd_jax import sharding
distributed.initialize(sys.argv[1], 2, int(sys.argv[2]))
p = int(sys.argv[2])
ids = np.array([[(b * 8 + p * 4 + r - 5) * 2**40 + 1 for r in range(4)] for b in range(2)], np.int64)
print("IDS", json.dumps(evaluation._gather_ids(ids, sharding.make_mesh()).tolist()), flush=True)
"""


def test_study_ids_are_gathered_in_global_batch_order():
    """`predict_split`'s several-process path: each process's rows of every batch -> every
    global batch's ids, in order, int64 intact (2 processes x 2 CPU devices)."""
    address = f"localhost:{_free_port()}"
    env = subprocess_env(2)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", GATHER, address, str(i)],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]
    outs = _finish(procs)
    expected = [(i - 5) * 2**40 + 1 for i in range(16)]
    for out in outs:
        (line,) = [line for line in out.splitlines() if line.startswith("IDS ")]
        assert json.loads(line[4:]) == expected, out


def test_two_processes_train_like_one(trained, data_dir, tmp_path):
    one, _ = trained
    two = tmp_path / "two"
    address = f"--coordinator_address=localhost:{_free_port()}"
    outs = _finish(
        [
            run_py([*TRAINED_ARGS, address, "--num_processes=2", f"--process_id={i}"], data_dir, two, devices=4)
            for i in range(2)
        ]
    )
    assert "process 0 of 2" in outs[0] and "validation macro AUROC" in outs[0]
    assert "validation macro AUROC" not in outs[1]  # logs come from process 0 only

    losses_one, losses_two = (report.read_scalars(str(w / "tensorboard"))["train/loss"] for w in (one, two))
    assert list(losses_one[0]) == list(losses_two[0]) == [4, 8, 12, 16]
    # The same global batches and noise; only the order of float sums differs (gloo vs in-process).
    assert losses_two[1] == pytest.approx(losses_one[1], rel=1e-3)
    res_one, res_two = load_json(one / "results.json"), load_json(two / "results.json")
    assert res_two["num_examples"] == res_one["num_examples"] == 96  # every test example, once
    assert res_two["checkpoint_step"] == res_one["checkpoint_step"]
    assert res_two["macro_auc"] == pytest.approx(res_one["macro_auc"], abs=1e-3)

    # One process (this one: 8 devices) restores what the two wrote and evaluates it.
    val = training.evaluate_checkpoint(wd.read_config(str(two)), str(two), "validation")
    assert val["checkpoint_step"] == res_two["checkpoint_step"]
    assert val["macro_auc"] == pytest.approx(val["val_macro_auc"], abs=1e-5)


def test_sigterm_to_one_process_stops_both_at_the_same_step(data_dir, tmp_path):
    """JAX's preemption service spreads one process's SIGTERM: both save one checkpoint, at
    a step they agree on, and exit with the preemption status."""
    address = f"--coordinator_address=localhost:{_free_port()}"
    procs = [
        run_py([*TRAINED_ARGS, address, "--num_processes=2", f"--process_id={i}"], data_dir, tmp_path, devices=4)
        for i in range(2)
    ]
    lines = []
    try:
        for line in procs[0].stdout:  # until training is under way
            lines.append(line)
            if "step 4/16:" in line:
                break
        procs[1].send_signal(signal.SIGTERM)
        outs = ["".join(lines) + procs[0].communicate(timeout=TIMEOUT_S)[0], procs[1].communicate(timeout=TIMEOUT_S)[0]]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert [p.returncode for p in procs] == [143, 143], outs
    stopped = {int(o.split("saved the checkpoint of step ", 1)[1].split(" ", 1)[0]) for o in outs}
    assert len(stopped) == 1 and 4 <= stopped.pop() < 16
    assert not (tmp_path / "results.json").exists()
