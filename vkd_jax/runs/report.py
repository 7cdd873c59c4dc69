"""An evaluation's results -> `report.md` and PNG figures (ROC curves, reliability diagram,
training curves). Numbers in the report are the ones in `results.json`, rounded to 4 places.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from vkd_jax import metrics


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _ci(interval) -> str:
    return "n/a" if interval is None else f"[{interval[0]:.4f}, {interval[1]:.4f}]"


def markdown(results: dict, figures: Sequence[str] = ()) -> str:
    """The readable report of one evaluation (`results` as written to results.json)."""
    ci = results.get("auc_ci") or {}
    ap = results["average_precision"]
    at_half = results["thresholded"]["0.5"]
    chosen = results["thresholded"].get("chosen")
    cal, rank = results["calibration"], results["ranking"]
    lines = [
        f"# Evaluation of `{results['model']}` on {results['dataset']}, split `{results['split']}`",
        "",
        f"Checkpoint of step {results['checkpoint_step']}; {results['num_examples']} examples; probabilities are "
        f"means over {results['eval_samples']} latent samples.",
        "",
        "## Summary",
        "",
        "| metric | value | 95% CI |",
        "|---|---|---|",
        f"| macro AUROC | {_f(results['macro_auc'])} | {_ci(ci.get('macro'))} |",
        f"| micro AUROC | {_f(results['micro_auc'])} | {_ci(ci.get('micro'))} |",
        f"| macro average precision | {_f(ap['macro'])} | |",
        f"| micro average precision | {_f(ap['micro'])} | |",
    ]
    settings = [("0.5", at_half)] + ([(f"{results['threshold_method']} (val)", chosen)] if chosen else [])
    for name, block in settings:
        for avg in ("macro", "micro"):
            for m in ("accuracy", "precision", "recall", "f1"):
                lines.append(f"| {avg} {m} at threshold {name} | {_f(block[avg][m])} | |")
    lines += [
        f"| coverage error | {_f(rank['coverage_error'])} | |",
        f"| label ranking average precision | {_f(rank['label_ranking_average_precision'])} | |",
        f"| expected calibration error ({cal['num_bins']} bins) | {_f(cal['ece'])} | |",
        f"| Brier score | {_f(cal['brier'])} | |",
    ]
    if results["model"] == "vkd" and results.get("kl") is not None:
        lines.append(
            "| KL from the posterior q(z given x, t) to the prior p(z given x), nats (near 0: collapsed) "
            f"| {_f(results['kl'])} | |"
        )
    if ci:
        unit = "studies" if ci.get("unit") == "group" else "examples"
        lines += ["", f"Intervals: percentile bootstrap over {unit}, {ci['num_samples']} resamples, seed {ci['seed']}."]
    if results["undefined_classes"]:
        lines += [
            "",
            f"AUROC is undefined for {', '.join(results['undefined_classes'])} (a single label value in "
            "this split): shown as n/a and left out of the macro average.",
        ]

    block = chosen or at_half
    lines += [
        "",
        "## Per finding",
        "",
        "| finding | AUROC | 95% CI | average precision | threshold | precision | recall | F1 | support |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, auc in results["per_class_auc"].items():
        c = block["per_class"][name]
        lines.append(
            f"| {name} | {_f(auc)} | {_ci((ci.get('per_class') or {}).get(name))} | "
            f"{_f(ap['per_class'][name])} | {_f(block['thresholds'][name])} | {_f(c['precision'])} | "
            f"{_f(c['recall'])} | {_f(c['f1'])} | {c['support']} |"
        )
    lines += ["", f"Thresholded columns use the {'validation-chosen' if chosen else '0.5'} thresholds."]

    unc = results.get("uncertainty")
    if unc:
        lines += [
            "",
            "## Uncertainty (spread of the probability over latent samples)",
            "",
            "| measure | value |",
            "|---|---|",
            f"| error rate of the thresholded labels | {_f(unc['error_rate'])} |",
            f"| AUROC of the spread for detecting errors | {_f(unc['spread_error_auroc'])} |",
            f"| AUROC of the margin to the threshold (baseline) | {_f(unc['margin_error_auroc'])} |",
            f"| AUROC of the error probability the model states (baseline) | {_f(unc['probability_error_auroc'])} |",
            f"| label accuracy | {_f(unc['accuracy'])} |",
            f"| label accuracy, most uncertain {unc['refer_fraction']:.0%} referred (spread) | "
            f"{_f(unc['accuracy_after_referral'])} |",
            f"| label accuracy, most uncertain {unc['refer_fraction']:.0%} referred (margin) | "
            f"{_f(unc['accuracy_after_referral_margin'])} |",
            f"| label accuracy, most uncertain {unc['refer_fraction']:.0%} referred (stated error probability) | "
            f"{_f(unc['accuracy_after_referral_probability'])} |",
            f"| image accuracy | {_f(unc['image_accuracy'])} |",
            f"| image accuracy, most uncertain {unc['refer_fraction']:.0%} referred (spread) | "
            f"{_f(unc['image_accuracy_after_referral'])} |",
            f"| image accuracy, most uncertain {unc['refer_fraction']:.0%} referred (margin) | "
            f"{_f(unc['image_accuracy_after_referral_margin'])} |",
            f"| image accuracy, most uncertain {unc['refer_fraction']:.0%} referred (stated error probability) | "
            f"{_f(unc['image_accuracy_after_referral_probability'])} |",
        ]
    if figures:
        lines += ["", "## Figures", ""] + [f"![{os.path.basename(p)}]({p})" for p in figures]
    return "\n".join(lines) + "\n"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def roc_panel_titles(labels: np.ndarray, mask: np.ndarray, class_names: Sequence[str], results: dict) -> list[str]:
    """Each finding's ROC panel title: its name, AUROC and support (positives and negatives
    among the labels that count, `mask` 1), so a curve drawn from 3 positives reads as such."""
    titles = []
    for i, name in enumerate(class_names):
        keep = mask[:, i].astype(bool)
        pos = int(np.sum(labels[keep, i] > 0.5))
        titles.append(f"{name}\nAUROC {_f(results['per_class_auc'][name])} ({pos} pos / {int(keep.sum()) - pos} neg)")
    return titles


def plot_roc_curves(
    path: str, labels: np.ndarray, probs: np.ndarray, mask: np.ndarray, class_names: Sequence[str], results: dict
) -> None:
    """One panel per finding, plus a panel with the micro- and macro-averaged curves."""
    plt = _pyplot()
    k = len(class_names)
    cols = 4
    rows = -(-(k + 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    grid = np.linspace(0, 1, 201)
    tprs = []
    titles = roc_panel_titles(labels, mask, class_names, results)
    for i, name in enumerate(class_names):
        ax = axes.flat[i]
        keep = mask[:, i].astype(bool)
        auc = results["per_class_auc"][name]
        if auc is not None:
            fpr, tpr, _ = metrics.roc_curve(labels[keep, i], probs[keep, i])
            ax.plot(fpr, tpr, lw=1.2)
            tprs.append(np.interp(grid, fpr, tpr))
        ax.set_title(titles[i], fontsize=8)
    ax = axes.flat[k]
    keep = mask.astype(bool)
    if results["micro_auc"] is not None:
        fpr, tpr, _ = metrics.roc_curve(labels[keep], probs[keep])
        ax.plot(fpr, tpr, lw=1.2, label=f"micro {_f(results['micro_auc'])}")
    if tprs:
        ax.plot(grid, np.mean(tprs, axis=0), lw=1.2, label=f"macro {_f(results['macro_auc'])}")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("averaged", fontsize=8)
    for ax in axes.flat[: k + 1]:
        ax.plot([0, 1], [0, 1], ls=":", c="gray", lw=0.8)
        ax.set(xlim=(0, 1), ylim=(0, 1))
        ax.tick_params(labelsize=6)
    for ax in axes.flat[k + 1 :]:
        ax.axis("off")
    fig.supxlabel("false positive rate")
    fig.supylabel("true positive rate")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_reliability(path: str, calibration: dict) -> None:
    """Observed frequency against mean predicted probability per bin, with bin counts."""
    plt = _pyplot()
    rel = calibration["reliability"]
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(4.5, 5.5), height_ratios=(3, 1), sharex=True)
    full = [i for i, c in enumerate(rel["count"]) if c]
    ax.plot([0, 1], [0, 1], ls=":", c="gray", lw=0.8, label="perfect calibration")
    ax.plot(
        [rel["mean_predicted"][i] for i in full],
        [rel["observed"][i] for i in full],
        "o-",
        lw=1.2,
        label=f"model (ECE {_f(calibration['ece'])})",
    )
    ax.set(ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8, loc="upper left")
    widths = np.subtract(rel["bin_upper"], rel["bin_lower"])
    hist.bar(rel["bin_lower"], rel["count"], width=widths, align="edge", edgecolor="white")
    hist.set(xlabel="predicted probability", ylabel="labels", yscale="log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def read_scalars(tensorboard_dir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar written during training: tag -> (steps, values), from its event files."""
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.util import tensor_util

    acc = ea.EventAccumulator(tensorboard_dir, size_guidance={ea.TENSORS: 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["tensors"]:
        events = acc.Tensors(tag)
        out[tag] = (
            np.array([e.step for e in events]),
            np.array([float(tensor_util.make_ndarray(e.tensor_proto)) for e in events]),
        )
    return out


# Training-curve panels: (title, [(tag, legend label)]). Training and validation curves of one
# quantity share a panel and are told apart by their labels (and validation's markers).
_PANELS = (
    ("loss", (("train/loss", "train loss"), ("train/bce", "train BCE"), ("train/bce_prior", "train BCE, prior path"))),
    ("KL (nats)", (("train/kl", "train KL"), ("val/kl", "validation KL"))),
    ("beta (KL weight)", (("train/beta", "beta"),)),
    ("learning rate", (("train/learning_rate", "learning rate"),)),
    ("validation AUROC", (("val/macro_auc", "validation macro AUROC"), ("val/micro_auc", "validation micro AUROC"))),
)


def training_curve_panels(scalars) -> list[tuple[str, list[tuple[str, str, dict]]]]:
    """The panels of training_curves.png for the logged `scalars` (tags): (title, [(tag,
    legend label, plot style)]), panels without a logged tag left out. Validation curves have
    markers; the prior path's BCE is dashed and drawn under the BCE, which it often equals."""
    out = []
    for title, curves in _PANELS:
        drawn = []
        for tag, label in curves:
            if tag not in scalars:
                continue
            style = {"ls": "-", "marker": "o" if tag.startswith("val/") else None, "lw": 1.2}
            if tag == "train/bce_prior":
                style.update(ls="--", lw=1.6, zorder=1)
            elif tag == "train/bce":
                style["zorder"] = 2
            drawn.append((tag, label, style))
        if drawn:
            out.append((title, drawn))
    return out


def plot_training_curves(path: str, tensorboard_dir: str) -> bool:
    """Losses, KL, learning rate and validation AUROC over steps; False if nothing was logged."""
    scalars = read_scalars(tensorboard_dir) if os.path.isdir(tensorboard_dir) else {}
    panels = training_curve_panels(scalars)
    if not panels:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
    for ax, (title, curves) in zip(axes.flat, panels):
        for tag, label, style in curves:
            steps, values = scalars[tag]
            order = np.argsort(steps, kind="stable")  # a resumed run appends to the same log
            ax.plot(steps[order], values[order], ms=3, label=label, **style)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
