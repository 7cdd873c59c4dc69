"""The comparison script's tables, on results built by the real metrics from random scores."""

import glob
import json
import os
import re

import numpy as np
import pytest

from studies import compare, plan, prereg, records, stats, tables
from studies.configs import prereg as design
from vkd_jax import metrics

NAMES = [f"c{k}" for k in range(3)]


def _results(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, (60, 3))
    probs = np.clip(labels * 0.3 + rng.uniform(0, 0.7, (60, 3)), 0, 1)
    return metrics.classification_report(
        labels, probs, NAMES, spreads=rng.uniform(0, 0.1, (60, 3)), thresholds=np.full(3, 0.5), num_bootstrap=0
    )


def test_tables_report_means_spreads_and_paired_differences():
    base, other = [_results(0), _results(1)], [_results(2), _results(3)]
    kinds = compare.kinds_table({"vkd": base, "image_only": other})
    aucs = [r["macro_auc"] for r in base]
    assert f"| vkd | {np.mean(aucs):.4f} ± {np.std(aucs, ddof=1):.4f} | {aucs[0]:.4f}, {aucs[1]:.4f} |" in kinds
    assert all(f"| {name} |" in kinds for name in NAMES)
    ablation = compare.ablation_table(base, {"latent_dim=16": other})
    diff = np.subtract([r["macro_auc"] for r in other], aucs)
    assert f"{diff.mean():+.4f} ({diff[0]:+.4f}, {diff[1]:+.4f})" in ablation
    unc = compare.uncertainty_table({"vkd": base})
    vals = [r["uncertainty"]["spread_error_auroc"] for r in base]
    assert f"{np.mean(vals):.4f} ± {np.std(vals, ddof=1):.4f}" in unc


def _rec(auc, ap=0.3, kl=1.0, val=0.7):
    return {"macro_auc": auc, "macro_ap": ap, "test_kl": kl, "val_macro_auc": val}


def test_paired_interval_is_the_paired_t_interval():
    from scipy import stats as scipy_stats

    a, b = [0.71, 0.73, 0.70, 0.74, 0.72], [0.70, 0.70, 0.69, 0.71, 0.70]
    mean, low, high = stats.paired_interval(a, b)
    ci = scipy_stats.ttest_rel(a, b).confidence_interval(0.95)
    np.testing.assert_allclose([mean, low, high], [np.mean(np.subtract(a, b)), ci.low, ci.high], rtol=1e-10)


def test_decision_rule():
    base = [_rec(a) for a in (0.70, 0.71, 0.69, 0.70, 0.72)]
    gain = [_rec(r["macro_auc"] + d) for r, d in zip(base, (0.02, 0.025, 0.018, 0.022, 0.03))]
    control = [_rec(r["macro_auc"] + 0.001 * i) for i, r in enumerate(base)]
    verdict, reasons = prereg.decide({"base": {"image_only": base, "vkd": gain, "vkd_control": control}})
    assert verdict == "reproduced" and reasons[0].startswith("base: VKD - image-only +0.0230")
    c_mean, c_low, c_high = stats.paired_interval([r["macro_auc"] for r in gain], [r["macro_auc"] for r in control])
    assert f"VKD - control {c_mean:+.4f} [{c_low:+.4f}, {c_high:+.4f}], beats the control: yes" in reasons[0]
    # Without a paired control there is nothing to beat, and the line says why.
    alone = prereg.decide({"base": {"image_only": base, "vkd": gain}})
    assert alone[0] == "inconclusive" and "VKD - control: fewer than 2 paired seeds" in alone[1][0]
    # A collapsed posterior does not count, however large the gain.
    collapsed = [dict(r, test_kl=0.01) for r in gain]
    assert prereg.decide({"base": {"image_only": base, "vkd": collapsed, "vkd_control": control}})[0] == "inconclusive"
    # No gain anywhere: every interval's upper end below 0.01.
    same = [_rec(r["macro_auc"] + d) for r, d in zip(base, (0.001, -0.002, 0.0, 0.002, -0.001))]
    assert prereg.decide({"base": {"image_only": base, "vkd": same}})[0] == "not reproduced"
    # ... but a cell without runs leaves it open.
    assert prereg.decide({"base": {"image_only": base, "vkd": same}, "low": {}})[0] == "inconclusive"
    # A gain the control matches is regularisation, not distillation.
    assert prereg.decide({"base": {"image_only": base, "vkd": gain, "vkd_control": gain}})[0] == "inconclusive"


