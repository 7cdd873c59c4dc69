"""Train state and the data-parallel train step.

One jit-compiled function per step: `jax.jit` over `jax.shard_map` on a one-axis mesh
`('data',)`. Parameters, optimiser state and RNG are replicated (`P()`), the batch is
sharded over `'data'` (`P('data')`). No TensorFlow here: this module runs on accelerator
machines that have none.

Gradient semantics under `shard_map(check_vma=True)`: the loss is reduced over `'data'`
(`psum` of sums and counts) *inside* the mapped function, so it is invariant across devices,
and its gradient with respect to the replicated parameters is already the gradient of the
global-batch loss. No collective is applied to the gradients: a `pmean` there, the classic
pmap recipe, would be a no-op at best, and taking the gradient of the unreduced per-device
loss would give N times the gradient.

`build_state` and `build_train_step` make the state and the step of a config, as training
does; benchmarks/train_step.py times exactly these. The device layer (mesh, sharded batches)
is `vkd_jax.sharding`, prediction (the eval step, the export's prior path) `vkd_jax.inference`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import transformers
from flax import struct
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from data_pipelines import detail_parsers  # numpy only
from vkd_jax import losses, optim, schedules
from vkd_jax.models import create_model
from vkd_jax.models.vkd import VKDModel
from vkd_jax.sharding import AXIS, example_ids


class TrainState(struct.PyTreeNode):
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    def apply_gradients(self, grads, batch_stats):
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        return self.replace(
            step=self.step + 1,
            params=optax.apply_updates(self.params, updates),
            batch_stats=batch_stats,
            opt_state=opt_state,
        )


def dummy_inputs(
    batch_size: int, image_size: int, max_length: int, num_samples: int, latent_dim: int, channels: int = 1
):
    images = jnp.zeros((batch_size, image_size, image_size, channels), jnp.float32)
    tokens = jnp.ones((batch_size, max_length), jnp.int32)
    noise = jnp.zeros((num_samples, batch_size, latent_dim), jnp.float32)
    return images, tokens, tokens, noise


def create_train_state(
    model: VKDModel,
    tx: optax.GradientTransformation,
    rng: jax.Array,
    mesh: Mesh,
    *,
    image_size: int,
    max_length: int,
    channels: int = 1,
) -> TrainState:
    """Initialises the state replicated on `mesh`, born where it lives (jit with out_shardings)."""
    param_rng, state_rng = jax.random.split(rng)

    def init(param_rng):
        inputs = dummy_inputs(1, image_size, max_length, 1, model.latent_dim, channels)
        variables = model.init({"params": param_rng}, *inputs, train=False)
        params = variables["params"]
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            batch_stats=variables.get("batch_stats", {}),
            opt_state=tx.init(params),
            rng=state_rng,
            tx=tx,
        )

    replicated = NamedSharding(mesh, P())
    abstract = jax.eval_shape(init, param_rng)
    shardings = jax.tree.map(lambda _: replicated, abstract)
    return jax.jit(init, out_shardings=shardings)(param_rng)


def make_train_step(
    model: VKDModel,
    mesh: Mesh,
    *,
    lr_fn: optax.Schedule,
    kl_schedule: Callable,
    num_samples: int,
    objective: losses.Objective,
    pos_weight: np.ndarray | None,
) -> Callable:
    """Returns `train_step(state, batch) -> (state, metrics)`, jitted, state donated.

    `kl_schedule(step)` is the factor on `objective.beta` at that step (warm-up, cycles)."""
    pos_weight = None if pos_weight is None else jnp.asarray(pos_weight, jnp.float32)

    def step_fn(state: TrainState, batch):
        # Fresh randomness every step, one stream per purpose; dropout masks differ per
        # device, latent noise is keyed per example (see losses.per_example_normal).
        rng = jax.random.fold_in(state.rng, state.step)
        dropout_rng, noise_rng = jax.random.split(rng)
        dropout_rng = jax.random.fold_in(dropout_rng, lax.axis_index(AXIS))
        local_batch = batch["image"].shape[0]
        noise = losses.per_example_normal(noise_rng, example_ids(local_batch), (num_samples, model.latent_dim))
        kl_scale = kl_schedule(state.step)

        def loss_fn(params):
            variables = {"params": params, "batch_stats": state.batch_stats}
            out, updates = model.apply(
                variables,
                batch["image"],
                batch["input_ids"],
                batch["attention_mask"],
                noise,
                train=True,
                text_features=batch.get("text_features"),
                rngs={"dropout": dropout_rng},
                mutable=["batch_stats"],
            )
            if model.report_vocab_size:
                out["report_words"] = losses.report_words(
                    batch["input_ids"], batch["attention_mask"], model.report_vocab_size
                )
            if model.details_from != "none":
                if "report_details" not in batch:
                    raise ValueError(
                        f"model.details_from={model.details_from!r}: the batches lack report_details and "
                        "report_details_mask (the run's report-details table adds them)"
                    )
                out["report_details"] = batch["report_details"]
                out["report_details_mask"] = batch["report_details_mask"]
            loss, terms = losses.vkd_loss(
                out,
                batch["labels"],
                batch["label_mask"],
                batch["mask"],
                objective,
                kl_scale=kl_scale,
                pos_weight=pos_weight,
                axis_name=AXIS,
            )
            return loss, (terms, updates.get("batch_stats", {}))

        (_, (terms, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new_state = state.apply_gradients(grads, batch_stats)
        metrics = dict(
            terms,
            learning_rate=lr_fn(state.step),
            grad_norm=optax.tree.norm(grads),
            param_norm=optax.tree.norm(state.params),
        )
        if "kl" in terms:  # the KL weight in force; a kind without a KL term has none to log
            metrics["beta"] = objective.beta * kl_scale
        return new_state, metrics

    mapped = jax.shard_map(step_fn, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=(P(), P()))
    return jax.jit(mapped, donate_argnums=0)


def seed_rngs(seed: int) -> tuple[jax.Array, jax.Array]:
    """(init_rng, eval_rng) of a run's `config.seed`: the parameters' initialisation and the
    evaluation's latent noise (the restore for inference derives the same `eval_rng`)."""
    init_rng, eval_rng = jax.random.split(jax.random.key(seed))
    return init_rng, eval_rng


