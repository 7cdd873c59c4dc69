"""`train_and_evaluate`: config -> data, model, training loop, checkpoints, results.json.

This is where the input pipeline (tf.data) meets the train step; the step itself lives in
`vkd_jax.train`, which imports no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import threading
import time
from typing import Any, Iterator

import jax
import numpy as np
import transformers
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from data_pipelines import input_pipeline
from data_pipelines.tokenizer import load_tokenizer
from vkd_jax import checkpoint, config_checks, losses, metrics, optim, pretrained, schedules, text_cache, train
from vkd_jax.models import create_model, reads_report


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or Inf loss; the last good checkpoint is left as it was."""


class Preempted(Exception):
    """SIGTERM (a cluster's preemption notice): a checkpoint was saved, training stopped."""


class _PreemptionNotice:
    """Turns SIGTERM into a stop at the next step boundary. With several processes, JAX's
    preemption service (started by `jax.distributed.initialize`) catches the signal and
    agrees on one step for all (`multihost_utils.reached_preemption_sync_point`)."""

    def __init__(self):
        self.received = False
        self._previous = None
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        del signum, frame
        logging.warning("SIGTERM: saving a checkpoint at the end of this step, then stopping")
        self.received = True

    def reached(self, step: int) -> bool:
        if jax.process_count() > 1:
            return multihost_utils.reached_preemption_sync_point(step)
        return self.received

    def close(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


def _pos_weight(config) -> np.ndarray | None:
    if config.train.pos_weight == "none":
        return None
    p = np.clip(input_pipeline.label_prevalence(config.data, config.data.train_split), 1e-3, 1 - 1e-3)
    return (1 - p) / p if config.train.pos_weight == "balanced" else (1 - p) ** 2


def _mean_metrics(history: list[dict[str, jax.Array]]) -> dict[str, float]:
    fetched = jax.device_get(history)
    return {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}


def predict_split(state, eval_step, batches: Iterator[dict], mesh, rng) -> dict[str, np.ndarray]:
    """Scores every example of a split exactly once (padding rows dropped by their mask):
    `probs` and `spreads` [N, K] (mean and sd over latent samples), `labels`, `label_mask`
    [N, K], `kl` [N] (KL(q || p) of `vkd`, else 0), `study_id` [N] (digests of the ids)."""
    out = {k: [] for k in ("probs", "spreads", "kl", "labels", "label_mask", "study_id")}
    for i, host_batch in enumerate(batches):
        batch = train.shard_batch(host_batch, mesh)
        mean, std, kl = eval_step(state, batch, jax.random.fold_in(rng, i))
        keep = train.to_host(batch["mask"]).astype(bool)
        out["probs"].append(train.to_host(mean)[keep])
        out["spreads"].append(train.to_host(std)[keep])
        out["kl"].append(train.to_host(kl)[keep])
        out["labels"].append(train.to_host(batch["labels"])[keep])
        out["label_mask"].append(train.to_host(batch["label_mask"])[keep])
        out["study_id"].append(_global_ids(host_batch["study_id"], mesh)[keep])
    return {k: np.concatenate(v) for k, v in out.items()}


def _global_ids(ids: np.ndarray, mesh) -> np.ndarray:
    """This process's string ids -> every process's, in the global batch order, as 64-bit
    digests (only their equality matters: they group a study's images for the bootstrap)."""
    digests = np.array([np.frombuffer(hashlib.sha1(i.encode()).digest()[:8], np.int32) for i in ids], np.int32)
    sharded = jax.make_array_from_process_local_data(NamedSharding(mesh, P(train.AXIS)), digests.reshape(-1, 2))
    return np.ascontiguousarray(train.to_host(sharded)).view(np.int64)[:, 0]


def evaluate(state, eval_step, batches: Iterator[dict], mesh, rng, class_names) -> dict:
    """AUROC summary of one split (validation during training)."""
    pred = predict_split(state, eval_step, batches, mesh, rng)
    summary = metrics.auroc_summary(pred["labels"], pred["probs"], class_names, pred["label_mask"])
    summary["num_examples"] = int(len(pred["probs"]))
    summary["mean_spread"] = float(pred["spreads"].mean())
    summary["kl"] = float(pred["kl"].mean())
    return summary


def _log_undefined(summary: dict, split: str) -> None:
    if summary["undefined_classes"]:
        logging.warning("AUROC undefined on %s for %s (a single label value); left out of the macro average",
                        split, ", ".join(summary["undefined_classes"]))


@dataclasses.dataclass
class _Session:
    """What training and evaluation share: data, tokenizer, model, state, checkpoints."""

    config: Any
    workdir: str
    meta: Any
    mesh: Any
    tokenizer: Any
    model: Any
    state: Any
    manager: Any
    lr_fn: Any
    schedule_steps: int
    steps_per_epoch: int
    eval_step: Any = None
    with_features: Any = None
    eval_rng: Any = None
    final_train: dict | None = None  # the last logged training metrics (means over the interval)

    @property
    def is_chief(self) -> bool:
        return jax.process_index() == 0

    def eval_batches(self, split: str):
        cfg = self.config
        return self.with_features(input_pipeline.eval_batches(
            cfg.data, split, batch_size=cfg.train.eval_batch_size // jax.process_count(), tokenizer=self.tokenizer,
            max_length=cfg.model.text_encoder.max_length, process_index=jax.process_index(),
            process_count=jax.process_count()))

    def predict(self, split: str) -> dict[str, np.ndarray]:
        return predict_split(self.state, self.eval_step, self.eval_batches(split), self.mesh, self.eval_rng)


MODEL_INFO = "model_info.json"


def _prepare_data(data_cfg):
    """`input_pipeline.prepare`; with several processes, process 0 first (it may generate
    the synthetic dataset), then the others, which find it built."""
    if jax.process_count() == 1:
        return input_pipeline.prepare(data_cfg)
    meta = input_pipeline.prepare(data_cfg) if jax.process_index() == 0 else None
    multihost_utils.sync_global_devices("dataset prepared")
    return meta or input_pipeline.prepare(data_cfg)


def _open_session(config, workdir: str, *, training: bool) -> _Session:
    mesh = train.make_mesh(config.num_devices or None)
    config_checks.validate(config, num_devices=mesh.size, num_processes=jax.process_count())
    if training:
        checkpoint.check_storage(workdir)
    try:
        meta = _prepare_data(config.data)
    except ValueError as e:  # a data.* field out of range, found by the pipeline's own checks
        raise config_checks.ConfigError(str(e)) from e
    os.makedirs(workdir, exist_ok=True)
    # Evaluation restores every weight from the checkpoint: the pretrained files are read
    # for their architecture only when training starts.
    encoders = pretrained.load(config.model, image_channels=config.data.channels) if training else None
    txt = config.model.text_encoder
    tokenizer = load_tokenizer(txt.tokenizer or txt.init_from, os.path.join(workdir, "tokenizer"))
    text_config = encoders.text_config if training else _saved_text_config(workdir, config)
    if training:
        pretrained.check_vocabulary(encoders, len(tokenizer), txt.tokenizer or txt.init_from)
    if training and jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))
        with open(os.path.join(workdir, MODEL_INFO), "w") as f:
            json.dump({"class_names": list(meta.class_names), "stored_image_size": meta.stored_image_size,
                       "vocab_size": len(tokenizer),
                       "text_config": text_config.to_dict() if text_config is not None else None}, f, indent=2)

    global_batch = config.train.batch_size
    steps_per_epoch = meta.num_examples[config.data.train_split] // global_batch
    if steps_per_epoch == 0:
        raise config_checks.ConfigError(
            f"config.train.batch_size={global_batch} exceeds the {meta.num_examples[config.data.train_split]} "
            "training examples")
    schedule_steps = steps_per_epoch * config.train.num_epochs

    model, lr_fn, state, eval_rng = build_state(config, mesh, num_classes=len(meta.class_names),
                                                vocab_size=len(tokenizer), text_config=text_config,
                                                schedule_steps=schedule_steps)
    if training:
        state = pretrained.apply(state, encoders, mesh)
        logging.info("parameters: %s", {k: sum(x.size for x in jax.tree.leaves(v)) for k, v in state.params.items()})
        checkpoint.check_storage(workdir, state)
    session = _Session(config=config, workdir=workdir, meta=meta, mesh=mesh, tokenizer=tokenizer, model=model,
                       state=state, manager=checkpoint.create_manager(workdir), lr_fn=lr_fn,
                       schedule_steps=schedule_steps, steps_per_epoch=steps_per_epoch, eval_rng=eval_rng,
                       eval_step=train.make_eval_step(model, mesh, num_samples=config.model.eval_samples,
                                                      with_kl=True))
    cache = _text_feature_cache(session)
    session.with_features = cache.wrap if cache is not None else (lambda batches: batches)
    return session


