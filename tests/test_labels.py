"""Tests of the uncertainty policies that turn raw label codes into targets and masks."""

import numpy as np
import pytest

from data_pipelines import labels as L

P, N, U, M = L.POSITIVE, L.NEGATIVE, L.UNCERTAIN, L.NOT_MENTIONED
ATELECTASIS = L.CLASS_NAMES.index("Atelectasis")
EDEMA = L.CLASS_NAMES.index("Edema")
PNEUMONIA = L.CLASS_NAMES.index("Pneumonia")


def _row(codes=None):
    """Raw labels int8 [14], not mentioned except for `codes` (class index -> code)."""
    row = np.full(L.NUM_CLASSES, M, np.int8)
    for index, code in (codes or {}).items():
        row[index] = code
    return row


# One study with each code: positive, negative, uncertain, and blank elsewhere.
RAW = _row({ATELECTASIS: P, EDEMA: N, PNEUMONIA: U})


def test_class_names_and_codes():
    assert L.NUM_CLASSES == 14 and L.CLASS_NAMES[L.NO_FINDING] == "No Finding"
    assert len(set(L.CLASS_NAMES)) == 14


@pytest.mark.parametrize(
    "policy, pneumonia_target, mask_of",
    [
        # (policy, target of the uncertain finding, mask per code P/N/U/blank)
        ("zeros", 0.0, {P: 1, N: 1, U: 1, M: 1}),
        ("ones", 1.0, {P: 1, N: 1, U: 1, M: 1}),
        ("ignore", 0.0, {P: 1, N: 1, U: 0, M: 0}),
    ],
)
def test_policies(policy, pneumonia_target, mask_of):
    targets, mask = L.apply_uncertainty_policy(RAW, policy)
    assert targets.dtype == mask.dtype == np.float32 and targets.shape == mask.shape == (14,)
    assert targets[ATELECTASIS] == 1.0 and targets[EDEMA] == 0.0
    assert targets[PNEUMONIA] == pneumonia_target
    blank = [k for k in range(14) if k not in (ATELECTASIS, EDEMA, PNEUMONIA)]
    np.testing.assert_array_equal(targets[blank], 0.0)
    np.testing.assert_array_equal(mask, [mask_of[int(c)] for c in RAW])


def test_no_finding_rule_sets_no_finding_only_where_nothing_is_positive():
    only_uncertain = _row({PNEUMONIA: U})
    raw = np.stack([RAW, only_uncertain, _row()])
    for policy in ("zeros", "ignore"):
        targets, mask = L.apply_uncertainty_policy(raw, policy, no_finding_rule=True)
        np.testing.assert_array_equal(targets[:, L.NO_FINDING], [0, 1, 1])
        np.testing.assert_array_equal(mask[1:, L.NO_FINDING], [1, 1])  # Unmasked when set.
    # With "ones" the uncertain pneumonia counts as positive, so no "No Finding".
    targets, _ = L.apply_uncertainty_policy(raw, "ones", no_finding_rule=True)
    np.testing.assert_array_equal(targets[:, L.NO_FINDING], [0, 0, 1])


def test_no_finding_rule_off_keeps_stored_code():
    raw = np.stack([_row(), _row({L.NO_FINDING: P})])
    targets, _ = L.apply_uncertainty_policy(raw, "zeros", no_finding_rule=False)
    np.testing.assert_array_equal(targets[:, L.NO_FINDING], [0, 1])


def test_batch_shape_is_kept():
    raw = np.tile(RAW, (2, 3, 1))
    targets, mask = L.apply_uncertainty_policy(raw, "ignore", no_finding_rule=True)
    assert targets.shape == mask.shape == (2, 3, 14)


def test_invalid_inputs():
    with pytest.raises(ValueError, match="policy"):
        L.apply_uncertainty_policy(RAW, "maybe")
    with pytest.raises(ValueError, match="14"):
        L.apply_uncertainty_policy(RAW[:13])
