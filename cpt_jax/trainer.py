"""The contrastive trainer: train state, optimizer, and the jitted train step.

The step encodes both sides of every pair with one shared encoder, scores them with the
symmetric InfoNCE loss over the *global* batch (negatives gathered across every device and
host), and applies AdamW; with `grad_cache_chunk_size` the loss gradients come from
gradient caching (`cpt_jax.grad_cache`) instead of one whole-batch pass. Parameters are
`{'encoder': ..., 'log_scale': ...}`; the learned temperature lives beside the encoder so
that it is checkpointed and optimised with it.
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
import numpy as np
import optax
from jax.sharding import Mesh

from cpt_jax import grad_cache, losses, partitioning
from cpt_jax.models import Encoder, EncoderConfig

PyTree = Any

# What `Trainer.train_step` returns for the log: a contrastive run's health is read off these
# (docs/design.md: the loss). The first six come from the loss pass itself.
STEP_METRICS = (
    "loss",
    "accuracy_q2d",
    "accuracy_d2q",
    "positive_logit_mean",
    "negative_logit_mean",
    "logit_scale",
    "grad_norm",
    "param_norm",
    "update_norm",
    "nonfinite",
)


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
      chunk_size: score the loss this many rows per device at a time, so the logits take
        `O(chunk_size * global_batch)` memory (see `losses.symmetric_info_nce`); None
        scores all local rows at once. The result is the same either way.
      matryoshka_dims: train the prefixes of these lengths as embeddings too (strictly
        decreasing, e.g. `(384, 256, 128, 64)`; see `losses.symmetric_info_nce`); the model
        directory records them (`model.json`'s `embedding_sizes`). None: the full vectors.
      matryoshka_weights: the sizes' weights in the loss (default 1 each).
      logit_scale_per_size: one learned scale per Matryoshka size instead of one shared.
    """

    initial_logit_scale: float = 1.0 / 0.07
    max_logit_scale: float = 100.0
    learn_logit_scale: bool = True
    mask_duplicates: bool = True
    chunk_size: int | None = None
    matryoshka_dims: tuple[int, ...] | None = None
    matryoshka_weights: tuple[float, ...] | None = None
    logit_scale_per_size: bool = False

    def __post_init__(self):
        # Lists from gin become tuples (hashable, and what model.json records).
        for name in ("matryoshka_dims", "matryoshka_weights"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        if self.matryoshka_dims is not None:
            losses.matryoshka_sizes(self.matryoshka_dims, self.matryoshka_weights, width=None)
        elif self.matryoshka_weights is not None or self.logit_scale_per_size:
            raise ValueError(
                "LossConfig.matryoshka_weights and logit_scale_per_size need matryoshka_dims"
            )

    @property
    def log_scale_shape(self) -> tuple[int, ...]:
        """The learned log-scale's shape: `()`, or `(K,)` with a scale per Matryoshka size."""
        return (len(self.matryoshka_dims),) if self.logit_scale_per_size else ()

    def embedding_sizes(self, width: int) -> tuple[int, ...]:
        """The lengths whose prefixes are trained as embeddings, largest first: `(width,)`
        without Matryoshka. An error when a size exceeds the model's width."""
        if self.matryoshka_dims is None:
            return (width,)
        return losses.matryoshka_sizes(self.matryoshka_dims, self.matryoshka_weights, width)[0]


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


def _sides(batch: dict[str, jax.Array]) -> list[jax.Array]:
    """The token arrays encoded per step: queries, documents, and the hard negatives when
    the batch has them."""
    return [batch[name] for name in ("queries", "documents", "negatives") if name in batch]


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
      grad_cache_chunk_size: None for the plain step; otherwise gradient caching
        (`cpt_jax.grad_cache`) with this many pairs (global, over all devices) per encoder
        pass, so activation memory is that of a `grad_cache_chunk_size` batch whatever the
        global batch. Must divide the global batch and be a multiple of the number of batch
        shards. Loss and gradients equal the plain step's.
    """

    model_config: EncoderConfig
    loss_config: LossConfig
    optimizer: optax.GradientTransformation
    mesh: Mesh
    rules: partitioning.LogicalRules
    dropout_seed: int = 0
    grad_cache_chunk_size: int | None = None

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
            "log_scale": losses.init_log_scale(
                self.loss_config.initial_logit_scale, *self.loss_config.log_scale_shape
            ),
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

    # -- loss ----------------------------------------------------------------------------
    def encode(
        self, encoder_params: PyTree, tokens: jax.Array, dropout_key=None, example_ids=None
    ) -> jax.Array:
        """`[b, L]` tokens -> `[b, D]` unit-norm embeddings (dropout when a key is given).

        `example_ids [b]` seed each row's dropout masks (see `models.transformer.dropout`):
        the train step passes each pair's global row index, so masks do not depend on how
        the batch is chunked or sharded.
        """
        rngs = None if dropout_key is None else {"dropout": dropout_key}
        with nn.logical_axis_rules(self.rules):
            return self.model.apply(
                {"params": encoder_params},
                tokens,
                deterministic=dropout_key is None,
                example_ids=example_ids,
                rngs=rngs,
            )

    def _encode_side(self, encoder_params, tokens, dropout_key, row_ids) -> jax.Array:
        """`encode` of one side: `[b, L]` -> `[b, D]`, or hard negatives `[b, N, L]` ->
        `[b, N, D]` (negative j of row i seeds its dropout with id `i * N + j`)."""
        if tokens.ndim == 2:
            return self.encode(encoder_params, tokens, dropout_key, row_ids)
        b, n, length = tokens.shape
        ids = (row_ids[:, None] * n + jnp.arange(n, dtype=row_ids.dtype)).reshape(b * n)
        flat = self.encode(encoder_params, tokens.reshape(b * n, length), dropout_key, ids)
        return flat.reshape(b, n, -1)

    def _loss_options(self, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        options = {}
        if self.loss_config.mask_duplicates and "query_ids" in batch:
            options.update(query_ids=batch["query_ids"], document_ids=batch["document_ids"])
            if "negative_ids" in batch:
                options["negative_ids"] = batch["negative_ids"]
        return options

    def logit_scale(self, params: PyTree) -> jax.Array:
        """The (clamped) logit scale of `params['log_scale']`: a float32 scalar, or one per
        Matryoshka size."""
        return losses.logit_scale_from_log(
            params["log_scale"],
            max_scale=self.loss_config.max_logit_scale,
            trainable=self.loss_config.learn_logit_scale,
        )

    def _loss(self, embeddings, log_scale, batch):
        """`(loss, metrics)` of embedded sides `[queries [B, D], documents [B, D]]` (and hard
        negatives `[B, N, D]`), the metrics read off the loss's own logits."""
        queries, documents, *negatives = embeddings
        return losses.sharded_symmetric_info_nce_with_metrics(
            queries,
            documents,
            logit_scale=self.logit_scale({"log_scale": log_scale}),
            mesh=self.mesh,
            batch_axes=partitioning.BATCH_AXES,
            chunk_size=self.loss_config.chunk_size,
            negatives=negatives[0] if negatives else None,
            matryoshka_dims=self.loss_config.matryoshka_dims,
            matryoshka_weights=self.loss_config.matryoshka_weights,
            **self._loss_options(batch),
        )

    def _row_ids(self, batch_size: int) -> jax.Array:
        """The global row index of every pair, sharded like the batch (seeds dropout)."""
        ids = jnp.arange(batch_size, dtype=jnp.int32)
        return jax.lax.with_sharding_constraint(ids, partitioning.batch_sharding(self.mesh))

    def _sides_and_keys(self, batch, dropout_key) -> list[tuple[jax.Array, jax.Array]]:
        """`(tokens, dropout key)` of each side; a side's key is the same with or without
        the sides after it."""
        return list(zip(_sides(batch), jax.random.split(dropout_key, 3)))

    def loss_and_metrics(self, params, batch, dropout_key):
        """`(loss, metrics)` of a global batch: symmetric InfoNCE over every pair, and the
        contrastive metrics of `losses.contrastive_metrics` from the same logits."""
        ids = self._row_ids(batch["queries"].shape[0])
        embeddings = [
            self._encode_side(params["encoder"], tokens, key, ids)
            for tokens, key in self._sides_and_keys(batch, dropout_key)
        ]
        return self._loss(embeddings, params["log_scale"], batch)

    def loss_and_grads(self, params, batch, dropout_key):
        """`(loss, metrics, grads)` of a batch, plain or gradient-cached.

        Both give the same loss, metrics and gradients (up to float32 summation order): the
        cached form only changes how much of the batch is in memory at once.
        """
        if self.grad_cache_chunk_size is None:
            grad_fn = jax.value_and_grad(self.loss_and_metrics, has_aux=True)
            (loss, metrics), grads = grad_fn(params, batch, dropout_key)
            return loss, metrics, grads
        (loss, metrics), (encoder_grads, log_scale_grad) = grad_cache.value_and_grad(
            self._encode_side,
            lambda embeddings, log_scale: self._loss(embeddings, log_scale, batch),
            params["encoder"],
            params["log_scale"],
            self._sides_and_keys(batch, dropout_key),
            self._row_ids(batch["queries"].shape[0]),
            mesh=self.mesh,
            chunk_size=self.grad_cache_chunk_size,
        )
        return loss, metrics, {"encoder": encoder_grads, "log_scale": log_scale_grad}

    # -- step ----------------------------------------------------------------------------
    def _train_step(self, state: TrainState, batch: dict[str, jax.Array]):
        dropout_key = jax.random.fold_in(jax.random.key(self.dropout_seed), state.step)
        loss, metrics, grads = self.loss_and_grads(state.params, batch, dropout_key)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = self._clamp_log_scale(optax.apply_updates(state.params, updates))
        grad_norm, update_norm = optax.global_norm(grads), optax.global_norm(updates)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(update_norm)
        # A non-finite step leaves parameters and optimizer state as they were, so no state
        # that a checkpoint can hold is ever non-finite; the host decides whether to stop.
        params, opt_state = jax.tree.map(
            lambda new, old: jnp.where(finite, new, old),
            (params, opt_state),
            (state.params, state.opt_state),
        )
        metrics = {
            **metrics,
            "loss": loss,
            "grad_norm": grad_norm,
            "param_norm": optax.global_norm(state.params["encoder"]),
            "update_norm": update_norm,
            "nonfinite": (~finite).astype(jnp.float32),
        }
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    def _clamp_log_scale(self, params: PyTree) -> PyTree:
        """`params` with `log_scale <= log(max_logit_scale)`: clamped as a parameter (as CLIP
        does after each step), not only in the forward pass, where a value above the bound
        would get a zero gradient and the temperature could never come back down."""
        bound = np.float32(np.log(self.loss_config.max_logit_scale))
        return {**params, "log_scale": jnp.minimum(params["log_scale"], bound)}

    @functools.cached_property
    def train_step(self):
        """`(state, global_batch) -> (state, metrics)`, jitted with explicit shardings.

        `metrics` holds the replicated float32 scalars named in `STEP_METRICS` (and, with
        Matryoshka sizes, `loss@<size>` and `logit_scale@<size>`), of the
        batch under the parameters the step started from. A step whose loss, gradient norm
        or update norm is not finite (`metrics['nonfinite'] == 1`) returns the parameters
        and optimizer state unchanged, with the step counted. The state is donated: its buffers are
        reused for the new state.
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
