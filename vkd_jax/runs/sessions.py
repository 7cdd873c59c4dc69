"""What a command opens before it works, each in restore order, as one straight line.

Training (`open_training`):
  config checked against the devices -> the workdir's lock (`vkd_jax.runs.lock`, held until
  `Run.release`) -> the workdir writable -> dataset -> tokenizer -> the schedule -> the
  model (its text encoder's shape from the workdir's `model_info.json` when resuming, else
  from the pretrained files, which are read only for a fresh start) -> room for its
  checkpoints -> the newest good checkpoint of the workdir, else the pretrained weights ->
  only then `config.json` and `model_info.json` are written -> the text-feature cache, from
  the state training starts with (one per machine, keyed by the reports and the encoder) ->
  the report-details table of the training split, where the method learns the details
  (`vkd_jax.runs.report_details`).

Evaluation (`open_evaluation`):
  config checked -> `model_info.json` -> the workdir's lock (held until `Run.release`) ->
  dataset -> tokenizer -> the best checkpoint's parameters and statistics restored
  (`restore.restore_best`, which prediction uses too; no optimiser state, nothing compiled)
  -> only then is any parameter read (the text-feature cache included, which a frozen
  pretrained encoder would otherwise fill from random weights).

Both end in `_run`, the one builder of a `Run`'s fields. Training's state is built by
`vkd_jax.train.build_state` (as the step benchmark, benchmarks/train_step.py, builds it);
evaluation's is the checkpoint's shapes alone (`restore.abstract_state`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator

import jax
import ml_collections
import optax
import orbax.checkpoint as ocp
import transformers
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from data_pipelines import input_pipeline, progress as progress_lib
from data_pipelines.tokenizer import load_tokenizer
from vkd_jax import errors, inference, sharding, train
from vkd_jax.models import VKDModel, reads_report
from vkd_jax.pretrained import encoders as pretrained
from vkd_jax.runs import (
    checkpoint,
    config_checks,
    lock,
    log,
    report_details,
    restore,
    study_table,
    text_cache,
    workdir as wd,
)


@dataclasses.dataclass
class Run:
    """A dataset, a model and a state (restored, or where training starts), ready to score splits."""

    config: ml_collections.ConfigDict
    workdir: str
    meta: input_pipeline.DatasetMeta
    mesh: Mesh
    tokenizer: transformers.PreTrainedTokenizerBase
    model: VKDModel
    state: train.TrainState | inference.ModelState  # evaluation restores no optimiser state
    manager: ocp.CheckpointManager
    eval_step: Callable
    eval_rng: jax.Array
    text_features: text_cache.TextFeatureCache | None
    workdir_lock: lock.WorkdirLock | None = None  # the command's hold on the workdir
    # Training only, where the method learns them: the training split's report details.
    report_details: study_table.StudyTable | None = None

    def eval_batches(self, split: str) -> Iterator[dict]:
        cfg = self.config
        batches = input_pipeline.eval_batches(
            cfg.data,
            split,
            batch_size=cfg.train.eval_batch_size // jax.process_count(),
            tokenizer=self.tokenizer,
            max_length=cfg.model.text_encoder.max_length,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        )
        batches = self.text_features.wrap(batches) if self.text_features is not None else batches
        num_batches = -(-self.meta.num_examples[split] // cfg.train.eval_batch_size)
        logging.info("evaluating %s: %d batches...", split, num_batches)
        return progress_lib.track(batches, log.progress(f"evaluated {split}", num_batches, "batches"))

    def release(self) -> None:
        """Lets the workdir's lock go, once the checkpoints still being written are (the
        command's last act, after success, error or preemption alike). With several
        processes it does not wait: that would be a barrier one failing process never reaches."""
        if self.workdir_lock is None:
            return
        try:
            if jax.process_count() == 1:
                with contextlib.suppress(Exception):  # a failed save raised where it failed
                    self.manager.wait_until_finished()
        finally:
            self.workdir_lock.release()


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    """How long a training runs and where it starts."""

    lr_fn: optax.Schedule
    steps_per_epoch: int
    schedule_steps: int
    resumed_step: int | None  # the checkpoint training resumes from (None: a fresh start)


def _mesh_for(config) -> Mesh:
    """The device mesh, after the config is checked against it (before any other work)."""
    mesh = sharding.make_mesh(config.num_devices or None)
    config_checks.validate(config, num_devices=mesh.size, num_processes=jax.process_count())
    return mesh


def _prepare_data(data_cfg) -> input_pipeline.DatasetMeta:
    """`input_pipeline.prepare`; with several processes, process 0 first (it may generate
    the synthetic dataset), then the others, which find it built."""
    try:
        if jax.process_count() == 1:
            return input_pipeline.prepare(data_cfg)
        meta = input_pipeline.prepare(data_cfg) if jax.process_index() == 0 else None
        multihost_utils.sync_global_devices("dataset prepared")
        return meta or input_pipeline.prepare(data_cfg)
    except ValueError as e:  # a data.* field the built dataset cannot serve
        raise errors.ConfigError(str(e)) from e


def _tokenizer(config, workdir: str):
    txt = config.model.text_encoder
    return load_tokenizer(txt.tokenizer or txt.init_from, wd.tokenizer_dir(workdir))


def _steps(config, meta) -> tuple[int, int]:
    """(steps per epoch, steps of the whole schedule)."""
    global_batch = config.train.batch_size
    num_train = meta.num_examples[config.data.train_split]
    steps_per_epoch = num_train // global_batch
    if steps_per_epoch == 0:
        raise errors.ConfigError(f"config.train.batch_size={global_batch} exceeds the {num_train} training examples")
    return steps_per_epoch, steps_per_epoch * config.train.num_epochs


def _pretrained(config, tokenizer) -> pretrained.PretrainedEncoders:
    """The pretrained encoders' files (`init_from`), checked against the tokenizer."""
    txt = config.model.text_encoder
    encoders = pretrained.load(config.model, image_channels=config.data.channels)
    pretrained.check_vocabulary(encoders, len(tokenizer), txt.tokenizer or txt.init_from)
    return encoders