def test_the_decision_is_the_whole_grids_whatever_part_is_selected():
    """With two cells recorded, no gain in either, the decision stays open: a report of
    `--cells=base,noisy` once called this "not reproduced" for the whole study."""
    chosen = {"vkd": "beta0.3", "distill": "w0.5_t2", "report_aux": "w0.01"}
    grid = plan.cells_plan(design.GRID, chosen, design.CELLS, design.METHODS)
    # The budget clause: 3 seeds in the large cell, 5 in the others, every method alike.
    per_cell = {c: sorted({s for cell, _, (_, _, s) in grid if cell == c}) for c in design.CELLS}
    assert per_cell == {c: [0, 1, 2] if c == "large" else [0, 1, 2, 3, 4] for c in design.CELLS}
    assert len(grid) == (4 * 5 + 3) * len(design.METHODS)
    assert len(plan.cells_plan(design.GRID, chosen, ["large"], ["vkd"], [0, 1, 2, 3, 4])) == 5  # `--seeds` overrides
    noise = (0.001, -0.002, 0.0, 0.002, -0.001)  # VKD - image-only per seed: no gain

    def rec(method, seed):
        return _rec(0.70 + 0.01 * seed + (noise[seed] if method == "vkd" else 0.0), kl=0.1)

    two = {parts: rec(m, s) for cell, m, (parts, _, s) in grid if cell in ("base", "noisy")}
    verdict, reasons = prereg.grid_decision(chosen, two)
    assert verdict == (
        f"not yet decided ({len(two)} of {len(grid)} runs of the grid recorded; if it ended here: inconclusive)"
    )
    assert [r.split(":")[0] for r in reasons] == ["base", "noisy"]
    alone = {c: {m: [rec(m, s) for s in design.SEEDS] for m in ("image_only", "vkd")} for c in ("base", "noisy")}
    assert prereg.decide(alone)[0] == "not reproduced"  # what those two cells alone would say
    every = {parts: rec(m, s) for _, m, (parts, _, s) in grid}
    every[("base", "vkd", "seed9")] = _rec(0.99, kl=5.0)  # a run outside the grid counts for nothing
    assert (
        prereg.grid_decision(chosen, every)[0] == f"not reproduced (final: all {len(grid)} runs of the grid recorded)"
    )
    every[("low", "vkd", "seed2")] = None  # one run the rule reads missing: not decided
    assert prereg.grid_decision(chosen, every)[0].startswith(f"not yet decided ({len(grid) - 1} of {len(grid)} runs")
    every[("low", "vkd", "seed2")] = rec("vkd", 2)
    others = [parts for _, m, (parts, _, _) in grid if m not in prereg.DECIDING]
    assert others and set(prereg.DECIDING) < set(design.METHODS)
    for parts in others:  # every run the rule reads recorded, none of the others: final
        every[parts] = None
    done = len(grid) - len(others)
    assert prereg.grid_decision(chosen, every)[0] == (
        f"not reproduced (final: every run of image_only, vkd, vkd_control is recorded; "
        f"{done} of {len(grid)} runs of the grid recorded)"
    )


def test_the_expected_time_counts_the_grid_and_scales_recorded_runs_to_4000_images(tmp_path):
    def record(name, num_train, elapsed_s):
        config = {"data": {"synthetic": {"num_train": num_train}}}
        records.save_record(str(tmp_path / name), {"elapsed_s": elapsed_s, "config": config})

    record("low.json", 1000, 200.0)  # a quarter of a 4,000-image run: 800 s
    record("base.json", 4000, 800.0)
    record("large.json", 16000, 3200.0)
    text = compare.estimate(design.GRID, str(tmp_path), ["base", "large"], ["image_only", "vkd"], None)
    # (5 base seeds x 1 + 3 large seeds x 4) x 2 methods + 9 tuning runs, 800 s each.
    assert text.startswith("16 runs + 9 tuning runs, about 800 s per 4,000-image run (3 recorded): 9.6 h")
    assert compare.estimate(design.GRID, str(tmp_path), ["low"], ["vkd"], [0, 1]).startswith("2 runs + 9 tuning runs")