def build_state(config, mesh, *, num_classes: int, vocab_size: int, text_config, schedule_steps: int):
    """(model, lr_fn, state, eval_rng): the model of `config` and a fresh train state,
    replicated on `mesh` (what a checkpoint of this config restores into)."""
    model = create_model(config.model, num_classes=num_classes, vocab_size=vocab_size, axis_name=train.AXIS,
                         text_config=text_config, report_aux=config.train.report_aux_weight > 0)
    init_rng, eval_rng = jax.random.split(jax.random.key(config.seed))
    lr_fn = optim.create_learning_rate_fn(config.optim, schedule_steps)
    tx = optim.create_optimizer(config.optim, config.model, lr_fn)
    state = train.create_train_state(model, tx, init_rng, mesh, image_size=config.data.image_size,
                                     max_length=config.model.text_encoder.max_length,
                                     channels=config.data.channels)
    return model, lr_fn, state, eval_rng


def read_model_info(workdir: str) -> dict | None:
    """What training saved in `<workdir>/model_info.json` (None for a workdir without it)."""
    path = os.path.join(workdir, MODEL_INFO)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def text_config_of(info: dict) -> transformers.BertConfig | None:
    return transformers.BertConfig.from_dict(info["text_config"]) if info["text_config"] else None


def _saved_text_config(workdir: str, config):
    """The text encoder's architecture as training saved it (a pretrained one's included)."""
    info = read_model_info(workdir)
    if info is not None:
        return text_config_of(info)
    if config.model.text_encoder.init_from and reads_report(config.model.kind, config.model.posterior_inputs):
        return pretrained.load(config.model, image_channels=config.data.channels).text_config
    return None


