"""`train_and_evaluate`: config -> data, model, training loop, checkpoints, results.json.

This is where the input pipeline (tf.data) meets the train step; the step itself lives in
`vkd_jax.train`, which imports no TensorFlow.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Iterator

import jax
import numpy as np
from absl import logging

from data_pipelines import input_pipeline
from data_pipelines.tokenizer import load_tokenizer
from vkd_jax import checkpoint, config_checks, metrics, optim, pretrained, schedules, text_cache, train
from vkd_jax.models import create_model


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or Inf loss; the last good checkpoint is left as it was."""


def _pos_weight(config) -> np.ndarray | None:
    if config.train.pos_weight == "none":
        return None
    p = np.clip(input_pipeline.label_prevalence(config.data, config.data.train_split), 1e-3, 1 - 1e-3)
    return (1 - p) / p if config.train.pos_weight == "balanced" else (1 - p) ** 2


def _mean_metrics(history: list[dict[str, jax.Array]]) -> dict[str, float]:
    fetched = jax.device_get(history)
    return {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}


def evaluate(state, eval_step, batches: Iterator[dict], mesh, rng, class_names) -> dict:
    """Scores every example of a split exactly once (padding rows dropped by their mask)."""
    probs, spreads, labels, label_masks = [], [], [], []
    for i, host_batch in enumerate(batches):
        batch = train.shard_batch(host_batch, mesh)
        mean, std = eval_step(state, batch, jax.random.fold_in(rng, i))
        keep = train.to_host(batch["mask"]).astype(bool)
        probs.append(train.to_host(mean)[keep])
        spreads.append(train.to_host(std)[keep])
        labels.append(train.to_host(batch["labels"])[keep])
        label_masks.append(train.to_host(batch["label_mask"])[keep])
    probs, labels, label_masks = (np.concatenate(x) for x in (probs, labels, label_masks))
    summary = metrics.auroc_summary(labels, probs, class_names, label_masks)
    summary["num_examples"] = int(len(probs))
    summary["mean_spread"] = float(np.concatenate(spreads).mean())
    return summary


def _log_undefined(summary: dict, split: str) -> None:
    if summary["undefined_classes"]:
        logging.warning("AUROC undefined on %s for %s (a single label value); left out of the macro average",
                        split, ", ".join(summary["undefined_classes"]))


