"""Train state, optimizer and the jitted contrastive train step.

The step encodes both sides of every pair with one shared encoder, scores them with the
symmetric InfoNCE loss over the *global* batch (negatives gathered across every device and
host), and applies AdamW. Parameters are `{'encoder': ..., 'log_scale': ...}`; the learned
temperature lives beside the encoder so that it is checkpointed and optimised with it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax
import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from cpt_jax import losses, partitioning
from cpt_jax.models import Encoder, EncoderConfig

PyTree = Any


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes. `step` counts completed optimizer updates."""

    step: jax.Array
    params: PyTree
    opt_state: PyTree


@gin.configurable
@dataclasses.dataclass(frozen=True)
class LossConfig:
    """How pairs are scored.

    Attributes:
      initial_logit_scale: starting value of the learned `logit_scale` (1/temperature).
      max_logit_scale: clamp on the scale (CLIP uses 100).
      learn_logit_scale: False freezes the temperature at `initial_logit_scale`.
      mask_duplicates: mask in-batch negatives whose text equals the positive's (by id).
    """

    initial_logit_scale: float = 1.0 / 0.07
    max_logit_scale: float = 100.0
    learn_logit_scale: bool = True
    mask_duplicates: bool = True


@gin.configurable
def make_optimizer(
    total_steps: int,
    *,
    learning_rate: float = 3e-4,
    warmup_steps: int = 100,
    end_learning_rate_fraction: float = 0.0,
    weight_decay: float = 0.1,
    b1: float = 0.9,
    b2: float = 0.98,
    eps: float = 1e-6,
    grad_clip_norm: float | None = 1.0,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW with linear warmup then cosine decay; no decay on biases, norms or the scale.

    Returns the transformation and its learning-rate schedule (for logging).
    """
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=learning_rate,
        warmup_steps=warmup_steps,
        decay_steps=max(total_steps, warmup_steps + 1),
        end_value=learning_rate * end_learning_rate_fraction,
    )
    # Weight decay only on matrices (ndim >= 2): biases, LayerNorm and log_scale are exempt.
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
    chain = [optax.clip_by_global_norm(grad_clip_norm)] if grad_clip_norm else []
    chain.append(
        optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=decay_mask)
    )
    return optax.chain(*chain), schedule


@dataclasses.dataclass
class Trainer:
    """Builds the sharded train state and the jitted step for one model on one mesh.

    Attributes:
      model_config: the encoder's shape.
      loss_config: temperature and duplicate masking.
      optimizer: an optax transformation (see `make_optimizer`).
      mesh: a `('data', 'fsdp', 'model')` mesh (see `partitioning.make_mesh`).
      rules: the logical-axis rules table (see `partitioning.logical_axis_rules`).
      dropout_seed: base of the per-step dropout keys, `fold_in(key(seed), step)`.
    """

    model_config: EncoderConfig
    loss_config: LossConfig
    optimizer: optax.GradientTransformation
    mesh: Mesh
    rules: partitioning.LogicalRules
    dropout_seed: int = 0

    def __post_init__(self):
        self.model = Encoder(self.model_config)
        abstract = jax.eval_shape(self._init_boxed, jax.random.key(0))
        logical_specs = nn.get_partition_spec(abstract)
        self.state_shardings = partitioning.logical_to_shardings(
            logical_specs, self.mesh, self.rules
        )
        self.abstract_state = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
            nn.unbox(abstract),
            self.state_shardings,
        )

    # -- state ---------------------------------------------------------------------------
    def _init_boxed(self, key: jax.Array) -> TrainState:
        dummy = jnp.zeros((1, 8), jnp.int32)
        with nn.logical_axis_rules(self.rules):
            encoder_params = self.model.init(key, dummy)["params"]
        params = {
            "encoder": encoder_params,
            "log_scale": losses.init_log_scale(self.loss_config.initial_logit_scale),
        }
        opt_state = self.optimizer.init(params)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state)

    def init_state(self, seed: int) -> TrainState:
        """Initialises parameters directly into their shardings (never whole on one device)."""
        init = jax.jit(
            lambda key: nn.unbox(self._init_boxed(key)), out_shardings=self.state_shardings
        )
        with jax.set_mesh(self.mesh):
            return init(jax.random.key(seed))

    # -- step ----------------------------------------------------------------------------
    def encode(self, encoder_params: PyTree, tokens: jax.Array, dropout_key=None) -> jax.Array:
        """`[b, L]` tokens -> `[b, D]` unit-norm embeddings (dropout when a key is given)."""
        rngs = None if dropout_key is None else {"dropout": dropout_key}
        with nn.logical_axis_rules(self.rules):
            return self.model.apply(
                {"params": encoder_params}, tokens, deterministic=dropout_key is None, rngs=rngs
            )

    def _loss_options(self, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        if self.loss_config.mask_duplicates and "query_ids" in batch:
            return {"query_ids": batch["query_ids"], "document_ids": batch["document_ids"]}
        return {}

    def logit_scale(self, params: PyTree) -> jax.Array:
        return losses.logit_scale_from_log(
            params["log_scale"],
            max_scale=self.loss_config.max_logit_scale,
            trainable=self.loss_config.learn_logit_scale,
        )

    def loss_and_embeddings(self, params, batch, dropout_key):
        """Global symmetric InfoNCE of a batch; also returns both sides' embeddings."""
        query_key, document_key = jax.random.split(dropout_key)
        queries = self.encode(params["encoder"], batch["queries"], query_key)
        documents = self.encode(params["encoder"], batch["documents"], document_key)
        loss = losses.sharded_symmetric_info_nce(
            queries,
            documents,
            logit_scale=self.logit_scale(params),
            mesh=self.mesh,
            batch_axes=partitioning.BATCH_AXES,
            **self._loss_options(batch),
        )
        return loss, (queries, documents)

    def _train_step(self, state: TrainState, batch: dict[str, jax.Array]):
        dropout_key = jax.random.fold_in(jax.random.key(self.dropout_seed), state.step)
        grad_fn = jax.value_and_grad(self.loss_and_embeddings, has_aux=True)
        (loss, (queries, documents)), grads = grad_fn(state.params, batch, dropout_key)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = losses.sharded_contrastive_metrics(
            jax.lax.stop_gradient(queries),
            jax.lax.stop_gradient(documents),
            logit_scale=self.logit_scale(state.params),
            mesh=self.mesh,
            batch_axes=partitioning.BATCH_AXES,
            **self._loss_options(batch),
        )
        metrics.update(
            loss=loss,
            grad_norm=optax.global_norm(grads),
            param_norm=optax.global_norm(state.params["encoder"]),
            update_norm=optax.global_norm(updates),
        )
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    @functools.cached_property
    def train_step(self):
        """`(state, global_batch) -> (state, metrics)`, jitted with explicit shardings.

        The state is donated: its buffers are reused for the new state.
        """
        batch_sharding = partitioning.batch_sharding(self.mesh)
        step = jax.jit(
            self._train_step,
            in_shardings=(self.state_shardings, batch_sharding),
            out_shardings=(self.state_shardings, partitioning.replicated(self.mesh)),
            donate_argnums=(0,),
        )

        def run(state, batch):
            with jax.set_mesh(self.mesh):
                return step(state, batch)

        return run