def test_runs_are_paired_by_seed_in_an_interim_report():
    base = [dict(_rec(0.80 + 0.01 * s), seed=s) for s in range(5)]
    vkd = [dict(_rec(0.82 + 0.01 * s), seed=s) for s in (3, 0, 1)]  # three seeds so far, any order
    np.testing.assert_allclose(stats.paired(vkd, base), [[0.82, 0.83, 0.85], [0.80, 0.81, 0.83]])
    assert stats.paired(vkd, []) == ([], [])
    table = tables.cells_table({"base": {"image_only": base, "vkd": vkd}})
    assert "| base | vkd | 3 | " in table and "+0.0200 [+0.0200, +0.0200] (3 pairs)" in table
    assert prereg.decide({"base": {"image_only": base, "vkd": vkd[:1]}})[0] == "inconclusive"  # one pair: no interval


def test_records_are_reused_only_for_the_same_config(tmp_path):
    from configs import demo_scratch

    config = demo_scratch.get_config()
    path = records.record_path(str(tmp_path), "base", "vkd", "seed0")
    records.save_record(path, {"fingerprint": records.fingerprint(config), "config": records.fingerprinted(config)})
    moved = config.copy_and_resolve_references()
    moved.data.data_dir = "/elsewhere"  # another machine's paths: the same run
    moved.data.csv.table = "/elsewhere/table.csv"  # another dataset's build options: the same run
    assert records.load_record(path, moved) is not None
    changed = config.copy_and_resolve_references()
    changed.train.beta = 1.0
    changed.data.synthetic.label_noise = 0.2  # this dataset's options: another run
    # Never silently replaced: the error names the changed fields; the flag trains it again.
    with pytest.raises(records.ChangedRun, match=r"data.synthetic.label_noise: 0.0 -> 0.2; train.beta: 14.0 -> 1.0"):
        records.load_record(path, changed)
    assert records.load_record(path, changed, rerun_changed=True) is None
    assert records.load_record(records.record_path(str(tmp_path), "base", "vkd", "seed1"), changed) is None
    assert plan.choose({"a": _rec(0.7, val=0.70), "b": _rec(0.6, val=0.72)}) == "b"


def test_fields_added_since_the_records_change_a_fingerprint_only_away_from_their_neutral_value():
    """data.synthetic.strengths and mild_drop came after the committed records: at '' and 0 a
    run is the one recorded before them; any other value is another run, named by the field."""
    from configs import synthetic_bench

    config = synthetic_bench.get_config()
    assert {"strengths", "mild_drop"}.isdisjoint(records.fingerprinted(config)["data"]["synthetic"])
    for field, value in (("strengths", "Lung Lesion=0.5"), ("mild_drop", 0.3)):
        changed = config.copy_and_resolve_references()
        changed.data.synthetic[field] = value
        assert records.fingerprint(changed) != records.fingerprint(config)
        changes = records.config_changes(records.fingerprinted(config), records.fingerprinted(changed))
        assert changes == [f"data.synthetic.{field}: '<absent>' -> {value!r}"]


def test_fields_added_later_change_a_fingerprint_only_when_switched_on():
    from configs import demo_scratch

    config = demo_scratch.get_config()
    before = records.fingerprinted(config)
    assert "details_from" not in before["model"] and "details_weight" not in before["train"]
    on = config.copy_and_resolve_references()
    on.model.details_from, on.train.details_weight = "posterior", 0.5
    assert records.config_changes(before, records.fingerprinted(on)) == [
        "model.details_from: '<absent>' -> 'posterior'",
        "train.details_weight: '<absent>' -> 0.5",
    ]


def test_distill_keep_positives_keeps_the_recorded_distill_runs_and_is_a_change_when_on():
    config = design.get_config("cell=base,method=distill,seed=0")
    with open(records.record_path(RECORD, "base", "distill", "seed0")) as f:
        assert json.load(f)["fingerprint"] == records.fingerprint(config)
    on = config.copy_and_resolve_references()
    on.train.distill_keep_positives = True
    assert records.config_changes(records.fingerprinted(config), records.fingerprinted(on)) == [
        "train.distill_keep_positives: '<absent>' -> True"
    ]