def train_and_evaluate(config, workdir: str) -> dict[str, Any]:
    """Trains (resuming from `workdir` if it holds checkpoints), then evaluates the best
    checkpoint on the test split and writes `<workdir>/results.json`, `report.md` and
    `figures/`. Returns the results."""
    start_time = time.time()
    s = _open_session(config, workdir, training=True)
    mesh, manager, meta = s.mesh, s.manager, s.meta
    global_batch = config.train.batch_size
    last_step = min(s.schedule_steps, config.train.max_steps) if config.train.max_steps > 0 else s.schedule_steps
    eval_every = config.train.eval_every_steps or s.steps_per_epoch
    logging.info("%s: %s; %d devices, global batch %d, %d steps/epoch, training to step %d",
                 meta.name, meta.num_examples, mesh.size, global_batch, s.steps_per_epoch, last_step)

    state, restored = checkpoint.restore_latest_good(manager, s.state)
    if restored is not None:
        logging.info("resumed from the checkpoint at step %d", int(state.step))

    train_step = train.make_train_step(
        s.model, mesh, lr_fn=s.lr_fn, kl_schedule=schedules.create_kl_schedule(config.train, s.steps_per_epoch),
        num_samples=config.model.num_samples, objective=losses.Objective.from_config(config.train),
        pos_weight=_pos_weight(config))

    def run_eval(split, state):
        return evaluate(state, s.eval_step, s.eval_batches(split), mesh, s.eval_rng, meta.class_names)

    writer = _summary_writer(workdir) if s.is_chief else None
    step = int(state.step)
    max_length = config.model.text_encoder.max_length
    batches = s.with_features(input_pipeline.train_batches(
        config.data, batch_size=global_batch // jax.process_count(), tokenizer=s.tokenizer, max_length=max_length,
        seed=config.seed, start_step=step, process_index=jax.process_index(), process_count=jax.process_count()))
    history, tick, tick_step, paused = [], time.time(), step, 0.0
    notice = _PreemptionNotice()
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
            summary["steps_per_s"] = (step - tick_step) / (time.time() - tick - paused)
            history, tick, tick_step, paused = [], time.time(), step, 0.0
            logging.info("step %d/%d: %s", step, last_step, " ".join(f"{k}={v:.4g}" for k, v in sorted(summary.items())))
            s.final_train = summary
            _write_scalars(writer, step, {f"train/{k}": v for k, v in summary.items()})
        if step % eval_every == 0 or step == last_step:
            eval_start = time.time()
            val = run_eval(config.data.val_split, state)
            _log_undefined(val, config.data.val_split)
            logging.info("step %d: validation macro AUROC %s on %d examples%s", step, val["macro_auc"],
                         val["num_examples"], f", KL(q || p) {val['kl']:.4g} nats" if config.model.kind == "vkd" else "")
            _write_scalars(writer, step, {"val/macro_auc": val["macro_auc"], "val/micro_auc": val["micro_auc"],
                                          **({"val/kl": val["kl"]} if config.model.kind == "vkd" else {})})
            checkpoint.save(manager, state, {checkpoint.BEST_METRIC: val["macro_auc"]}, force=True)
            paused += time.time() - eval_start  # validation time is not training speed
        elif step % config.train.checkpoint_every_steps == 0:
            checkpoint.save(manager, state)
        if notice.reached(step):
            if manager.latest_step() != step:
                checkpoint.save(manager, state, force=True)
            manager.wait_until_finished()
            notice.close()
            raise Preempted(f"preempted (SIGTERM): saved the checkpoint of step {step} in {workdir}/checkpoints; "
                            "run the same command again to resume")
    notice.close()
    manager.wait_until_finished()
    if writer is not None:
        writer.flush()
    s.state = state
    results = _evaluate_best(s, config.data.test_split, start_time)
    manager.close()
    return results


