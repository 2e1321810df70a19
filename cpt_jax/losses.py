"""Contrastive losses with negatives gathered across every device and host.

Imports only jax and numpy, so that other projects can `import cpt_jax.losses` without
tensorflow, seqio or flax.

The loss of the paper (Neelakantan et al., 2022), for a global batch of B pairs of unit-norm
embeddings `(q_i, d_i)` and a learned scale `s = 1 / temperature`:

    Z[i, j] = s * <q_i, d_j>
    L = 1/B * sum_i 0.5 * ( CE(Z[i, :], i)  +  CE(Z[:, i], i) )

where `CE(z, t) = logsumexp(z) - z[t]`: each query must pick out its document among all B
documents (rows), and each document its query among all B queries (columns).

Across devices (`axis_name` given, inside `jax.shard_map` over the batch axes), each device
holds b = B / n rows. It scores its local queries against the all-gathered documents and its
local documents against the all-gathered queries, so it never materialises more than
`[b, B]` logits; the per-device sums are `psum`-ed and divided by the global B. JAX
differentiates `all_gather` itself (its transpose is `psum_scatter`), so the gradients equal
those of the single-device loss with no hand-written gradient (the bug class of open_clip#616
and tevatron#30). Use `shard_map`'s default `check_vma=True`.

Hard negatives `[b, N, d]` add columns to the query->document direction only; globally the
columns are laid out `[positives (B) | negatives (B*N)]`, the negative block example-major
(example 0's N negatives, then example 1's, ...).

False negatives: pass an id per text (a hash of it); an in-batch negative whose id equals the
positive's is masked out. Never mask by embedding equality (dropout makes identical texts
embed differently).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

AxisName = str | tuple[str, ...] | None


# -- temperature ----------------------------------------------------------------------------
def init_log_scale(scale: float = 1.0 / 0.07) -> jax.Array:
    """The initial learned log-scale (float32 scalar); CLIP starts at 1/0.07."""
    if scale <= 0:
        raise ValueError(f"logit scale must be positive, got {scale}")
    return jnp.asarray(np.log(scale), jnp.float32)


def logit_scale_from_log(
    log_scale: jax.Array, *, max_scale: float = 100.0, trainable: bool = True
) -> jax.Array:
    """`exp(log_scale)` clamped at `max_scale` (CLIP's 100); frozen when not `trainable`.

    The clamp is applied in the forward pass, so a log-scale above `log(max_scale)` gets no
    gradient pushing it further up.
    """
    scale = jnp.exp(jnp.minimum(jnp.asarray(log_scale, jnp.float32), np.log(max_scale)))
    return scale if trainable else jax.lax.stop_gradient(scale)


# -- shared internals ---------------------------------------------------------------------------
class _ScoredBlock(NamedTuple):
    """One device's share of the logits, with masked entries set to -inf.

    rows:    [b, B + B*N] local queries against all documents then all hard negatives.
    columns: [b, B]       local documents against all queries.
    labels:  [b]          global index of each local pair (its positive's column).
    """

    rows: jax.Array
    columns: jax.Array
    labels: jax.Array


def _gather(x, axis_name: AxisName):
    return x if axis_name is None else jax.lax.all_gather(x, axis_name, tiled=True)


def _psum(x, axis_name: AxisName):
    return x if axis_name is None else jax.lax.psum(x, axis_name)


def _dot(a, b):
    """`a @ b.T` accumulated in float32 whatever the input dtype."""
    return jnp.einsum("id,jd->ij", a, b, preferred_element_type=jnp.float32)


def _mask_equal_ids(logits, row_ids, column_ids, labels, column_offset=0):
    """-inf where a column's id equals the row's id, except on the row's own positive."""
    same = row_ids[:, None] == column_ids[None, :]
    columns = column_offset + jnp.arange(column_ids.shape[0])
    same = same & (columns[None, :] != labels[:, None])
    return jnp.where(same, -jnp.inf, logits)


def _score(
    queries,
    documents,
    logit_scale,
    axis_name: AxisName,
    negatives=None,
    query_ids=None,
    document_ids=None,
    negative_ids=None,
) -> _ScoredBlock:
    b = queries.shape[0]
    if documents.shape[0] != b:
        raise ValueError(f"queries {queries.shape} and documents {documents.shape} differ in rows")
    offset = 0 if axis_name is None else jax.lax.axis_index(axis_name) * b
    labels = offset + jnp.arange(b)
    scale = jnp.asarray(logit_scale, jnp.float32)
    all_queries = _gather(queries, axis_name)
    all_documents = _gather(documents, axis_name)

    rows = scale * _dot(queries, all_documents)
    columns = scale * _dot(documents, all_queries)
    if (query_ids is None) != (document_ids is None):
        raise ValueError("pass both query_ids and document_ids, or neither")
    if document_ids is not None:
        rows = _mask_equal_ids(rows, document_ids, _gather(document_ids, axis_name), labels)
        columns = _mask_equal_ids(columns, query_ids, _gather(query_ids, axis_name), labels)

    if negatives is not None:
        if negatives.ndim != 3 or negatives.shape[0] != b:
            raise ValueError(f"negatives must be [b={b}, N, d], got {negatives.shape}")
        all_negatives = _gather(negatives, axis_name)  # [B, N, d], example-major
        flat = all_negatives.reshape(-1, all_negatives.shape[-1])
        negative_logits = scale * _dot(queries, flat)
        if negative_ids is not None:
            if document_ids is None:
                raise ValueError("negative_ids needs document_ids to compare against")
            flat_ids = _gather(negative_ids, axis_name).reshape(-1)
            same = document_ids[:, None] == flat_ids[None, :]
            negative_logits = jnp.where(same, -jnp.inf, negative_logits)
        rows = jnp.concatenate([rows, negative_logits], axis=1)
    elif negative_ids is not None:
        raise ValueError("negative_ids given without negatives")
    return _ScoredBlock(rows, columns, labels)


def _cross_entropy(logits, labels):
    """Per-row `logsumexp(z) - z[label]` in float32; `[b, C], [b] -> [b]`."""
    positive = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    return jax.nn.logsumexp(logits, axis=1) - positive


# -- public losses ------------------------------------------------------------------------------
def symmetric_info_nce(
    queries: jax.Array,
    documents: jax.Array,
    *,
    logit_scale: jax.Array | float,
    axis_name: AxisName = None,
    negatives: jax.Array | None = None,
    query_ids: jax.Array | None = None,
    document_ids: jax.Array | None = None,
    negative_ids: jax.Array | None = None,
) -> jax.Array:
    """Symmetric InfoNCE with in-batch (and optional hard) negatives; a float32 scalar.

    Args:
      queries: `[b, d]` unit-norm query embeddings (any float dtype; logits are float32).
      documents: `[b, d]` unit-norm document embeddings; `documents[i]` is `queries[i]`'s
        positive.
      logit_scale: the scale `s` (1 / temperature), e.g. from `logit_scale_from_log`.
      axis_name: None on one device or for global arrays under jit. Inside `jax.shard_map`,
        the mesh axis name (or tuple of names) over which the batch is split: the inputs are
        then the local shards and the result is the global loss on every device.
      negatives: optional `[b, N, d]` hard negatives for each query (query->document
        direction only; global column layout `[positives (B) | negatives (B*N)]`).
      query_ids, document_ids: optional `[b]` integer ids of the texts (e.g. a hash). An
        in-batch document with the same id as row i's positive is masked for row i; likewise
        queries in the document->query direction.
      negative_ids: optional `[b, N]` ids of the hard negatives, masked where they equal
        the row's `document_ids`.

    Returns:
      `mean over the global batch of 0.5 * (CE over rows + CE over columns)`.

    Example:
      >>> q = d = jnp.eye(4)
      >>> float(symmetric_info_nce(q, d, logit_scale=100.0)) < 1e-6
      True
    """
    block = _score(
        queries,
        documents,
        logit_scale,
        axis_name,
        negatives,
        query_ids,
        document_ids,
        negative_ids,
    )
    per_pair = 0.5 * (
        _cross_entropy(block.rows, block.labels) + _cross_entropy(block.columns, block.labels)
    )
    total = _psum(jnp.sum(per_pair), axis_name)
    count = _psum(jnp.float32(queries.shape[0]), axis_name)
    return total / count


def contrastive_metrics(
    queries: jax.Array,
    documents: jax.Array,
    *,
    logit_scale: jax.Array | float,
    axis_name: AxisName = None,
    negatives: jax.Array | None = None,
    query_ids: jax.Array | None = None,
    document_ids: jax.Array | None = None,
    negative_ids: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """Health metrics of a contrastive batch, global over devices like the loss.

    Returns float32 scalars:
      accuracy_q2d: fraction of queries whose top-scoring column (documents and hard
        negatives, after masking) is their positive.
      accuracy_d2q: fraction of documents whose top-scoring query is their own.
      positive_logit_mean: mean of `s * <q_i, d_i>`.
      negative_logit_mean: mean of the unmasked off-positive query->document logits.
      logit_scale: `s`.
    """
    block = _score(
        queries,
        documents,
        logit_scale,
        axis_name,
        negatives,
        query_ids,
        document_ids,
        negative_ids,
    )
    b = queries.shape[0]
    rows, labels = block.rows, block.labels
    columns_index = jnp.arange(rows.shape[1])
    positive = jnp.take_along_axis(rows, labels[:, None], axis=1)[:, 0]
    is_negative = (columns_index[None, :] != labels[:, None]) & jnp.isfinite(rows)
    sums = {
        "accuracy_q2d": jnp.sum(jnp.argmax(rows, axis=1) == labels, dtype=jnp.float32),
        "accuracy_d2q": jnp.sum(jnp.argmax(block.columns, axis=1) == labels, dtype=jnp.float32),
        "positive_logit_sum": jnp.sum(positive),
        "negative_logit_sum": jnp.sum(jnp.where(is_negative, rows, 0.0)),
        "negative_count": jnp.sum(is_negative, dtype=jnp.float32),
        "count": jnp.float32(b),
    }
    sums = _psum(sums, axis_name)
    return {
        "accuracy_q2d": sums["accuracy_q2d"] / sums["count"],
        "accuracy_d2q": sums["accuracy_d2q"] / sums["count"],
        "positive_logit_mean": sums["positive_logit_sum"] / sums["count"],
        "negative_logit_mean": sums["negative_logit_sum"] / jnp.maximum(sums["negative_count"], 1),
        "logit_scale": jnp.asarray(logit_scale, jnp.float32),
    }


# -- global arrays on a mesh --------------------------------------------------------------------
def _on_mesh(fn, queries, documents, logit_scale, mesh: Mesh, batch_axes, options):
    """Runs `fn` under `jax.shard_map` with the batch split over `batch_axes`."""
    batch_axes = tuple(batch_axes) if isinstance(batch_axes, Sequence) else (batch_axes,)
    batch_spec = P(batch_axes)
    options = {k: v for k, v in options.items() if v is not None}

    def local(q, d, scale, opts):
        return fn(q, d, logit_scale=scale, axis_name=batch_axes, **opts)

    return jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(batch_spec, batch_spec, P(), batch_spec),
        out_specs=P(),
        check_vma=True,
    )(queries, documents, jnp.asarray(logit_scale, jnp.float32), options)


def sharded_symmetric_info_nce(
    queries: jax.Array,
    documents: jax.Array,
    *,
    logit_scale: jax.Array | float,
    mesh: Mesh,
    batch_axes: str | Sequence[str] = ("data",),
    **options,
) -> jax.Array:
    """`symmetric_info_nce` on global arrays whose batch is split over `batch_axes` of `mesh`.

    Usable inside `jax.jit` and differentiable. Mesh axes not in `batch_axes` (e.g. `model`)
    see the embeddings replicated. `options` are those of `symmetric_info_nce` (negatives and
    ids, batch-sharded like the embeddings).
    """
    return _on_mesh(symmetric_info_nce, queries, documents, logit_scale, mesh, batch_axes, options)


def sharded_contrastive_metrics(
    queries: jax.Array,
    documents: jax.Array,
    *,
    logit_scale: jax.Array | float,
    mesh: Mesh,
    batch_axes: str | Sequence[str] = ("data",),
    **options,
) -> dict[str, jax.Array]:
    """`contrastive_metrics` on global arrays sharded over `batch_axes` of `mesh`."""
    return _on_mesh(contrastive_metrics, queries, documents, logit_scale, mesh, batch_axes, options)
