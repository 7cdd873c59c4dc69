"""A study's grid as configs: its cells, methods, candidate settings, seeds and run order.

A study's config module (`studies/configs/prereg.py`, `studies/configs/details.py`) builds one
`Grid` and exposes its `get_config`, so that every run of the study is started with the
ordinary entry point:

    python run.py --config=studies/configs/<study>.py:cell=CELL,method=METHOD,seed=N --workdir=W

The text after ':' is `cell=CELL,method=METHOD,seed=N`, with an optional `setting=SETTING`, in
any order. `setting` names one of the candidate settings of a tuned method (`tuning`; a method
in `setting_of` takes another method's); left out, the setting the study's tuning chose
(`<record>/chosen.json`, written by `python -m studies.compare --study=<study>`).

Each config is the study's base config (`base()`) with the method's, the cell's and the
setting's dotted field changes, in that order, and the training seed.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "results")


@dataclasses.dataclass(frozen=True)
class Grid:
    """One study's grid (the module docstring says how a run is named and built).

    `stages` orders the runs: every cell's runs of the first stage's methods come before any
    run of the second stage's, and so on (cell by cell within a stage), so that the question
    the decision asks first is answered first. Methods in no stage run last.
    """

    name: str  # `--study=<name>`; its records are in `studies/results/<name>/`
    base: Callable[[], object]  # the base config (every method's recipe)
    cells: Mapping[str, Mapping[str, object]]  # cell -> the data's field changes
    methods: Mapping[str, Mapping[str, object]]  # method -> the model's and loss's field changes
    tuning: Mapping[str, Mapping[str, Mapping[str, object]]]  # method -> setting -> field changes
    seeds: tuple[int, ...]
    tuning_cell: str
    tuning_seed: int = 0
    setting_of: Mapping[str, str] = dataclasses.field(default_factory=dict)  # method -> the method it takes settings of
    seeds_of_cell: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)  # cells with fewer seeds
    stages: tuple[tuple[str, ...], ...] = ()

    @property
    def record(self) -> str:
        """The directory of the study's committed records."""
        return os.path.normpath(os.path.join(RESULTS, self.name))

    @property
    def chosen_path(self) -> str:
        """Where the study records the setting its tuning chose for each tuned method."""
        return os.path.join(self.record, "chosen.json")

    def tuned_by(self, method: str) -> str | None:
        """The method whose candidate settings `method` takes (itself, or `setting_of`'s);
        None for a method without candidates."""
        owner = self.setting_of.get(method, method)
        return owner if owner in self.tuning else None

    def cell_seeds(self, cell: str) -> tuple[int, ...]:
        """The training seeds the grid runs in `cell`."""
        return tuple(self.seeds_of_cell.get(cell, self.seeds))

    def order(self, methods) -> list[str]:
        """`methods` in run order: stage by stage, then those in no stage."""
        staged = [m for stage in self.stages for m in stage if m in methods]
        return staged + [m for m in methods if m not in staged]

    def stage_of(self, method: str) -> int:
        return next((i for i, stage in enumerate(self.stages) if method in stage), len(self.stages))

    def arg(self, cell: str, method: str, seed: int, setting: str | None = None) -> str:
        """The text after ':' in `--config=studies/configs/<study>.py:...` for one run."""
        return f"cell={cell},method={method}" + (f",setting={setting}" if setting else "") + f",seed={seed}"

    def parse(self, text: str | None) -> dict:
        """`arg`'s text as {"cell", "method", "seed", "setting"} (setting None where left out)."""
        usage = f"studies/configs/{self.name}.py:cell=CELL,method=METHOD,seed=N[,setting=SETTING]; got {text!r}"
        run = {}
        for item in filter(None, (text or "").split(",")):
            key, sep, value = item.partition("=")
            run[key.strip()] = value.strip() if sep else None
        missing, unknown = {"cell", "method", "seed"} - set(run), set(run) - {"cell", "method", "seed", "setting"}
        if missing or unknown or None in run.values():
            raise ValueError(f"{usage} (missing {sorted(missing)}, unknown {sorted(unknown)})")
        if run["cell"] not in self.cells or run["method"] not in self.methods or not run["seed"].isdigit():
            raise ValueError(
                f"{usage}: cells {list(self.cells)}, methods {list(self.methods)}, seed a non-negative integer"
            )
        owner = self.tuned_by(run["method"])
        setting = run.get("setting")
        if setting is not None and setting not in self.tuning.get(owner, {}):
            names = list(self.tuning[owner]) if owner else "none (it is not tuned)"
            raise ValueError(f"{usage}: the settings of {run['method']} are {names}")
        return {"cell": run["cell"], "method": run["method"], "seed": int(run["seed"]), "setting": setting}

    def chosen_setting(self, method: str) -> str | None:
        """The setting the study's tuning chose for `method`; None if it takes none."""
        owner = self.tuned_by(method)
        if owner is None:
            return None
        if not os.path.exists(self.chosen_path):
            raise ValueError(
                f"no tuning choice is recorded yet ({self.chosen_path}): name the setting of {method}, setting=..."
            )
        with open(self.chosen_path) as f:
            chosen = json.load(f)
        if owner not in chosen:
            raise ValueError(f"{self.chosen_path} has no choice for {owner}: name the setting of {method}, setting=...")
        return chosen[owner]

    def changes(self, cell: str, method: str, setting: str | None = None) -> dict:
        """The dotted field changes of one run on the base config: the method's, the cell's,
        then the setting's (of the method's candidates, `tuned_by`)."""
        owner = self.tuned_by(method)
        return (
            dict(self.methods[method])
            | dict(self.cells[cell])
            | dict(self.tuning[owner][setting] if owner and setting else {})
        )

    def get_config(self, text: str | None = None):
        """One run of the study (the module docstring says what `text` holds)."""
        run = self.parse(text)
        setting = run["setting"] or self.chosen_setting(run["method"])
        config = self.base()
        config.seed = run["seed"]
        changes = self.changes(run["cell"], run["method"], setting)
        for field in changes:  # an unlocked ConfigDict would take a misspelt field as a new one
            node = config
            for key in field.split("."):
                if key not in node:
                    raise ValueError(f"studies/configs/{self.name}.py: {field} is not a field of the config")
                node = node[key]
        config.update_from_flattened_dict(changes)
        return config