def evaluate_checkpoint(config, workdir: str, split: str | None = None) -> dict[str, Any]:
    """`--mode=eval`: the best checkpoint of `workdir` (the latest if none was validated) on
    `split` (default: the test split); writes results, report and figures. Returns the results."""
    start_time = time.time()
    s = _open_session(config, workdir, training=False)
    if s.manager.latest_step() is None:
        raise FileNotFoundError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}: train first "
                                f"(python run.py --config=... --workdir={workdir})")
    split = split or config.data.test_split
    if split not in s.meta.num_examples:
        raise config_checks.ConfigError(f"--split={split}: {s.meta.name} has the splits {sorted(s.meta.num_examples)}")
    results = _evaluate_best(s, split, start_time)
    s.manager.close()
    return results


def _evaluate_best(s: _Session, split: str, start_time: float) -> dict[str, Any]:
    """The best checkpoint on `split`, with thresholds chosen on the validation split."""
    config, manager = s.config, s.manager
    best_step = manager.best_step()
    step = checkpoint.best_or_latest_step(manager)
    if step is not None and step != int(s.state.step):
        s.state = checkpoint.restore(manager, s.state, step)
    evl = config.eval
    logging.info("evaluating the checkpoint of step %s on %s (thresholds: %s on %s)", step, split,
                 evl.threshold_method, config.data.val_split)
    val = s.predict(config.data.val_split)
    thresholds = metrics.choose_thresholds(val["labels"], val["probs"], val["label_mask"],
                                           method=evl.threshold_method)
    pred = val if split == config.data.val_split else s.predict(split)
    report = metrics.classification_report(
        pred["labels"], pred["probs"], s.meta.class_names, mask=pred["label_mask"], spreads=pred["spreads"],
        thresholds=thresholds, groups=pred["study_id"], num_bootstrap=evl.bootstrap_samples,
        seed=evl.bootstrap_seed, num_bins=evl.calibration_bins, refer_fraction=evl.refer_fraction)
    _log_undefined(report, split)
    best_val = manager.metrics(best_step) if best_step is not None else None
    results = {
        "model": config.model.kind,
        "dataset": s.meta.name,
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
        "final_train": s.final_train,
        "config": json.loads(config.to_json_best_effort()),
        "elapsed_s": round(time.time() - start_time, 2),
    }
    if s.is_chief:
        _write_outputs(s, split, results, pred)
    return results


