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
      chunk_size: score the loss this many rows per device at a time, so the logits take
        `O(chunk_size * global_batch)` memory (see `losses.symmetric_info_nce`); None
        scores all local rows at once. The result is the same either way.
    """

    initial_logit_scale: float = 1.0 / 0.07
    max_logit_scale: float = 100.0
    learn_logit_scale: bool = True
    mask_duplicates: bool = True
    chunk_size: int | None = None


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


def _sides(batch: dict[str, jax.Array]) -> tuple:
    """The token arrays encoded per step: queries, documents, hard negatives (or None)."""
    return batch["queries"], batch["documents"], batch.get("negatives")


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
        (GradCache, Gao et al. 2021) with this many pairs (global, over all devices) per
        encoder pass, so activation memory is that of a `grad_cache_chunk_size` batch
        whatever the global batch. Must divide the global batch and be a multiple of the
        number of batch shards. Loss and gradients equal the plain step's.
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
        return losses.logit_scale_from_log(
            params["log_scale"],
            max_scale=self.loss_config.max_logit_scale,
            trainable=self.loss_config.learn_logit_scale,
        )

    def _loss(self, queries, documents, negatives, log_scale, batch) -> jax.Array:
        """The global loss of embedded pairs (the scale is a function of `log_scale`);
        `negatives` `[B, N, D]` are the hard negatives' embeddings, or None."""
        return losses.sharded_symmetric_info_nce(
            queries,
            documents,
            logit_scale=self.logit_scale({"log_scale": log_scale}),
            mesh=self.mesh,
            batch_axes=partitioning.BATCH_AXES,
            chunk_size=self.loss_config.chunk_size,
            negatives=negatives,
            **self._loss_options(batch),
        )

    def _row_ids(self, batch_size: int) -> jax.Array:
        """The global row index of every pair, sharded like the batch (seeds dropout)."""
        ids = jnp.arange(batch_size, dtype=jnp.int32)
        return jax.lax.with_sharding_constraint(ids, partitioning.batch_sharding(self.mesh))

    def loss_and_embeddings(self, params, batch, dropout_key):
        """Global symmetric InfoNCE of a batch; also returns the embeddings of every side
        (`(queries, documents, negatives)`, negatives None without hard negatives)."""
        ids = self._row_ids(batch["queries"].shape[0])
        embeddings = tuple(
            None if tokens is None else self._encode_side(params["encoder"], tokens, key, ids)
            for tokens, key in zip(_sides(batch), jax.random.split(dropout_key, 3))
        )
        loss = self._loss(*embeddings, params["log_scale"], batch)
        return loss, embeddings

    def loss_and_grads(self, params, batch, dropout_key):
        """`(loss, (queries, documents), grads)` of a batch, plain or gradient-cached.

        Both give the same loss and gradients (up to float32 summation order): the
        cached form only changes how much of the batch is in memory at once.
        """
        if self.grad_cache_chunk_size is None:
            grad_fn = jax.value_and_grad(self.loss_and_embeddings, has_aux=True)
            (loss, embeddings), grads = grad_fn(params, batch, dropout_key)
            return loss, embeddings, grads
        return self._grad_cached_loss_and_grads(params, batch, dropout_key)

    # -- gradient caching ------------------------------------------------------------------
    def _to_chunks(self, x: jax.Array) -> jax.Array:
        """`[B, ...]` split over n batch shards -> `[c, chunk, ...]`, every chunk spread
        evenly over all n shards (its rows are each shard's next `chunk / n` local rows).

        Shard i holds rows `[i*b, (i+1)*b)`; chunk j takes rows `i*b + j*k + [0, k)` of
        every shard i (`k = chunk / n`), so the reshapes move no data between devices.
        """
        n, chunk = partitioning.num_batch_shards(self.mesh), self.grad_cache_chunk_size
        k, rest = chunk // n, x.shape[1:]
        x = x.reshape(n, -1, k, *rest).swapaxes(0, 1).reshape(-1, chunk, *rest)
        spec = jax.sharding.PartitionSpec(None, partitioning.BATCH_AXES)
        return jax.lax.with_sharding_constraint(x, jax.sharding.NamedSharding(self.mesh, spec))

    def _from_chunks(self, x: jax.Array) -> jax.Array:
        """The inverse of `_to_chunks`: `[c, chunk, ...]` -> `[B, ...]`."""
        n, chunk = partitioning.num_batch_shards(self.mesh), self.grad_cache_chunk_size
        rest = x.shape[2:]
        x = x.reshape(x.shape[0], n, chunk // n, *rest).swapaxes(0, 1).reshape(-1, *rest)
        return jax.lax.with_sharding_constraint(x, partitioning.batch_sharding(self.mesh))

    def _check_grad_cache_chunk(self, batch_size: int) -> None:
        n, chunk = partitioning.num_batch_shards(self.mesh), self.grad_cache_chunk_size
        if chunk <= 0 or chunk % n or batch_size % chunk:
            raise ValueError(
                f"grad_cache_chunk_size={chunk} must be a positive multiple of the {n} batch "
                f"shards that divides the global batch of {batch_size}"
            )

    def _grad_cached_loss_and_grads(self, params, batch, dropout_key):
        """GradCache: embed without activations, differentiate the loss w.r.t. the
        embeddings, then re-encode chunk by chunk and backpropagate the cached gradients.

        Dropout masks depend only on (key, row id), so the second pass replays the first's.
        """
        batch_size = batch["queries"].shape[0]
        self._check_grad_cache_chunk(batch_size)
        encoder_params = params["encoder"]
        id_chunks = self._to_chunks(self._row_ids(batch_size))
        sides = [
            (self._to_chunks(tokens), key)
            for tokens, key in zip(_sides(batch), jax.random.split(dropout_key, 3))
            if tokens is not None
        ]

        # 1. Embeddings of the whole batch, one chunk alive at a time, nothing kept for grad.
        def embed(token_chunks, key):
            def encode_chunk(_, chunk):
                tokens, ids = chunk
                return None, self._encode_side(encoder_params, tokens, key, ids)

            _, embeddings = jax.lax.scan(encode_chunk, None, (token_chunks, id_chunks))
            return self._from_chunks(embeddings)

        embeddings = [embed(tokens, key) for tokens, key in sides]
        negatives = embeddings[2] if len(embeddings) == 3 else None

        # 2. The loss and its gradient w.r.t. the embeddings (and the temperature).
        loss, (*side_grads, log_scale_grad) = jax.value_and_grad(
            lambda q, d, n, s: self._loss(q, d, n, s, batch), argnums=(0, 1, 2, 3)
        )(embeddings[0], embeddings[1], negatives, params["log_scale"])

        # 3. Re-encode each chunk and pull its cached embedding gradient back to parameters.
        def backprop(total, token_chunks, key, cotangents):
            def backprop_chunk(total, chunk):
                tokens, ids, cotangent = chunk
                _, pullback = jax.vjp(
                    lambda p: self._encode_side(p, tokens, key, ids), encoder_params
                )
                return jax.tree.map(jnp.add, total, pullback(cotangent)[0]), None

            chunks = (token_chunks, id_chunks, self._to_chunks(cotangents))
            return jax.lax.scan(backprop_chunk, total, chunks)[0]

        grads = jax.tree.map(jnp.zeros_like, encoder_params)
        for (token_chunks, key), cotangents in zip(sides, side_grads):
            grads = backprop(grads, token_chunks, key, cotangents)
        grads = {"encoder": grads, "log_scale": log_scale_grad}
        return loss, (embeddings[0], embeddings[1], negatives), grads

    def _train_step(self, state: TrainState, batch: dict[str, jax.Array]):
        dropout_key = jax.random.fold_in(jax.random.key(self.dropout_seed), state.step)
        loss, embeddings, grads = self.loss_and_grads(state.params, batch, dropout_key)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        queries, documents, negatives = jax.lax.stop_gradient(embeddings)
        metrics = losses.sharded_contrastive_metrics(
            queries,
            documents,
            logit_scale=self.logit_scale(state.params),
            mesh=self.mesh,
            batch_axes=partitioning.BATCH_AXES,
            chunk_size=self.loss_config.chunk_size,
            negatives=negatives,
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