def num_details(config) -> int:
    """The width D of the report-details targets of `config` (its dataset's parser's), 0 when
    `model.details_from` is 'none'."""
    if config.model.details_from == "none":
        return 0
    return len(detail_parsers.parser(config.data.name).DETAIL_NAMES)


def model_of(
    config, *, num_classes: int, vocab_size: int, text_config: transformers.BertConfig | None = None
) -> VKDModel:
    """The model `config` describes, as training builds it and a restore rebuilds it (its
    training-only heads included, so that the checkpoint's parameters fit)."""
    return create_model(
        config.model,
        num_classes=num_classes,
        vocab_size=vocab_size,
        axis_name=AXIS,
        text_config=text_config,
        report_aux=config.train.report_aux_weight > 0,
        num_details=num_details(config),
    )


def build_state(
    config,
    mesh: Mesh,
    *,
    num_classes: int,
    vocab_size: int,
    text_config: transformers.BertConfig | None = None,
    schedule_steps: int,
):
    """(model, lr_fn, state, eval_rng): the model of `config` and a fresh train state,
    replicated on `mesh` (what a checkpoint of this config restores into). `text_config`
    (a pretrained encoder's) replaces the config's BERT sizes."""
    model = model_of(config, num_classes=num_classes, vocab_size=vocab_size, text_config=text_config)
    init_rng, eval_rng = seed_rngs(config.seed)
    lr_fn = optim.create_learning_rate_fn(config.optim, schedule_steps)
    tx = optim.create_optimizer(config.optim, config.model, lr_fn)
    state = create_train_state(
        model,
        tx,
        init_rng,
        mesh,
        image_size=config.data.image_size,
        max_length=config.model.text_encoder.max_length,
        channels=config.data.channels,
    )
    return model, lr_fn, state, eval_rng


def build_train_step(
    config,
    model: VKDModel,
    mesh: Mesh,
    lr_fn: optax.Schedule,
    *,
    steps_per_epoch: int,
    pos_weight: np.ndarray | None = None,
) -> Callable:
    """`make_train_step` with the KL schedule, the objective and the latent samples of
    `config` (`steps_per_epoch` sets a cyclical KL schedule's period)."""
    return make_train_step(
        model,
        mesh,
        lr_fn=lr_fn,
        kl_schedule=schedules.create_kl_schedule(config.train, steps_per_epoch),
        num_samples=config.model.num_samples,
        objective=losses.Objective.from_config(config.train),
        pos_weight=pos_weight,
    )
