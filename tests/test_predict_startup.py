"""The start-up benchmark prints its figures side by side, from fresh processes."""

import json
import os
import shutil

from benchmarks import predict_startup

OLD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "workdir_60fcd5b")


def test_the_startup_benchmark_prints_import_from_workdir_and_first_predict(tmp_path, capsys):
    workdir = tmp_path / "w"
    shutil.copytree(OLD, workdir)
    predict_startup.main([f"--workdir={workdir}", "--size=64", "--no-command"])
    lines = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(lines[-1])["seconds"][predict_startup.ROOT]
    for name in ("import_and_jit", "import_vkd_jax", "from_workdir", "first_predict", "to_first_result"):
        assert figures[name] > 0 and figures[name + "_cpu"] > 0
        assert any(line.startswith(name) for line in lines)
    parts = figures["import_vkd_jax"] + figures["from_workdir"] + figures["first_predict"]
    assert abs(figures["to_first_result"] - parts) < 0.05
    assert figures["ratio"] > 0 and "predict_command" not in figures