def open_training(config, workdir: str) -> tuple[Run, TrainingPlan]:
    """The run `train_and_evaluate` trains: resumed from the workdir's newest good
    checkpoint, else started from the pretrained encoders (else from scratch). The run holds
    the workdir's lock: call `Run.release` when the training ends."""
    mesh = _mesh_for(config)
    held = lock.acquire(workdir)  # before anything is written; it creates the workdir
    try:
        run, plan = _open_training(config, workdir, mesh)
    except BaseException:
        held.release()
        raise
    run.workdir_lock = held
    return run, plan


def _open_training(config, workdir: str, mesh: Mesh) -> tuple[Run, TrainingPlan]:
    checkpoint.check_writable(workdir)
    meta = _prepare_data(config.data)
    tokenizer = _tokenizer(config, workdir)
    steps_per_epoch, schedule_steps = _steps(config, meta)
    resuming = checkpoint.has_checkpoints(workdir)
    encoders = None if resuming else _pretrained(config, tokenizer)
    # A pretrained text encoder's shape comes from its files, or from the run being resumed.
    text_config = wd.read_model_info(workdir).text_config if resuming else encoders.text_config
    logging.info("initialising the model and optimiser state (compiling their init)...")
    model, lr_fn, state, eval_rng = train.build_state(
        config,
        mesh,
        num_classes=len(meta.class_names),
        vocab_size=len(tokenizer),
        text_config=text_config,
        schedule_steps=schedule_steps,
    )
    logging.info("parameters: %s", {k: sum(x.size for x in jax.tree.leaves(v)) for k, v in state.params.items()})
    checkpoint.check_space(workdir, state)
    manager = checkpoint.create_manager(workdir)
    try:
        state, resumed = checkpoint.restore_latest_good(manager, state)
    except errors.RestoreError:  # the config no longer fits: the workdir stays as it was
        manager.close()
        raise
    if resumed is None:  # a fresh start (also when every checkpoint there was incomplete)
        encoders = encoders or _pretrained(config, tokenizer)
        state = pretrained.apply(state, encoders, mesh)
    else:
        logging.info("resumed from the checkpoint at step %d", resumed)
    # The command can proceed: only now is the workdir's description of the run replaced.
    if jax.process_index() == 0:
        wd.write_config(workdir, config)
        wd.write_model_info(
            workdir,
            wd.ModelInfo(
                class_names=tuple(meta.class_names),
                stored_image_size=meta.stored_image_size,
                vocab_size=len(tokenizer),
                text_config=text_config,
            ),
        )
    run = _run(config, workdir, meta, mesh, tokenizer, model, state, manager, eval_rng)
    if report_details.wanted(config):
        run.report_details = report_details.build(config, meta.num_examples[config.data.train_split])
    return run, TrainingPlan(lr_fn, steps_per_epoch, schedule_steps, resumed)


