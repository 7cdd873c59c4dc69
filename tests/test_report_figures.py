"""The evaluation figures read at a glance: training and validation curves carry distinct
legend labels, the BCE is not hidden under the prior path's BCE, and each ROC panel shows its
support (positives and negatives). The drawn matplotlib figures are inspected."""

import matplotlib
import numpy as np
import pytest

from vkd_jax.runs import report

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plotting functions close, kept open for inspection."""
    figures, close = [], plt.close
    monkeypatch.setattr(plt, "close", figures.append)
    yield figures
    for fig in figures:
        close(fig)


def _legends(fig) -> dict[str, list[str]]:
    return {ax.get_title(): [t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes}


def test_training_curves_label_train_and_validation_distinctly(tmp_path, monkeypatch, drawn):
    steps = np.arange(0, 100, 10)
    bce = np.linspace(0.7, 0.3, 10)
    scalars = {
        **{f"train/{k}": (steps, bce) for k in ("loss", "bce", "bce_prior")},  # the prior path's BCE equals the BCE
        "train/kl": (steps, np.linspace(5, 2, 10)),
        "val/kl": (steps[::5], np.array([4.0, 2.5])),
        "train/beta": (steps, np.ones(10)),
        "train/learning_rate": (steps, np.full(10, 1e-3)),
        "val/macro_auc": (steps[::5], np.array([0.6, 0.7])),
    }
    monkeypatch.setattr(report, "read_scalars", lambda _: scalars)
    assert report.plot_training_curves(str(tmp_path / "curves.png"), str(tmp_path))
    (fig,) = drawn
    legends = _legends(fig)
    assert legends["KL (nats)"] == ["train KL", "validation KL"]
    assert legends["loss"] == ["train loss", "train BCE", "train BCE, prior path"]
    assert legends["validation AUROC"] == ["validation macro AUROC"]
    loss_ax = next(ax for ax in fig.axes if ax.get_title() == "loss")
    lines = {line.get_label(): line for line in loss_ax.get_lines()}
    bce_line, prior_line = lines["train BCE"], lines["train BCE, prior path"]
    assert bce_line.get_zorder() > prior_line.get_zorder()  # the BCE is drawn on top of its equal
    assert bce_line.get_linestyle() != prior_line.get_linestyle()


def test_roc_panels_show_positives_and_negatives(tmp_path, drawn):
    names = ["A", "B"]
    labels = np.array([[1, 0], [0, 0], [1, 1], [0, 0], [0, 1]], np.float32)
    probs = np.array([[0.9, 0.2], [0.1, 0.3], [0.8, 0.7], [0.4, 0.1], [0.3, 0.6]], np.float32)
    mask = np.ones_like(labels)
    mask[3, 1] = 0  # a masked label is not counted
    results = {"per_class_auc": {"A": 1.0, "B": 1.0}, "micro_auc": 0.9, "macro_auc": 1.0}
    report.plot_roc_curves(str(tmp_path / "roc.png"), labels, probs, mask, names, results)
    (fig,) = drawn
    titles = [ax.get_title() for ax in fig.axes[:2]]
    assert titles == ["A\nAUROC 1.0000 (2 pos / 3 neg)", "B\nAUROC 1.0000 (2 pos / 2 neg)"]