def test_prereg_plan_runs_the_later_methods_last_and_every_config_validates():
    """The paper's settings (`design.LATER`) run after every cell's other methods, with their
    own changes and no tuned setting; every planned config passes the config checks."""
    from vkd_jax.runs import config_checks

    chosen = {"vkd": "beta0.3", "distill": "w0.5_t2", "report_aux": "w0.1"}
    runs = plan.cells_plan(design.GRID, chosen, ["base", "noisy"], list(design.METHODS), [0, 1])
    order = [(cell, method) for cell, method, _ in runs]
    later = [i for i, (_, m) in enumerate(order) if m in design.LATER]
    assert later and min(later) > max(i for i, (_, m) in enumerate(order) if m not in design.LATER)
    assert order[-1] == ("noisy", "vkd_paper") and len(runs) == 2 * 2 * len(design.METHODS)
    for cell, method, (parts, arg, seed) in runs:
        assert parts == (cell, method, f"seed{seed}")
        config = design.get_config(arg)
        assert config.seed == seed and config.data.synthetic.label_noise == (0.2 if cell == "noisy" else 0.0)
        config_checks.validate(config, num_devices=1)
        if method == "report_aux":  # the plan's `chosen`, not the study's recorded choice
            assert config.train.report_aux_weight == 0.1
        if method == "vkd_paper":
            assert (config.train.beta, config.train.kl_schedule, config.model.latent_dim) == (0.014, "cyclical", 512)
        if method == "vkd_control":  # the chosen vkd setting, without the report
            assert (config.train.beta, config.model.posterior_inputs) == (0.3, "none")


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORD = os.path.join(ROOT, "studies", "results", "prereg")


def _committed_records() -> list[str]:
    paths = glob.glob(os.path.join(RECORD, "**", "*.json"), recursive=True)
    paths = sorted(os.path.relpath(p, RECORD) for p in paths if os.path.basename(p) != "chosen.json")
    assert len(paths) == 147, "the committed records: 138 runs of the grid and 9 tuning runs"
    return paths


def test_committed_prereg_records_are_of_the_current_plan():
    """Every committed record is of the config the study would run now, and is where the plan
    records it: a new config field that changed the fingerprints would otherwise make the study
    stop (or, before, silently train its finished runs again)."""
    with open(os.path.join(RECORD, "chosen.json")) as f:
        chosen = json.load(f)
    runs = [run for *_, run in plan.tuning_plan(design.GRID)]
    runs += [run for *_, run in plan.cells_plan(design.GRID, chosen, design.CELLS, design.METHODS)]
    by_path = {os.path.relpath(records.record_path(RECORD, *run.parts), RECORD): run.arg for run in runs}
    assert sorted(by_path) == _committed_records()  # the whole plan is recorded, nothing else
    for path, arg in by_path.items():
        assert records.load_record(os.path.join(RECORD, path), design.get_config(arg)) is not None, path


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")  # config_flags loads the file so
def test_each_record_is_the_run_its_config_file_argument_names():
    """`run.py --config=studies/configs/prereg.py:cell=C,method=M,seed=N` (the config file read
    as run.py reads it, the setting left to the tuning's recorded choice) trains the run of
    `C/M/seedN.json`, fingerprint for fingerprint; a tuning record's run names its setting."""
    from ml_collections.config_flags import config_flags

    parser = config_flags.ConfigFileFlagParser("config")
    for path in _committed_records():
        parts = path[: -len(".json")].split(os.sep)
        if parts[0] == "tuning":
            method, setting = parts[1:]
            arg = f"cell=base,method={method},setting={setting},seed=0"
        else:
            cell, method, seed = parts
            arg = f"cell={cell},method={method},seed={seed.removeprefix('seed')}"
        config = parser.parse(f"{ROOT}/studies/configs/prereg.py:{arg}")
        with open(os.path.join(RECORD, path)) as f:
            rec = json.load(f)
        assert records.fingerprint(config) == rec["fingerprint"], (path, arg)
        assert records.fingerprinted(config) == rec["config"], path


