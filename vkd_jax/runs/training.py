"""The library's two entry points: `train_and_evaluate` and `evaluate_checkpoint`.

Config -> a run opened by `vkd_jax.runs.sessions` (data, model, state in restore order) -> the
training loop with validation, checkpoints and preemption -> the test report of the best
checkpoint (`vkd_jax.runs.evaluation`). This is where the input pipeline (tf.data) meets the
train step; the step itself lives in `vkd_jax.train`, which imports no TensorFlow.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from data_pipelines import input_pipeline
from vkd_jax import errors, sharding, train
from vkd_jax.errors import NonFiniteLossError, Preempted
from vkd_jax.runs import checkpoint, evaluation, log, sessions, workdir as wd


class _PreemptionNotice:
    """Turns SIGTERM (a scheduler's preemption notice) and SIGINT (Ctrl-C) into a stop at the
    next step boundary, after saving a checkpoint; a second SIGINT interrupts at once. With
    several processes, JAX's preemption service (started by `jax.distributed.initialize`)
    catches SIGTERM and agrees on one step for all (`multihost_utils.reached_preemption_sync_point`)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None  # the signal number
        self._previous = {}
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def _handle(self, signum, frame):
        del frame
        name = signal.Signals(signum).name
        logging.warning("%s: saving a checkpoint at the end of this step, then stopping", name)
        if signum == signal.SIGINT:  # a second Ctrl-C is not caught
            signal.signal(signal.SIGINT, self._previous.get(signal.SIGINT, signal.default_int_handler))
        self.received = signum

    def reached(self, step: int) -> bool:
        if jax.process_count() > 1:
            return multihost_utils.reached_preemption_sync_point(step)
        return self.received is not None

    def stopped(self, step: int, workdir: str) -> Preempted:
        """The exception that reports the stop at `step` (`Interrupted` for SIGINT)."""
        where = f"saved the checkpoint of step {step} in {workdir}/checkpoints; run the same command again to resume"
        if self.received == signal.SIGINT:
            return errors.Interrupted(f"interrupted (SIGINT): {where}")
        return Preempted(f"preempted (SIGTERM): {where}")

    def close(self) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        self._previous = {}


def _pos_weight(config) -> np.ndarray | None:
    if config.train.pos_weight == "none":
        return None
    p = np.clip(input_pipeline.label_prevalence(config.data, config.data.train_split), 1e-3, 1 - 1e-3)
    return (1 - p) / p if config.train.pos_weight == "balanced" else (1 - p) ** 2


def _mean_metrics(history: list[dict[str, jax.Array]]) -> dict[str, float]:
    fetched = jax.device_get(history)
    return {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}


def train_and_evaluate(config, workdir: str) -> dict[str, Any]:
    """Trains (resuming from `workdir` if it holds checkpoints), then evaluates the best
    checkpoint on the test split and writes `<workdir>/results.json`, `report.md` and
    `figures/`. Returns the results. The workdir is locked throughout (`vkd_jax.runs.lock`)."""
    start_time = time.time()
    run, plan = sessions.open_training(config, workdir)
    try:
        return _train(config, workdir, run, plan, start_time)
    finally:
        run.release()


def _train(config, workdir: str, run: sessions.Run, plan: sessions.TrainingPlan, start_time: float) -> dict[str, Any]:
    mesh, manager, meta, state = run.mesh, run.manager, run.meta, run.state
    global_batch = config.train.batch_size
    last_step = min(plan.schedule_steps, config.train.max_steps) if config.train.max_steps > 0 else plan.schedule_steps
    eval_every = config.train.eval_every_steps or plan.steps_per_epoch
    logging.info(
        "%s: %s; %d devices, global batch %d, %d steps/epoch, training to step %d",
        meta.name,
        meta.num_examples,
        mesh.size,
        global_batch,
        plan.steps_per_epoch,
        last_step,
    )

    train_step = train.build_train_step(
        config, run.model, mesh, plan.lr_fn, steps_per_epoch=plan.steps_per_epoch, pos_weight=_pos_weight(config)
    )

    def run_eval(split, state):
        return evaluation.evaluate(state, run.eval_step, run.eval_batches(split), mesh, run.eval_rng, meta.class_names)

    writer = _summary_writer(workdir) if jax.process_index() == 0 else None
    step = int(state.step)
    max_length = config.model.text_encoder.max_length
    batches = input_pipeline.train_batches(
        config.data,
        batch_size=global_batch // jax.process_count(),
        tokenizer=run.tokenizer,
        max_length=max_length,
        seed=config.seed,
        start_step=step,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    if run.text_features is not None:
        batches = run.text_features.wrap(batches)
    if run.report_details is not None:
        batches = run.report_details.wrap(batches)
    history, tick, tick_step, paused = [], time.time(), step, 0.0
    # The last logged training interval, {"step", "steps", "metrics" (means over it)}, and the
    # steps since: kept with each checkpoint, so a resumed run logs the same intervals.
    final_train, history = _resumed_train_metrics(workdir, step)
    notice = _PreemptionNotice()
    first_step = step

    def save(state, step: int, metrics: dict | None = None, *, force: bool = False) -> None:
        """A checkpoint and, beside it, the training metrics a resume continues from."""
        checkpoint.save(manager, state, metrics, force=force)
        _save_train_metrics(workdir, step, final_train, history)

    while step < last_step:
        batch = sharding.shard_batch(next(batches), mesh)
        if step == first_step:  # the first call compiles (jit returns once the step is compiled and dispatched)
            logging.info("compiling the train step...")
            compile_start = time.time()
        state, step_metrics = train_step(state, batch)
        if step == first_step:
            logging.info("compiled in %.1fs", time.time() - compile_start)
        step += 1
        history.append(step_metrics)
        if step % config.train.log_every_steps == 0 or step == last_step:
            summary = _mean_metrics(history)
            if not np.isfinite(summary["loss"]):
                good = manager.latest_step()
                raise NonFiniteLossError(
                    f"loss is {summary['loss']} at step {step}; stopped without saving. "
                    + (
                        f"The last good checkpoint (step {good}) is intact in {workdir}/checkpoints"
                        if good is not None
                        else f"No checkpoint was saved yet in {workdir}/checkpoints: lower optim.learning_rate "
                        "or check the data and init_from weights, then train again"
                    )
                )
            summary["steps_per_s"] = (step - tick_step) / (time.time() - tick - paused)
            final_train = {"step": step, "steps": len(history), "metrics": summary}
            history, tick, tick_step, paused = [], time.time(), step, 0.0
            logging.info(  # eta: the training steps left at this interval's rate, validation not counted
                "step %d/%d: %s eta=%s",
                step,
                last_step,
                " ".join(f"{k}={v:.4g}" for k, v in sorted(summary.items())),
                log.eta(last_step - step, summary["steps_per_s"]),
            )
            _write_scalars(writer, step, {f"train/{k}": v for k, v in summary.items()})
        if step % eval_every == 0 or step == last_step:
            eval_start = time.time()
            val = run_eval(config.data.val_split, state)
            evaluation.log_undefined(val, config.data.val_split)
            logging.info(
                "step %d: validation macro AUROC %s on %d examples%s",
                step,
                val["macro_auc"],
                val["num_examples"],
                f", KL(q || p) {val['kl']:.4g} nats" if config.model.kind == "vkd" else "",
            )
            _write_scalars(
                writer,
                step,
                {
                    "val/macro_auc": val["macro_auc"],
                    "val/micro_auc": val["micro_auc"],
                    **({"val/kl": val["kl"]} if config.model.kind == "vkd" else {}),
                },
            )
            save(state, step, {checkpoint.BEST_METRIC: val["macro_auc"]}, force=True)
            paused += time.time() - eval_start  # validation time is not training speed
        elif step % config.train.checkpoint_every_steps == 0:
            save(state, step)
        if notice.reached(step):
            if manager.latest_step() != step:
                save(state, step, force=True)
            manager.wait_until_finished()
            notice.close()
            raise notice.stopped(step, workdir)
    notice.close()
    manager.wait_until_finished()
    if writer is not None:
        writer.flush()
    results = evaluation.evaluate_best(run, state, config.data.test_split, start_time, final_train)
    manager.close()
    return results


def evaluate_checkpoint(config, workdir: str, split: str | None = None) -> dict[str, Any]:
    """`--mode=eval`: the best checkpoint of `workdir` (the latest if none was validated) on
    `split` (default: the test split); writes results, report and figures. Returns the results."""
    start_time = time.time()
    split = split or config.data.test_split
    run = sessions.open_evaluation(config, workdir)
    try:
        if split not in run.meta.num_examples:
            raise errors.ConfigError(f"--split={split}: {run.meta.name} has the splits {sorted(run.meta.num_examples)}")
        record = wd.read_train_metrics(workdir)
        final_train = record.get("last_logged") if record else None
        return evaluation.evaluate_best(run, run.state, split, start_time, final_train)
    finally:
        run.manager.close()
        run.release()


def _resumed_train_metrics(workdir: str, step: int) -> tuple[dict | None, list[dict]]:
    """(final_train, history) where training resumes at `step`: the last logged interval and
    the metrics of the steps since, as the checkpoint of `step` left them (None and [] on a
    fresh start, or where the record is of another step)."""
    record = wd.read_train_metrics(workdir) if step > 0 else None
    if record is None:
        return None, []
    if record["step"] != step:  # the checkpoint it was written with was set aside
        logging.warning(
            "%s is of step %d, training resumes at step %d: the first logged interval counts only the steps since",
            wd.path(workdir, wd.TRAIN_METRICS),
            record["step"],
            step,
        )
        return record.get("last_logged"), []
    return record.get("last_logged"), [{k: np.float32(v) for k, v in m.items()} for m in record["since"]]


def _save_train_metrics(workdir: str, step: int, final_train: dict | None, history: list) -> None:
    if jax.process_index() == 0:
        since = [{k: float(v) for k, v in m.items()} for m in jax.device_get(history)]
        wd.write_train_metrics(workdir, step, final_train, since)


def _summary_writer(workdir: str):
    from flax.metrics import tensorboard  # imports TensorFlow, already loaded by the pipeline

    return tensorboard.SummaryWriter(wd.path(workdir, wd.TENSORBOARD))


def _write_scalars(writer, step: int, scalars: dict[str, float | None]) -> None:
    if writer is None:
        return
    for k, v in scalars.items():
        if v is not None:
            writer.scalar(k, v, step)
