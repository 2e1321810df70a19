"""Gradient caching (GradCache, Gao et al. 2021): the exact loss gradients of a batch far
larger than the encoder's activations allow.

A contrastive loss couples every pair of the batch with every other (in-batch negatives), so
the batch cannot be split into microbatches whose gradients add up, and accumulating them
would shrink the pool of negatives. The loss reads the encoder's parameters only through the
embeddings, though, so `value_and_grad`:

  1. embeds the whole batch chunk by chunk, keeping no activations for the backward pass;
  2. differentiates the loss w.r.t. the embeddings (`[B, D]` each: cheap);
  3. re-encodes each chunk and pulls its cached embedding gradient back to the parameters
     (a VJP), summing over chunks.

Activation memory is that of one chunk; loss and gradients equal the whole batch's (up to
float32 summation order) provided the re-encoding repeats the first pass exactly: dropout
masks must depend on (key, row id) only, never on how the batch is chunked.

Chunks are spread over every batch shard of the mesh (`to_chunks`), so every device works
on every chunk and the reshapes move no data between devices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from cpt_jax import partitioning

PyTree = Any


def check_chunk_size(chunk_size: int, mesh: Mesh, batch_size: int) -> None:
    """Raises unless `chunk_size` pairs split the global batch into chunks that spread
    evenly over the mesh's batch shards."""
    n = partitioning.num_batch_shards(mesh)
    if chunk_size <= 0 or chunk_size % n or batch_size % chunk_size:
        raise ValueError(
            f"grad_cache_chunk_size={chunk_size} must be a positive multiple of the {n} batch "
            f"shards that divides the global batch of {batch_size}"
        )


def to_chunks(x: jax.Array, mesh: Mesh, chunk_size: int) -> jax.Array:
    """`[B, ...]` split over n batch shards -> `[B / chunk_size, chunk_size, ...]`, every
    chunk spread evenly over all n shards (its rows are each shard's next `chunk_size / n`
    local rows).

    Shard i holds rows `[i*b, (i+1)*b)`; chunk j takes rows `i*b + j*k + [0, k)` of every
    shard i (`k = chunk_size / n`), so the reshapes move no data between devices.
    """
    n = partitioning.num_batch_shards(mesh)
    k, rest = chunk_size // n, x.shape[1:]
    x = x.reshape(n, -1, k, *rest).swapaxes(0, 1).reshape(-1, chunk_size, *rest)
    sharding = NamedSharding(mesh, PartitionSpec(None, partitioning.BATCH_AXES))
    return jax.lax.with_sharding_constraint(x, sharding)


def from_chunks(x: jax.Array, mesh: Mesh) -> jax.Array:
    """The inverse of `to_chunks`: `[c, chunk_size, ...]` -> `[B, ...]`, batch-sharded."""
    n, chunk_size, rest = partitioning.num_batch_shards(mesh), x.shape[1], x.shape[2:]
    x = x.reshape(x.shape[0], n, chunk_size // n, *rest).swapaxes(0, 1).reshape(-1, *rest)
    return jax.lax.with_sharding_constraint(x, partitioning.batch_sharding(mesh))


def value_and_grad(
    encode: Callable[[PyTree, jax.Array, jax.Array, jax.Array], jax.Array],
    loss: Callable[[list[jax.Array], PyTree], tuple[jax.Array, Any]],
    encoder_params: PyTree,
    loss_params: PyTree,
    sides: Sequence[tuple[jax.Array, jax.Array]],
    row_ids: jax.Array,
    *,
    mesh: Mesh,
    chunk_size: int,
) -> tuple[tuple[jax.Array, Any], tuple[PyTree, PyTree]]:
    """`jax.value_and_grad(has_aux=True)` of `loss([encode(side) for side in sides], ...)`
    w.r.t. `(encoder_params, loss_params)`, encoding `chunk_size` pairs at a time.

    Args:
      encode: `(encoder_params, tokens [c, ...], key, row_ids [c]) -> embeddings [c, ...]`
        for any c rows; it must give a row the same result whatever rows come with it (its
        dropout seeded by the row id, not by the position in the chunk).
      loss: `(embeddings of every side, loss_params) -> (scalar loss, aux)`.
      encoder_params: the encoder's parameters (differentiated through the re-encoding).
      loss_params: the loss's own parameters (e.g. the log temperature).
      sides: `(tokens [B, ...], dropout key)` of each side encoded (queries, documents, ...).
      row_ids: `[B]` the global index of each pair, batch-sharded; passed on to `encode`.
      mesh: the mesh whose batch shards the chunks are spread over.
      chunk_size: pairs per encoder pass (global, over all devices); see
        `check_chunk_size`.

    Returns:
      `((loss, aux), (encoder_grads, loss_param_grads))`, as `jax.value_and_grad` of the
      whole batch gives them.
    """
    check_chunk_size(chunk_size, mesh, row_ids.shape[0])
    id_chunks = to_chunks(row_ids, mesh, chunk_size)
    token_chunks = [to_chunks(tokens, mesh, chunk_size) for tokens, _ in sides]
    keys = [key for _, key in sides]

    # 1. Embeddings of the whole batch, one chunk alive at a time, nothing kept for grad.
    def embed(tokens, key):
        def encode_chunk(_, chunk):
            chunk_tokens, ids = chunk
            return None, encode(encoder_params, chunk_tokens, key, ids)

        return from_chunks(jax.lax.scan(encode_chunk, None, (tokens, id_chunks))[1], mesh)

    embeddings = [embed(tokens, key) for tokens, key in zip(token_chunks, keys)]

    # 2. The loss and its gradient w.r.t. the embeddings (and the loss's own parameters).
    (value, aux), (embedding_grads, loss_param_grads) = jax.value_and_grad(
        loss, argnums=(0, 1), has_aux=True
    )(embeddings, loss_params)

    # 3. Re-encode each chunk and pull its cached embedding gradient back to parameters.
    def backprop(total, tokens, key, cotangents):
        def backprop_chunk(total, chunk):
            chunk_tokens, ids, cotangent = chunk
            _, pullback = jax.vjp(lambda p: encode(p, chunk_tokens, key, ids), encoder_params)
            return jax.tree.map(jnp.add, total, pullback(cotangent)[0]), None

        chunks = (tokens, id_chunks, to_chunks(cotangents, mesh, chunk_size))
        return jax.lax.scan(backprop_chunk, total, chunks)[0]

    encoder_grads = jax.tree.map(jnp.zeros_like, encoder_params)
    for tokens, key, cotangents in zip(token_chunks, keys, embedding_grads):
        encoder_grads = backprop(encoder_grads, tokens, key, cotangents)
    return (value, aux), (encoder_grads, loss_param_grads)