def train_and_evaluate(config, workdir: str) -> dict[str, Any]:
    """Trains (resuming from `workdir` if it holds checkpoints), then evaluates the best
    checkpoint on the test split and writes `<workdir>/results.json`. Returns the results."""
    start_time = time.time()
    mesh = train.make_mesh(config.num_devices or None)
    config_checks.validate(config, num_devices=mesh.size, num_processes=jax.process_count())
    try:
        meta = input_pipeline.prepare(config.data)
    except ValueError as e:  # a data.* field out of range, found by the pipeline's own checks
        raise config_checks.ConfigError(str(e)) from e
    os.makedirs(workdir, exist_ok=True)
    encoders = pretrained.load(config.model, image_channels=config.data.channels)
    txt = config.model.text_encoder
    tokenizer = load_tokenizer(txt.tokenizer or txt.init_from, os.path.join(workdir, "tokenizer"))
    pretrained.check_vocabulary(encoders, len(tokenizer), txt.tokenizer or txt.init_from)
    max_length = config.model.text_encoder.max_length
    is_chief = jax.process_index() == 0
    if is_chief:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))

    global_batch = config.train.batch_size
    steps_per_epoch = meta.num_examples[config.data.train_split] // global_batch
    if steps_per_epoch == 0:
        raise config_checks.ConfigError(
            f"config.train.batch_size={global_batch} exceeds the {meta.num_examples[config.data.train_split]} "
            "training examples")
    schedule_steps = steps_per_epoch * config.train.num_epochs
    last_step = min(schedule_steps, config.train.max_steps) if config.train.max_steps > 0 else schedule_steps
    eval_every = config.train.eval_every_steps or steps_per_epoch
    logging.info("%s: %s; %d devices, global batch %d, %d steps/epoch, training to step %d",
                 meta.name, meta.num_examples, mesh.size, global_batch, steps_per_epoch, last_step)

    model = create_model(config.model, num_classes=len(meta.class_names), vocab_size=len(tokenizer),
                         axis_name=train.AXIS, text_config=encoders.text_config)
    rng = jax.random.key(config.seed)
    init_rng, eval_rng = jax.random.split(rng)
    lr_fn = optim.create_learning_rate_fn(config.optim, schedule_steps)
    tx = optim.create_optimizer(config.optim, config.model, lr_fn)
    state = train.create_train_state(model, tx, init_rng, mesh, image_size=meta.image_size, max_length=max_length,
                                     channels=config.data.channels)
    state = pretrained.apply(state, encoders, mesh)
    logging.info("parameters: %s", {k: sum(x.size for x in jax.tree.leaves(v)) for k, v in state.params.items()})

    manager = checkpoint.create_manager(workdir)
    if manager.latest_step() is not None:
        state = checkpoint.restore(manager, state, manager.latest_step())
        logging.info("resumed from the checkpoint at step %d", int(state.step))

    train_step = train.make_train_step(
        model, mesh, lr_fn=lr_fn, kl_schedule=schedules.create_kl_schedule(config.train, steps_per_epoch),
        num_samples=config.model.num_samples, prior_weight=config.train.prior_weight,
        pos_weight=_pos_weight(config))
    eval_step = train.make_eval_step(model, mesh, num_samples=config.model.eval_samples)
    eval_kwargs = dict(batch_size=config.train.eval_batch_size // jax.process_count(), tokenizer=tokenizer,
                       max_length=max_length, process_index=jax.process_index(),
                       process_count=jax.process_count())

    cache = _text_feature_cache(config, workdir, meta, tokenizer, model, state, mesh, eval_kwargs)
    with_features = cache.wrap if cache is not None else (lambda batches: batches)

    def run_eval(split, state):
        batches = with_features(input_pipeline.eval_batches(config.data, split, **eval_kwargs))
        return evaluate(state, eval_step, batches, mesh, eval_rng, meta.class_names)

    writer = _summary_writer(workdir) if is_chief else None
    step = int(state.step)
    batches = with_features(input_pipeline.train_batches(
        config.data, batch_size=global_batch // jax.process_count(), tokenizer=tokenizer, max_length=max_length,
        seed=config.seed, start_step=step, process_index=jax.process_index(), process_count=jax.process_count()))
    history, tick, tick_step = [], time.time(), step
    while step < last_step:
        state, step_metrics = train_step(state, train.shard_batch(next(batches), mesh))
        step += 1
        history.append(step_metrics)
        if step % config.train.log_every_steps == 0 or step == last_step:
            summary = _mean_metrics(history)
            if not np.isfinite(summary["loss"]):
                raise NonFiniteLossError(
                    f"loss is {summary['loss']} at step {step}; stopped without saving. The last good "
                    f"checkpoint (step {manager.latest_step()}) is intact in {workdir}/checkpoints")
            summary["steps_per_s"] = (step - tick_step) / (time.time() - tick)
            history, tick, tick_step = [], time.time(), step
            logging.info("step %d/%d: %s", step, last_step, " ".join(f"{k}={v:.4g}" for k, v in sorted(summary.items())))
            _write_scalars(writer, step, {f"train/{k}": v for k, v in summary.items()})
        if step % eval_every == 0 or step == last_step:
            val = run_eval(config.data.val_split, state)
            _log_undefined(val, config.data.val_split)
            logging.info("step %d: validation macro AUROC %s on %d examples", step, val["macro_auc"],
                         val["num_examples"])
            _write_scalars(writer, step, {"val/macro_auc": val["macro_auc"], "val/micro_auc": val["micro_auc"]})
            checkpoint.save(manager, state, {checkpoint.BEST_METRIC: val["macro_auc"]}, force=True)
            tick = time.time()  # validation time is not training speed
        elif step % config.train.checkpoint_every_steps == 0:
            checkpoint.save(manager, state)
    manager.wait_until_finished()

    best_step = manager.best_step()
    if best_step is not None and best_step != int(state.step):
        state = checkpoint.restore(manager, state, best_step)
    logging.info("evaluating the checkpoint of step %s on %s", best_step, config.data.test_split)
    test = run_eval(config.data.test_split, state)
    _log_undefined(test, config.data.test_split)
    best_val = manager.metrics(best_step) if best_step is not None else None
    results = {
        "model": config.model.kind,
        "dataset": meta.name,
        "split": config.data.test_split,
        "num_examples": test["num_examples"],
        "macro_auc": test["macro_auc"],
        "micro_auc": test["micro_auc"],
        "per_class_auc": test["per_class_auc"],
        "undefined_classes": test["undefined_classes"],
        "mean_prediction_spread": test["mean_spread"],
        "eval_samples": config.model.eval_samples,
        "checkpoint_step": best_step,
        "val_macro_auc": (best_val or {}).get(checkpoint.BEST_METRIC),
        "config": json.loads(config.to_json_best_effort()),
        "elapsed_s": round(time.time() - start_time, 2),
    }
    if is_chief:
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
        logging.info("test macro AUROC %s (micro %s) on %d examples; wrote %s", results["macro_auc"],
                     results["micro_auc"], results["num_examples"], os.path.join(workdir, "results.json"))
        writer.flush()
    manager.close()
    return results


def _text_feature_cache(config, workdir, meta, tokenizer, model, state, mesh, eval_kwargs):
    """The frozen text encoder's features of every split's reports (None when not frozen)."""
    txt = config.model.text_encoder
    if config.model.kind == "image_only" or txt.train_mode != "frozen" or not txt.cache_features:
        return None
    name = text_cache.fingerprint(config, meta.num_examples, tokenizer) + ".npz"
    path = os.path.join(txt.cache_dir or os.path.join(workdir, "text_features"), name)
    encode_step = train.make_text_encode_step(model, mesh)
    splits = (config.data.train_split, config.data.val_split, config.data.test_split)

    def all_reports():
        for split in splits:
            yield from input_pipeline.eval_batches(config.data, split, **eval_kwargs)

    return text_cache.load_or_build(path, all_reports, lambda b: encode_step(state, train.shard_batch(b, mesh)),
                                    eval_kwargs["batch_size"], train.to_host)


def _summary_writer(workdir: str):
    from flax.metrics import tensorboard  # imports TensorFlow, already loaded by the pipeline
    return tensorboard.SummaryWriter(os.path.join(workdir, "tensorboard"))


def _write_scalars(writer, step: int, scalars: dict[str, float | None]) -> None:
    if writer is None:
        return
    for k, v in scalars.items():
        if v is not None:
            writer.scalar(k, v, step)