def open_evaluation(config, workdir: str) -> Run:
    """The best checkpoint of `workdir`, restored before anything reads its parameters. The
    run holds the workdir's lock (evaluation writes its results there): call `Run.release`."""
    mesh = _mesh_for(config)
    info = wd.read_model_info(workdir)  # before the lock: a workdir that is no run is not created
    held = lock.acquire(workdir)
    try:
        run = _open_evaluation(config, workdir, mesh, info)
    except BaseException:
        held.release()
        raise
    run.workdir_lock = held
    return run


def _open_evaluation(config, workdir: str, mesh: Mesh, info: wd.ModelInfo) -> Run:
    meta = _prepare_data(config.data)
    if tuple(meta.class_names) != info.class_names:
        raise errors.ConfigError(
            f"the dataset's classes {list(meta.class_names)} are not those the model in {workdir} was trained on "
            f"({list(info.class_names)}, {wd.MODEL_INFO})"
        )
    tokenizer = _tokenizer(config, workdir)
    model, state, eval_rng, manager = restore.restore_best(config, workdir, info, mesh)
    return _run(config, workdir, meta, mesh, tokenizer, model, state, manager, eval_rng)


def _run(config, workdir, meta, mesh, tokenizer, model, state, manager, eval_rng) -> Run:
    """The one builder of a `Run`: the eval step and the text-feature cache of `state`."""
    return Run(
        config=config,
        workdir=workdir,
        meta=meta,
        mesh=mesh,
        tokenizer=tokenizer,
        model=model,
        state=state,
        manager=manager,
        eval_step=inference.make_eval_step(model, mesh, num_samples=config.model.eval_samples, with_kl=True),
        eval_rng=eval_rng,
        text_features=_text_feature_cache(config, tokenizer, model, mesh, state),
    )


def _text_feature_cache(config, tokenizer, model, mesh, state):
    """The frozen text encoder's features of every split's reports, computed with `state`
    (None when the encoder is not frozen or caching is off)."""
    txt = config.model.text_encoder
    if (
        not reads_report(config.model.kind, config.model.posterior_inputs)
        or txt.train_mode != "frozen"
        or (not txt.cache_features)
    ):
        return None
    cache_dir = txt.cache_dir or text_cache.default_dir()
    encode_step = inference.make_text_encode_step(model, mesh)
    splits = (config.data.train_split, config.data.val_split, config.data.test_split)
    # Every process reads every report, so all build the same cache in the same steps.
    global_batch = config.train.eval_batch_size
    local_batch = global_batch // jax.process_count()

    def all_reports():
        for split in splits:
            yield from input_pipeline.report_batches(
                config.data, split, batch_size=global_batch, tokenizer=tokenizer, max_length=txt.max_length
            )

    def encode(batch):  # a global batch of reports; this process encodes its slice
        lo = jax.process_index() * local_batch
        local = {k: v[lo : lo + local_batch] for k, v in batch.items()}
        return encode_step(state, sharding.shard_batch(local, mesh))

    return text_cache.load_or_build(
        cache_dir, text_cache.encoder_key(config), all_reports(), encode, global_batch, sharding.to_host
    )