def test_a_study_config_names_its_run_or_says_what_it_takes():
    config = design.get_config("seed=2,method=vkd_control,cell=noisy")  # any order; the chosen setting
    assert (config.seed, config.model.posterior_inputs, config.data.synthetic.label_noise) == (2, "none", 0.2)
    assert config.train.beta == 0.3
    paper = design.get_config(design.arg("large", "vkd_paper", 1))
    assert (paper.model.latent_dim, paper.train.kl_schedule, paper.data.synthetic.num_train) == (512, "cyclical", 16000)
    for bad, says in [
        (None, "missing ['cell', 'method', 'seed']"),
        ("cell=base,method=vkd,seed=0,beta=1", "unknown ['beta']"),
        ("cell=huge,method=vkd,seed=0", "cells ['base', 'noisy', 'low', 'large', 'base_data1']"),
        ("cell=base,method=image_only,seed=0,setting=beta0.3", "the settings of image_only are none"),
        ("cell=base,method=vkd_control,seed=0,setting=w0.1", "the settings of vkd_control are ['beta0.3'"),
    ]:
        with pytest.raises(ValueError, match=re.escape(says)):
            design.get_config(bad)


def test_recorded_only_reports_the_committed_runs_and_trains_nothing(tmp_path):
    """The interim report, as a command (a subprocess: this session's absl flags include every
    imported benchmark's)."""
    import subprocess
    import sys

    root, record = ROOT, RECORD
    before = {p: os.path.getmtime(os.path.join(record, p)) for p in os.listdir(record) if p.endswith(".json")}
    cmd = [sys.executable, "-m", "studies.compare", "--config=configs/synthetic_bench.py"]
    cmd += [f"--workdir={tmp_path}", f"--record={record}", "--study=prereg", "--recorded_only", "--cells=base,noisy"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| vkd | beta0.3 |" in proc.stdout and "| base | image_only | 5 |" in proc.stdout
    with open(os.path.join(record, "chosen.json")) as f:
        grid = plan.cells_plan(design.GRID, json.load(f), design.CELLS, design.METHODS)
    exists = {parts: os.path.exists(records.record_path(record, *parts)) for *_, (parts, _, _) in grid}
    done = sum(exists.values())
    deciding = all(exists[parts] for _, m, (parts, _, _) in grid if m in prereg.DECIDING)
    decision = "## Decision (the whole pre-registered grid): "
    if not deciding:  # the decision covers every cell, not only the two selected
        assert f"{decision}not yet decided ({done} of {len(grid)} runs" in proc.stdout
    elif done < len(grid):
        assert (
            decision in proc.stdout and f"is recorded; {done} of {len(grid)} runs of the grid recorded)" in proc.stdout
        )
    else:
        assert decision in proc.stdout and f"(final: all {len(grid)} runs of the grid recorded)" in proc.stdout
    assert os.listdir(tmp_path) == ["prereg.md"]  # no run was started
    assert before == {p: os.path.getmtime(os.path.join(record, p)) for p in before}  # chosen.json untouched


def test_a_preempted_study_says_how_to_resume_and_exits_with_the_preempted_status(monkeypatch, capsys):
    from vkd_jax import cli, errors

    def preempted():
        raise errors.Preempted("preempted (SIGTERM): saved the checkpoint of step 480 in W/checkpoints")

    monkeypatch.setattr(compare, "study_report", preempted)
    with pytest.raises(SystemExit) as stop:
        compare.study_command()
    assert stop.value.code == cli.PREEMPTED_EXIT_CODE == 143
    err = capsys.readouterr().err
    assert "step 480" in err and "reuses every recorded run" in err and "Traceback" not in err


def test_a_changed_record_stops_the_study_with_one_error_line(monkeypatch, capsys):
    def changed():
        raise records.ChangedRun("base/vkd/seed0: its config has changed since it was recorded (train.beta: 0.3 -> 1)")

    monkeypatch.setattr(compare, "study_report", changed)
    with pytest.raises(SystemExit) as stop:
        compare.study_command()
    assert stop.value.code == 2
    assert (
        capsys.readouterr().err
        == "error: base/vkd/seed0: its config has changed since it was recorded (train.beta: 0.3 -> 1)\n"
    )
