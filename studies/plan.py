"""The order of a study's runs: its tuning runs, then its cells' runs stage by stage
(`studies/configs/grid.py`), and the choice of each tuned method's setting."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from studies.configs.grid import Grid


class Run(NamedTuple):
    """One run of the study: where it is recorded, its config and its training seed."""

    parts: tuple[str, ...]  # record name parts: (cell, method, "seed<N>") or ("tuning", method, setting)
    arg: str  # `grid.get_config(arg)`: `run.py --config=studies/configs/<study>.py:<arg>`
    seed: int  # the training seed, as in `arg`


def tuning_plan(grid: Grid) -> list[tuple[str, str, Run]]:
    """(method, setting, run) for every tuning run: each candidate setting of `grid.tuning` on
    the tuning cell and seed."""
    cell, seed = grid.tuning_cell, grid.tuning_seed
    return [
        (method, name, Run(("tuning", method, name), grid.arg(cell, method, seed, name), seed))
        for method, settings in grid.tuning.items()
        for name in settings
    ]


def cells_plan(grid: Grid, chosen: dict[str, str], cells, methods, seeds=None) -> list[tuple[str, str, Run]]:
    """(cell, method, run) for every comparison run, each tuned method with its `chosen`
    setting: stage by stage (`Grid.stages`), cell by cell within a stage; `seeds` in every
    cell, or by default each cell's grid seeds (`Grid.cell_seeds`)."""
    methods = grid.order(methods)
    order = sorted(
        ((c, m) for c in cells for m in methods),
        key=lambda cm: (grid.stage_of(cm[1]), list(cells).index(cm[0]), methods.index(cm[1])),
    )
    plan = []
    for cell, method in order:
        owner = grid.tuned_by(method)
        setting = chosen[owner] if owner else None
        cell_seeds = grid.cell_seeds(cell) if seeds is None else seeds
        plan += [
            (cell, method, Run((cell, method, f"seed{s}"), grid.arg(cell, method, s, setting), s)) for s in cell_seeds
        ]
    return plan


def choose(trials: dict[str, dict]) -> str:
    """The setting with the highest validation macro AUROC (ties: the first listed)."""
    return max(trials, key=lambda name: trials[name]["val_macro_auc"])


def grid_decision(
    grid: Grid,
    chosen: dict[str, str],
    recorded: dict[tuple[str, ...], dict | None],
    deciding: tuple[str, ...],
    decide: Callable[[dict[str, dict[str, list[dict]]]], tuple[str, list[str]]],
) -> tuple[str, list[str]]:
    """A study's `decide` (cell -> method -> per-seed summaries -> verdict and reasons) over its
    whole grid (every cell, method and seed), from the runs recorded so far (record name parts
    -> summary or None), whichever part of the grid a command selected. Until every run of the
    `deciding` methods is recorded: "not yet decided (...; if it ended here: <verdict>)"; from
    then on the verdict is final (no run of another method can change it), and says so, with
    the count of the grid's runs recorded, until all are. Runs outside the grid (other seeds)
    never enter the decision."""
    runs = cells_plan(grid, chosen, grid.cells, grid.methods)
    cells = {cell: {} for cell in grid.cells}
    done = missing_deciding = 0
    for cell, method, (parts, _, seed) in runs:
        rec = recorded.get(parts)
        if rec is not None:
            cells[cell].setdefault(method, []).append(dict(rec, seed=seed))
            done += 1
        elif method in deciding:
            missing_deciding += 1
    verdict, reasons = decide(cells)
    counted = f"{done} of {len(runs)} runs of the grid recorded"
    if missing_deciding:
        verdict = f"not yet decided ({counted}; if it ended here: {verdict})"
    elif done < len(runs):
        verdict = f"{verdict} (final: every run of {', '.join(deciding)} is recorded; {counted})"
    else:
        verdict = f"{verdict} (final: all {len(runs)} runs of the grid recorded)"
    return verdict, reasons
