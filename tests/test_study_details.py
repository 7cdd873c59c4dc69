"""The second pre-registered study (`studies/details.py`): its grid, run order and decision rule."""

import numpy as np
import pytest

from data_pipelines.labels import CLASS_NAMES as CLASSES
from studies import details, plan
from studies.configs import details as design


def _rec(auc, seed, kl=None, secondary=None):
    per_class = {name: auc for name in CLASSES}
    for name in design.SECONDARY:
        per_class[name] = auc if secondary is None else secondary
    return {
        "macro_auc": auc,
        "macro_ap": 0.3,
        "val_macro_auc": auc,
        "test_kl": kl,
        "per_class_auc": per_class,
        "final_train": {"kl": kl} if kl is not None else {},
        "seed": seed,
    }


def _runs(base, gains, kl=None):
    return [_rec(b + g, s, kl) for s, (b, g) in enumerate(zip(base, gains))]


BASE = (0.70, 0.71, 0.69, 0.70, 0.72)
CLEAR = (0.020, 0.025, 0.018, 0.022, 0.030)  # an interval well above zero
NOTHING = (0.001, -0.002, 0.0, 0.002, -0.001)  # an interval around zero


def _cell(control_gain, vkd_gain, vkd_control_gain, kl=1.0):
    return {
        "image_only": _runs(BASE, (0,) * 5),
        "details_aux": _runs(BASE, control_gain),
        "vkd_details": _runs(BASE, vkd_gain, kl),
        "vkd_details_control": _runs(BASE, vkd_control_gain, kl),
    }


def test_without_a_winning_positive_control_the_benchmark_cannot_answer():
    verdict, reasons = details.decide({"small": _cell(NOTHING, CLEAR, NOTHING)})
    assert verdict.startswith("the benchmark cannot answer")
    assert reasons[0].startswith("small: positive control - image-only") and "does not win" in reasons[0]


def test_vkd_with_details_uses_the_report_where_it_beats_image_only_and_its_control():
    verdict, reasons = details.decide({"small": _cell(CLEAR, CLEAR, NOTHING), "tiny": _cell(NOTHING, NOTHING, NOTHING)})
    assert verdict == "the report can help, and VKD with details uses it"
    assert [r.split(":")[0] for r in reasons] == ["small", "tiny", "small"]  # step 2 reads the winning cell only
    # The same gain with a KL below 0.5 nats is not the latent's doing.
    assert details.decide({"small": _cell(CLEAR, CLEAR, NOTHING, kl=0.2)})[0] != verdict
    # Nor is a gain its no-report control has too.
    assert "inconclusive" in details.decide({"small": _cell(CLEAR, CLEAR, CLEAR)})[0]


def test_vkd_with_details_does_not_use_the_report_when_it_recovers_less_than_half_the_control_gain():
    verdict, _ = details.decide({"small": _cell(CLEAR, NOTHING, NOTHING)})
    assert verdict == "the report can help, and VKD with details does not use it"
    # Upper end above half the positive control's gain: neither.
    partial = (0.02, -0.005, 0.015, 0.0, 0.01)  # interval [-0.005, +0.021] around half the gain, +0.0115
    assert "inconclusive" in details.decide({"small": _cell(CLEAR, partial, NOTHING)})[0]


def test_the_secondary_endpoint_is_the_mean_over_the_fixed_findings():
    rec = _rec(0.8, 0, secondary=0.6)
    assert details.with_secondary(rec)["secondary_auc"] == pytest.approx(0.6)
    assert set(design.SECONDARY) <= set(CLASSES) and len(design.SECONDARY) == 6
    cells = {"small": {"image_only": [_rec(0.7, s, secondary=0.6) for s in range(3)]}}
    cells["small"]["details_aux"] = [_rec(0.7, s, secondary=0.6 + 0.01 * (s + 1)) for s in range(3)]
    table = details.per_class_table(cells)
    assert "| small | details_aux | 0.620 (+0.020)" in table


def test_the_report_puts_the_deciding_methods_first():
    """Every cell's image-only and positive-control runs come before any VKD-with-details run,
    and those before the other methods', so the rule's first question is answered first."""
    chosen = {method: next(iter(settings)) for method, settings in design.TUNING.items()}
    runs = plan.cells_plan(design.GRID, chosen, design.CELLS, design.METHODS)
    stages = [design.GRID.stage_of(method) for _, method, _ in runs]
    assert stages == sorted(stages) and len(runs) == len(design.CELLS) * len(design.METHODS) * 5
    first = {method for _, method, _ in runs[: 2 * 5 * len(design.CELLS)]}
    assert first == {"image_only", "details_aux"}
    assert set(details.DECIDING) == {"image_only", "details_aux", "vkd_details", "vkd_details_control"}


def test_every_run_of_the_grid_is_a_config(tmp_path):
    """Each run's config builds from its argument, with the method's, cell's and setting's fields."""
    control = design.GRID.get_config("cell=weak,method=vkd_details_control,setting=w1,seed=3")
    assert control.seed == 3 and control.model.posterior_inputs == "none"
    assert control.model.details_from == "posterior" and control.train.details_weight == 1.0
    assert control.train.beta == 0.3 and control.data.synthetic.num_train == 1000
    assert "Lung Lesion=0.5" in control.data.synthetic.strengths
    mild = design.GRID.get_config("cell=mild,method=details_aux,setting=w0.3,seed=0")
    assert mild.model.kind == "image_only" and mild.data.synthetic.mild_drop == 1.0
    assert np.isclose(mild.train.details_weight, 0.3)
    with pytest.raises(ValueError, match="the settings of image_only are none"):
        design.GRID.get_config("cell=small,method=image_only,setting=w1,seed=0")


def test_a_misspelt_field_of_a_grid_is_an_error_not_a_new_field():
    import dataclasses

    grid = dataclasses.replace(design.GRID, methods={"image_only": {"model.knid": "image_only"}})
    with pytest.raises(ValueError, match="model.knid is not a field of the config"):
        grid.get_config("cell=small,method=image_only,seed=0")


def test_the_kl_table_reads_both_record_formats_of_the_final_training_terms():
    old = dict(_rec(0.7, 0, kl=0.5), final_train={"kl": 0.4, "beta": 0.3})
    new = dict(_rec(0.7, 1, kl=0.7), final_train={"metrics": {"kl": 0.6, "beta": 0.3, "bce_details": 0.2}, "step": 9})
    assert details.final_train(old, "kl") == 0.4 and details.final_train(new, "kl") == 0.6
    assert details.final_train(old, "bce_details") is None
    table = details.kl_table({"small": {"vkd_details": [old, new], "image_only": [_rec(0.7, 0)]}})
    assert "| small | vkd_details | 0.6000 ± 0.1414 | 0.5000 ± 0.1414 | 0.3000 ± 0.0000 | 0.2000 ± 0.0000 |" in table
    assert "image_only" not in table
