"""Scoring a state on a split, and the test report of a run (results, report, figures).

`predict_split` is the one loop over eval batches; `evaluate` summarises a split for
validation during training; `evaluate_best` writes the full evaluation of a run's best
checkpoint, and the thresholds it chose on validation, through `vkd_jax.runs.workdir`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from vkd_jax import metrics, sharding
from vkd_jax.runs import checkpoint, environment, log, workdir as wd

if TYPE_CHECKING:
    from vkd_jax.runs.sessions import Run


def predict_split(state, eval_step, batches: Iterator[dict], mesh, rng) -> dict[str, np.ndarray]:
    """Scores every example of a split exactly once (padding rows dropped by their mask):
    `probs` and `spreads` [N, K] (mean and sd over latent samples), `labels`, `label_mask`
    [N, K], `kl` [N] (KL(q || p) of `vkd`, else 0), `study_id` [N] (the batches' int64 study
    keys, which group a study's images for the bootstrap)."""
    out = {k: [] for k in ("probs", "spreads", "kl", "labels", "label_mask")}
    study_ids, kept = [], []
    for i, host_batch in enumerate(batches):
        batch = sharding.shard_batch(host_batch, mesh)
        mean, std, kl = eval_step(state, batch, jax.random.fold_in(rng, i))
        keep = sharding.to_host(batch["mask"]).astype(bool)
        out["probs"].append(sharding.to_host(mean)[keep])
        out["spreads"].append(sharding.to_host(std)[keep])
        out["kl"].append(sharding.to_host(kl)[keep])
        out["labels"].append(sharding.to_host(batch["labels"])[keep])
        out["label_mask"].append(sharding.to_host(batch["label_mask"])[keep])
        study_ids.append(host_batch["study_id"])
        kept.append(keep)
    out = {k: np.concatenate(v) for k, v in out.items()}
    ids = np.stack(study_ids)
    ids = ids.reshape(-1) if jax.process_count() == 1 else _gather_ids(ids, mesh)
    return out | {"study_id": ids[np.concatenate(kept)]}


def _gather_ids(ids: np.ndarray, mesh) -> np.ndarray:
    """Every process's int64 ids `[num_batches, B]` (its rows of each global batch) -> the
    global batches' ids, flat, in their order: one transfer for a split, laid out on `mesh`
    as the batches are, so they line up with the gathered predictions. They travel as int32
    pairs (JAX without x64 would truncate int64)."""
    pairs = np.ascontiguousarray(ids, np.int64).view(np.int32).reshape(*ids.shape, 2)
    sharded = jax.make_array_from_process_local_data(NamedSharding(mesh, P(None, sharding.AXIS)), pairs)
    return np.ascontiguousarray(sharding.to_host(sharded)).view(np.int64).reshape(-1)


def evaluate(state, eval_step, batches: Iterator[dict], mesh, rng, class_names) -> dict:
    """AUROC summary of one split (validation during training)."""
    pred = predict_split(state, eval_step, batches, mesh, rng)
    summary = metrics.auroc_summary(pred["labels"], pred["probs"], class_names, pred["label_mask"])
    summary["num_examples"] = int(len(pred["probs"]))
    summary["mean_spread"] = float(pred["spreads"].mean())
    summary["kl"] = float(pred["kl"].mean())
    return summary


def log_undefined(summary: dict, split: str) -> None:
    if summary["undefined_classes"]:
        logging.warning(
            "AUROC undefined on %s for %s (a single label value); left out of the macro average",
            split,
            ", ".join(summary["undefined_classes"]),
        )


def evaluate_best(run: Run, state, split: str, start_time: float, final_train: dict | None = None) -> dict[str, Any]:
    """The best checkpoint of `run` on `split` (`state` when it is that checkpoint, else the
    checkpoint restored into `state`'s structure), with thresholds chosen on the validation
    split; writes the results, report, figures and the thresholds (`thresholds.json`, which
    predict mode reads) (process 0). Returns the results; `run` is left as it was."""
    config, manager = run.config, run.manager
    best_step = manager.best_step()
    step = checkpoint.best_or_latest_step(manager)
    if step is not None and step != int(state.step):
        state = checkpoint.restore(manager, state, step)
    evl = config.eval
    logging.info(
        "evaluating the checkpoint of step %s on %s (thresholds: %s on %s)",
        step,
        split,
        evl.threshold_method,
        config.data.val_split,
    )
    val = predict_split(state, run.eval_step, run.eval_batches(config.data.val_split), run.mesh, run.eval_rng)
    thresholds = metrics.choose_thresholds(val["labels"], val["probs"], val["label_mask"], method=evl.threshold_method)
    pred = (
        val
        if split == config.data.val_split
        else predict_split(state, run.eval_step, run.eval_batches(split), run.mesh, run.eval_rng)
    )
    if evl.bootstrap_samples > 0:
        logging.info("bootstrap: %d resamples of %s...", evl.bootstrap_samples, split)
    bootstrap = log.progress(f"bootstrap {split}", evl.bootstrap_samples, "resamples")
    report = metrics.classification_report(
        pred["labels"],
        pred["probs"],
        run.meta.class_names,
        mask=pred["label_mask"],
        spreads=pred["spreads"],
        thresholds=thresholds,
        groups=pred["study_id"],
        num_bootstrap=evl.bootstrap_samples,
        seed=evl.bootstrap_seed,
        num_bins=evl.calibration_bins,
        refer_fraction=evl.refer_fraction,
        progress=bootstrap.update,
    )
    log_undefined(report, split)
    best_val = manager.metrics(best_step) if best_step is not None else None
    results = {
        "model": config.model.kind,
        "dataset": run.meta.name,
        "split": split,
        "eval_samples": config.model.eval_samples,
        "checkpoint_step": step,
        "val_macro_auc": (best_val or {}).get(checkpoint.BEST_METRIC),
        "threshold_method": evl.threshold_method,
        **report,
        "mean_prediction_spread": float(pred["spreads"].mean()),
        # KL(q(z|x,t) || p(z|x)) in nats, mean over the split's examples (vkd; 0 otherwise):
        # near 0 means the posterior collapsed onto the prior.
        "kl": float(pred["kl"].mean()),
        "final_train": final_train,
        "config": json.loads(config.to_json_best_effort()),
        # Library versions, CPU and devices: what can change the numbers of the same config.
        "environment": environment.describe(),
        "elapsed_s": round(time.time() - start_time, 2),
    }
    if jax.process_index() == 0:
        chosen = {name: float(t) for name, t in zip(run.meta.class_names, thresholds)}
        wd.write_thresholds(run.workdir, chosen, method=evl.threshold_method, split=config.data.val_split, step=step)
        _write_outputs(run, split, results, pred)
    return results


def _write_outputs(run: Run, split: str, results: dict, pred: dict) -> None:
    from vkd_jax.runs import report  # matplotlib, only where files are written

    results_name, report_name, figures_name = wd.output_names(split, run.config.data.test_split)
    figures = []
    if run.config.eval.figures:
        fig_dir = wd.path(run.workdir, figures_name)
        os.makedirs(fig_dir, exist_ok=True)
        report.plot_roc_curves(
            os.path.join(fig_dir, "roc_curves.png"),
            pred["labels"],
            pred["probs"],
            pred["label_mask"],
            run.meta.class_names,
            results,
        )
        report.plot_reliability(os.path.join(fig_dir, "reliability.png"), results["calibration"])
        figures = [f"{figures_name}/roc_curves.png", f"{figures_name}/reliability.png"]
        if report.plot_training_curves(
            os.path.join(fig_dir, "training_curves.png"), wd.path(run.workdir, wd.TENSORBOARD)
        ):
            figures.append(f"{figures_name}/training_curves.png")
    wd.write_json(run.workdir, results_name, results)
    wd.write_text(run.workdir, report_name, report.markdown(results, figures))
    logging.info(
        "%s macro AUROC %s (micro %s) on %d examples; wrote %s, %s and %d figures in %s",
        split,
        results["macro_auc"],
        results["micro_auc"],
        results["num_examples"],
        results_name,
        report_name,
        len(figures),
        run.workdir,
    )