def output_names(split: str, test_split: str) -> tuple[str, str, str]:
    """(results, report, figures) names in the workdir: plain for the test split, else suffixed."""
    suffix = "" if split == test_split else f"_{split}"
    return f"results{suffix}.json", f"report{suffix}.md", f"figures{suffix}"


def _write_outputs(s: _Session, split: str, results: dict, pred: dict) -> None:
    from vkd_jax import report  # matplotlib, only where files are written

    results_name, report_name, figures_name = output_names(split, s.config.data.test_split)
    figures = []
    if s.config.eval.figures:
        fig_dir = os.path.join(s.workdir, figures_name)
        os.makedirs(fig_dir, exist_ok=True)
        report.plot_roc_curves(os.path.join(fig_dir, "roc_curves.png"), pred["labels"], pred["probs"],
                               pred["label_mask"], s.meta.class_names, results)
        report.plot_reliability(os.path.join(fig_dir, "reliability.png"), results["calibration"])
        figures = [f"{figures_name}/roc_curves.png", f"{figures_name}/reliability.png"]
        if report.plot_training_curves(os.path.join(fig_dir, "training_curves.png"),
                                       os.path.join(s.workdir, "tensorboard")):
            figures.append(f"{figures_name}/training_curves.png")
    with open(os.path.join(s.workdir, results_name), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(s.workdir, report_name), "w") as f:
        f.write(report.markdown(results, figures))
    logging.info("%s macro AUROC %s (micro %s) on %d examples; wrote %s, %s and %d figures in %s", split,
                 results["macro_auc"], results["micro_auc"], results["num_examples"], results_name, report_name,
                 len(figures), s.workdir)


def _text_feature_cache(s: _Session):
    """The frozen text encoder's features of every split's reports (None when not frozen)."""
    config = s.config
    txt = config.model.text_encoder
    if not reads_report(config.model.kind, config.model.posterior_inputs) or txt.train_mode != "frozen" or (
            not txt.cache_features):
        return None
    name = text_cache.fingerprint(config, s.meta.num_examples, s.tokenizer) + ".npz"
    path = os.path.join(txt.cache_dir or os.path.join(s.workdir, "text_features"), name)
    encode_step = train.make_text_encode_step(s.model, s.mesh)
    splits = (config.data.train_split, config.data.val_split, config.data.test_split)
    # Every process reads every report, so all build the same cache in the same steps.
    global_batch = config.train.eval_batch_size
    local_batch = global_batch // jax.process_count()

    def all_reports():
        for split in splits:
            yield from input_pipeline.eval_batches(config.data, split, batch_size=global_batch,
                                                   tokenizer=s.tokenizer, max_length=txt.max_length)

    def encode(batch):  # a global batch of reports; this process encodes its slice
        lo = jax.process_index() * local_batch
        local = {k: v[lo:lo + local_batch] for k, v in batch.items()}
        return encode_step(s.state, train.shard_batch(local, s.mesh))

    # Built from the freshly initialised state: the frozen encoder's weights are the
    # pretrained ones, and a restored checkpoint holds the same.
    return text_cache.load_or_build(path, all_reports, encode, global_batch, train.to_host)


def _summary_writer(workdir: str):
    from flax.metrics import tensorboard  # imports TensorFlow, already loaded by the pipeline
    return tensorboard.SummaryWriter(os.path.join(workdir, "tensorboard"))


def _write_scalars(writer, step: int, scalars: dict[str, float | None]) -> None:
    if writer is None:
        return
    for k, v in scalars.items():
        if v is not None:
            writer.scalar(k, v, step)
