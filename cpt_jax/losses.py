"""Contrastive losses with negatives gathered across every device and host.

Imports only jax, numpy and the standard library, so that other projects can
`import cpt_jax.losses` without tensorflow, seqio or flax.

The loss of the paper (Neelakantan et al., 2022), for a global batch of B pairs of unit-norm
embeddings `(q_i, d_i)` and a learned scale `s = 1 / temperature`:

    Z[i, j] = s * <q_i, d_j>
    L = 1/B * sum_i 0.5 * ( CE(Z[i, :], i)  +  CE(Z[:, i], i) )

where `CE(z, t) = logsumexp(z) - z[t]`: each query must pick out its document among all B
documents (rows, query->document), and each document its query among all B queries
(columns, document->query). The two directions are averaged, not summed (t5x_retrieval sums
them, which silently doubles the learning rate).

Across devices (`axis_name` given, inside `jax.shard_map` over the batch axes), each device
holds b = B / n rows. It scores its local queries against the all-gathered documents and its
local documents against the all-gathered queries, so it never materialises more than
`[b, B]` logits; the per-device sums are `psum`-ed and divided by the global B. JAX
differentiates `all_gather` itself (its transpose is `psum_scatter`), so the gradients equal
those of the single-device loss with no hand-written gradient (the bug class of open_clip#616
and tevatron#30). `sharded_symmetric_info_nce` does this for global arrays on a mesh.

Hard negatives `[b, N, d]` add columns to the query->document direction only; globally the
columns are laid out `[positives (B) | negatives (B*N)]`, the negative block example-major
(example 0's N negatives, then example 1's, ...), so row i's label is always column i.

False negatives: pass an integer id per text (e.g. a 31-bit hash of it). In-batch pair j is
masked out of row i's candidates (its logit set to -inf) when pair j is another positive of
row i: in the query->document direction when `document_ids[j] == document_ids[i]` (the same
text) or `query_ids[j] == query_ids[i]` (a query with several positives, as in supervised
data); in the document->query direction when either id matches likewise. Hard negatives are
masked when their id equals the row's positive document's. Never mask by embedding equality
(dropout makes identical texts embed differently).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

AxisName = str | tuple[str, ...] | None

__all__ = [
    "contrastive_metrics",
    "init_log_scale",
    "logit_scale_from_log",
    "sharded_contrastive_metrics",
    "sharded_symmetric_info_nce",
    "sharded_symmetric_info_nce_with_metrics",
    "symmetric_info_nce",
    "symmetric_info_nce_with_metrics",
]


# -- temperature ----------------------------------------------------------------------------
def init_log_scale(scale: float = 1.0 / 0.07) -> jax.Array:
    """The initial learned log-scale: a float32 scalar `log(scale)`.

    CLIP starts at `scale = 1 / 0.07` (temperature 0.07). Store this value as the trainable
    parameter and turn it into a scale with `logit_scale_from_log`.

    Example:
      >>> float(jnp.exp(init_log_scale(20.0)))  # doctest: +ELLIPSIS
      20.0...
    """
    if scale <= 0:
        raise ValueError(f"logit scale must be positive, got {scale}")
    return jnp.asarray(np.log(scale), jnp.float32)


def logit_scale_from_log(
    log_scale: jax.Array | float, *, max_scale: float = 100.0, trainable: bool = True
) -> jax.Array:
    """The logit scale `s = exp(min(log_scale, log(max_scale)))`, a float32 scalar.

    The clamp (CLIP's `s <= 100`) gives a log-scale above `log(max_scale)` a zero gradient;
    the trainer clamps the parameter after each update, so it never stays there. With
    `trainable=False` the scale is wrapped in `stop_gradient` (a frozen temperature, as
    Nomic's fixed 50 or t5x_retrieval's fixed 100).

    Args:
      log_scale: scalar log of the scale (any float dtype; computed in float32).
      max_scale: upper bound on the scale.
      trainable: whether gradients flow back into `log_scale`.

    Example:
      >>> float(logit_scale_from_log(jnp.log(500.0)))  # doctest: +ELLIPSIS
      100.0...
    """
    log_scale = jnp.asarray(log_scale, jnp.float32)
    scale = jnp.exp(jnp.minimum(log_scale, np.float32(np.log(max_scale))))
    return scale if trainable else jax.lax.stop_gradient(scale)


# -- shared internals ---------------------------------------------------------------------------
class _Columns(NamedTuple):
    """Everything a block of local rows is scored against, gathered over all devices.

    queries, documents: [B, d] all queries / all documents.
    negatives:          [B*N, d] all hard negatives, example-major, or None.
    query_ids, document_ids: [B] or None;  negative_ids: [B*N] or None.
    count:              int, the global batch size B (static).
    """

    queries: jax.Array
    documents: jax.Array
    negatives: jax.Array | None
    query_ids: jax.Array | None
    document_ids: jax.Array | None
    negative_ids: jax.Array | None
    count: int


class _Rows(NamedTuple):
    """A block of this device's pairs (every leaf has the same leading size r <= b)."""

    queries: jax.Array  # [r, d]
    documents: jax.Array  # [r, d]
    labels: jax.Array  # [r] global index of each pair: its positive's column / row
    query_ids: jax.Array | None  # [r]
    document_ids: jax.Array | None  # [r]


class _ScoredBlock(NamedTuple):
    """The logits of a block of r local rows, masked entries set to -inf.

    rows:    [r, B + B*N] the block's queries against all documents, then all hard negatives.
    columns: [r, B]       the block's documents against all queries.
    labels:  [r]          global index of each pair (its positive's column / row).
    """

    rows: jax.Array
    columns: jax.Array
    labels: jax.Array


def _gather(x, axis_name: AxisName):
    """All-gathers the batch (leading) dimension; the identity without an axis."""
    return x if axis_name is None else jax.lax.all_gather(x, axis_name, tiled=True)


def _psum(x, axis_name: AxisName):
    return x if axis_name is None else jax.lax.psum(x, axis_name)


def _dot(a, b):
    """`a @ b.T` accumulated and returned in float32, whatever the input dtype."""
    return jnp.einsum("id,jd->ij", a, b, preferred_element_type=jnp.float32)


def _mask_same_ids(logits, own_ids, candidate_ids, positives=None):
    """-inf where a candidate's id equals the row's own id, except on the row's positive.

    `logits [r, C]`, `own_ids [r]`, `candidate_ids [C]`, `positives [r]` (global column index
    of each row's positive, never masked; None when no candidate is a positive).
    """
    same = own_ids[:, None] == candidate_ids[None, :]
    if positives is not None:
        same &= jnp.arange(candidate_ids.shape[0])[None, :] != positives[:, None]
    return jnp.where(same, -jnp.inf, logits)


def _prepare(
    queries,
    documents,
    axis_name: AxisName,
    negatives=None,
    query_ids=None,
    document_ids=None,
    negative_ids=None,
) -> tuple[_Rows, _Columns]:
    """Validates the inputs, gathers the columns and labels this device's rows."""
    if queries.ndim != 2 or documents.shape != queries.shape:
        raise ValueError(
            f"queries {queries.shape} and documents {documents.shape} must be the same [b, d]"
        )
    b, dim = queries.shape
    if negatives is not None:
        if negatives.ndim != 3 or negatives.shape[0] != b or negatives.shape[2] != dim:
            raise ValueError(f"negatives must be [b={b}, N, d={dim}], got {negatives.shape}")
        if negative_ids is not None:
            if document_ids is None:
                raise ValueError("negative_ids needs document_ids to compare against")
            if negative_ids.shape != negatives.shape[:2]:
                raise ValueError(
                    f"negative_ids must be {negatives.shape[:2]}, got {negative_ids.shape}"
                )
    elif negative_ids is not None:
        raise ValueError("negative_ids given without negatives")

    if axis_name is None:
        offset, count = 0, b
    else:
        # The linear index over (a tuple of) axes, in the order all_gather(tiled=True) uses.
        offset, count = jax.lax.axis_index(axis_name) * b, b * jax.lax.axis_size(axis_name)
    maybe_gather = lambda x: None if x is None else _gather(x, axis_name)
    # Hard negatives: gather the whole [B, N, d] block, then flatten example-major, so that
    # they follow all B positives (not interleaved per example or per device).
    columns = _Columns(
        queries=_gather(queries, axis_name),
        documents=_gather(documents, axis_name),
        negatives=None if negatives is None else _gather(negatives, axis_name).reshape(-1, dim),
        query_ids=maybe_gather(query_ids),
        document_ids=maybe_gather(document_ids),
        negative_ids=None if negative_ids is None else _gather(negative_ids, axis_name).reshape(-1),
        count=count,
    )
    rows = _Rows(queries, documents, offset + jnp.arange(b), query_ids, document_ids)
    return rows, columns


def _score(block: _Rows, columns: _Columns, scale) -> _ScoredBlock:
    """The logits of a block of local rows against all columns: `[r, B + B*N]`, `[r, B]`."""
    rows = scale * _dot(block.queries, columns.documents)
    cols = scale * _dot(block.documents, columns.queries)
    if block.document_ids is not None:
        rows = _mask_same_ids(rows, block.document_ids, columns.document_ids, block.labels)
        # d_i's own text is also the positive of every pair sharing it: their queries too.
        cols = _mask_same_ids(cols, block.document_ids, columns.document_ids, block.labels)
    if block.query_ids is not None:
        cols = _mask_same_ids(cols, block.query_ids, columns.query_ids, block.labels)
        # A query with several positives (several pairs in the batch): all are positives.
        rows = _mask_same_ids(rows, block.query_ids, columns.query_ids, block.labels)
    if columns.negatives is not None:
        negative_logits = scale * _dot(block.queries, columns.negatives)
        if columns.negative_ids is not None:
            negative_logits = _mask_same_ids(
                negative_logits, block.document_ids, columns.negative_ids
            )
        rows = jnp.concatenate([rows, negative_logits], axis=1)
    return _ScoredBlock(rows, cols, block.labels)


def _sum_over_row_blocks(fn: Callable, rows: _Rows, chunk_size: int | None):
    """`fn(rows)` for a function that sums over rows, computed `chunk_size` rows at a time.

    `fn` maps a `_Rows` block to a pytree of sums. Blocks run in a `lax.scan` whose body is
    rematerialised (`jax.checkpoint`), so only one block's `[chunk_size, B]` logits are
    alive at a time, forward and backward. A last partial block is scored on its own.
    """
    b = rows.queries.shape[0]
    if chunk_size is None or chunk_size >= b:
        return fn(rows)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of rows, got {chunk_size}")
    num_blocks, rest = divmod(b, chunk_size)
    full = num_blocks * chunk_size
    blocks = jax.tree.map(lambda x: x[:full].reshape(num_blocks, chunk_size, *x.shape[1:]), rows)
    block_fn = jax.checkpoint(fn, prevent_cse=False)

    def body(total, block):
        return jax.tree.map(jnp.add, total, block_fn(block)), None

    # The first block starts the sum (rather than zeros, which would not carry the
    # device-varying type that shard_map's check_vma expects of the scan carry).
    total = block_fn(jax.tree.map(lambda x: x[0], blocks))
    total, _ = jax.lax.scan(body, total, jax.tree.map(lambda x: x[1:], blocks))
    if rest:
        total = jax.tree.map(jnp.add, total, fn(jax.tree.map(lambda x: x[full:], rows)))
    return total


def _cross_entropy(logits, labels):
    """Per-row `logsumexp(z) - z[label]` in float32; `[r, C], [r] -> [r]`."""
    positive = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    return jax.nn.logsumexp(logits, axis=1) - positive


def _loss_sum(scored: _ScoredBlock) -> jax.Array:
    """The block's summed cross-entropies, both directions (halved and averaged later)."""
    return jnp.sum(
        _cross_entropy(scored.rows, scored.labels) + _cross_entropy(scored.columns, scored.labels)
    )


def _metric_sums(scored: _ScoredBlock) -> dict[str, jax.Array]:
    """The block's sums behind `contrastive_metrics` (no gradient flows through them)."""
    scored = jax.lax.stop_gradient(scored)
    logits, labels = scored.rows, scored.labels
    positive = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    is_negative = (jnp.arange(logits.shape[1])[None, :] != labels[:, None]) & jnp.isfinite(logits)
    return {
        "accuracy_q2d": jnp.sum(jnp.argmax(logits, axis=1) == labels, dtype=jnp.float32),
        "accuracy_d2q": jnp.sum(jnp.argmax(scored.columns, axis=1) == labels, dtype=jnp.float32),
        "positive_logit_sum": jnp.sum(positive),
        "negative_logit_sum": jnp.sum(jnp.where(is_negative, logits, 0.0)),
        "negative_count": jnp.sum(is_negative, dtype=jnp.float32),
    }


def _metrics_of_sums(sums: dict[str, jax.Array], count: int, scale) -> dict[str, jax.Array]:
    """`contrastive_metrics`' means of the global `_metric_sums` of `count` pairs."""
    return {
        "accuracy_q2d": sums["accuracy_q2d"] / count,
        "accuracy_d2q": sums["accuracy_d2q"] / count,
        "positive_logit_mean": sums["positive_logit_sum"] / count,
        "negative_logit_mean": sums["negative_logit_sum"] / jnp.maximum(sums["negative_count"], 1),
        "logit_scale": jax.lax.stop_gradient(scale),
    }


def _global_sums(
    block_sums: Callable, logit_scale, chunk_size, queries, documents, axis_name, *ids
):
    """`block_sums(scored block)` summed over every row of the global batch (all devices),
    scored `chunk_size` local rows at a time; returns `(sums, B, scale)`. `ids`: the
    negatives and the three ids, in `_prepare`'s order."""
    rows, columns = _prepare(queries, documents, axis_name, *ids)
    scale = jnp.asarray(logit_scale, jnp.float32)
    total = _sum_over_row_blocks(
        lambda block: block_sums(_score(block, columns, scale)), rows, chunk_size
    )
    return _psum(total, axis_name), columns.count, scale


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
    chunk_size: int | None = None,
) -> jax.Array:
    """Symmetric InfoNCE with in-batch (and optional hard) negatives; a float32 scalar.

    With `Z = s * Q @ D.T` over the global batch of B pairs (`[B, B]`), hard negatives
    appended as extra query->document columns `Zn = s * Q @ Neg.T` (`[B, B*N]`):

        L = 1/B * sum_i 0.5 * ( logsumexp([Z[i, :], Zn[i, :]]) - Z[i, i]
                              + logsumexp(Z[:, i])              - Z[i, i] )

    with masked entries (false negatives) removed from the logsumexps.

    Args:
      queries: `[b, d]` unit-norm query embeddings (any float dtype; logits and logsumexp
        are computed in float32).
      documents: `[b, d]` unit-norm document embeddings; `documents[i]` is `queries[i]`'s
        positive.
      logit_scale: the scale `s` (1 / temperature), e.g. from `logit_scale_from_log`.
      axis_name: None on one device, or for global arrays under `jax.jit`. Inside
        `jax.shard_map`, the mesh axis name (or tuple of names) over which the batch is
        split: the inputs are then the local shards (in the order of those axes) and the
        result is the global loss, identical on every device.
      negatives: optional `[b, N, d]` hard negatives of each query. They join the
        query->document direction only: globally its columns are
        `[positives (B) | negatives (B*N)]`, the negatives example-major (example 0's N,
        then example 1's, ...), and every query is scored against every hard negative of
        the batch. The document->query direction stays B documents vs B queries.
      query_ids: optional `[b]` integer ids of the query texts. Pairs i != j with
        `query_ids[i] == query_ids[j]` are each other's positives: masked in both
        directions (the same query text, or one query with several positive documents).
      document_ids: optional `[b]` integer ids of the document texts; pairs with equal
        document ids are masked in both directions likewise.
      negative_ids: optional `[b, N]` integer ids of the hard negatives (needs
        `document_ids`): for query i, every hard-negative column whose id equals
        `document_ids[i]` is masked. A row's own positive is never masked.
      chunk_size: optional number of local rows scored at a time. The logits then take
        `O(chunk_size * B)` memory instead of `O(b * B)`, in the backward pass too (each
        block is recomputed there, about one extra `q @ d.T` of FLOPs); the result and
        gradients equal the unchunked loss up to float32 summation order. None scores all
        `b` rows at once.

    Returns:
      The mean over the global batch of `0.5 * (CE over rows + CE over columns)`, float32.

    Example:
      >>> q = d = jnp.eye(4)
      >>> float(symmetric_info_nce(q, d, logit_scale=100.0)) < 1e-6
      True
      >>> float(symmetric_info_nce(q, d, logit_scale=0.0))  # log(4): all equally likely
      1.386294...
    """
    inputs = (queries, documents, axis_name, negatives, query_ids, document_ids, negative_ids)
    total, count, _ = _global_sums(_loss_sum, logit_scale, chunk_size, *inputs)
    return 0.5 * total / count


def symmetric_info_nce_with_metrics(
    queries: jax.Array,
    documents: jax.Array,
    *,
    logit_scale: jax.Array | float,
    axis_name: AxisName = None,
    negatives: jax.Array | None = None,
    query_ids: jax.Array | None = None,
    document_ids: jax.Array | None = None,
    negative_ids: jax.Array | None = None,
    chunk_size: int | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`(symmetric_info_nce(...), contrastive_metrics(...))` from one scoring of the logits.

    Takes the arguments of `symmetric_info_nce`. The metrics are read off the logits that
    the loss scores (no second gather or matmul) and carry no gradient, so
    `jax.value_and_grad(..., has_aux=True)` of this gives the loss's gradients.

    Example:
      >>> q = jnp.eye(3)
      >>> d = q[jnp.array([0, 2, 1])]  # queries 1 and 2 have swapped documents
      >>> loss, m = symmetric_info_nce_with_metrics(q, d, logit_scale=10.0)
      >>> bool(loss == symmetric_info_nce(q, d, logit_scale=10.0))
      True
      >>> round(float(m["accuracy_q2d"]), 4)
      0.3333
    """
    inputs = (queries, documents, axis_name, negatives, query_ids, document_ids, negative_ids)
    both = lambda scored: (_loss_sum(scored), _metric_sums(scored))
    (total, sums), count, scale = _global_sums(both, logit_scale, chunk_size, *inputs)
    return 0.5 * total / count, _metrics_of_sums(sums, count, scale)


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
    chunk_size: int | None = None,
) -> dict[str, jax.Array]:
    """Health metrics of a contrastive batch, global over devices like the loss.

    Takes the arguments of `symmetric_info_nce` (`chunk_size` included) and scores the
    same (masked) logits. With `R` the query->document logits (`[B, B + B*N]`, masked
    entries excluded) and `C` the document->query logits (`[B, B]`):

        accuracy_q2d        = mean_i [argmax_j R[i, j] == i]
        accuracy_d2q        = mean_j [argmax_i C[j, i] == j]
        positive_logit_mean = mean_i R[i, i]               (= s * <q_i, d_i>)
        negative_logit_mean = mean of R[i, j] over j != i, unmasked (hard negatives included)
        logit_scale         = s

    Returns:
      A dict of float32 scalars with those keys, identical on every device.

    Example:
      >>> q = jnp.eye(3)
      >>> d = q[jnp.array([0, 2, 1])]  # queries 1 and 2 have swapped documents
      >>> m = contrastive_metrics(q, d, logit_scale=10.0)
      >>> round(float(m["accuracy_q2d"]), 4), round(float(m["positive_logit_mean"]), 4)
      (0.3333, 3.3333)
    """
    inputs = (queries, documents, axis_name, negatives, query_ids, document_ids, negative_ids)
    sums, count, scale = _global_sums(_metric_sums, logit_scale, chunk_size, *inputs)
    return _metrics_of_sums(sums, count, scale)


# -- global arrays on a mesh --------------------------------------------------------------------
def _batch_axes_tuple(batch_axes: str | Sequence[str]) -> tuple[str, ...]:
    return (batch_axes,) if isinstance(batch_axes, str) else tuple(batch_axes)


def _on_mesh(
    fn: Callable, queries, documents, logit_scale, mesh: Mesh, batch_axes, chunk_size, options
):
    """Runs `fn(..., axis_name=batch_axes)` under `jax.shard_map`, batch split on `batch_axes`.

    Embeddings, negatives and ids are split along their leading (batch) dimension over
    `batch_axes`, replicated over the other mesh axes; `logit_scale` is replicated;
    `chunk_size` (rows per device per block) is static.
    """
    batch_axes = _batch_axes_tuple(batch_axes)
    missing = set(batch_axes) - set(mesh.axis_names)
    if missing:
        raise ValueError(f"batch_axes {sorted(missing)} are not axes of the mesh {mesh.axis_names}")
    batch_spec = P(batch_axes)
    options = {k: v for k, v in options.items() if v is not None}

    def local(q, d, scale, opts):
        return fn(q, d, logit_scale=scale, axis_name=batch_axes, chunk_size=chunk_size, **opts)

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
    chunk_size: int | None = None,
    **options,
) -> jax.Array:
    """`symmetric_info_nce` of global `[B, d]` arrays whose batch is split over `batch_axes`.

    Runs the loss under `jax.shard_map(mesh=mesh, in_specs=P(batch_axes), out_specs=P(),
    check_vma=True)` with `axis_name=batch_axes`: each device scores its `B / n` rows against
    all gathered columns, and the result is the same global loss as
    `symmetric_info_nce(queries, documents, ...)` on one device, with the same gradients.
    Usable inside `jax.jit` and differentiable. Mesh axes not in `batch_axes` (e.g.
    `model`) see the embeddings replicated. B must divide by the product of the batch axes'
    sizes.

    Args:
      queries, documents: global `[B, d]` embeddings.
      logit_scale: replicated scalar scale.
      mesh: the device mesh.
      batch_axes: the mesh axis name (or names, major to minor) the batch is split over.
      chunk_size: optional rows per device scored at a time (see `symmetric_info_nce`):
        each device's logits memory is then `O(chunk_size * B)`.
      **options: `negatives`, `query_ids`, `document_ids`, `negative_ids` of
        `symmetric_info_nce`, global and batch-major like the embeddings.

    Example:
      >>> mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
      >>> q = d = jnp.eye(4)
      >>> float(sharded_symmetric_info_nce(q, d, logit_scale=0.0, mesh=mesh))
      1.386294...
    """
    return _on_mesh(
        symmetric_info_nce, queries, documents, logit_scale, mesh, batch_axes, chunk_size, options
    )


def sharded_symmetric_info_nce_with_metrics(
    queries: jax.Array,
    documents: jax.Array,
    *,
    logit_scale: jax.Array | float,
    mesh: Mesh,
    batch_axes: str | Sequence[str] = ("data",),
    chunk_size: int | None = None,
    **options,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`symmetric_info_nce_with_metrics` of global arrays whose batch is split over
    `batch_axes`: the loss of `sharded_symmetric_info_nce` (same arguments, same gradients)
    and the metrics of `sharded_contrastive_metrics`, from one gather and one scoring.

    Example:
      >>> mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
      >>> loss, m = sharded_symmetric_info_nce_with_metrics(
      ...     jnp.eye(4), jnp.eye(4), logit_scale=5.0, mesh=mesh
      ... )
      >>> float(m["accuracy_q2d"]), float(m["logit_scale"])
      (1.0, 5.0)
    """
    return _on_mesh(
        symmetric_info_nce_with_metrics,
        queries,
        documents,
        logit_scale,
        mesh,
        batch_axes,
        chunk_size,
        options,
    )


def sharded_contrastive_metrics(
    queries: jax.Array,
    documents: jax.Array,
    *,
    logit_scale: jax.Array | float,
    mesh: Mesh,
    batch_axes: str | Sequence[str] = ("data",),
    chunk_size: int | None = None,
    **options,
) -> dict[str, jax.Array]:
    """`contrastive_metrics` of global arrays whose batch is split over `batch_axes`.

    The counterpart of `sharded_symmetric_info_nce` (same arguments, same sharding); returns
    the global metrics dict of `contrastive_metrics`.

    Example:
      >>> mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
      >>> m = sharded_contrastive_metrics(jnp.eye(4), jnp.eye(4), logit_scale=5.0, mesh=mesh)
      >>> float(m["accuracy_q2d"]), float(m["negative_logit_mean"])
      (1.0, 0.0)
    """
    return _on_mesh(
        contrastive_metrics, queries, documents, logit_scale, mesh, batch_axes, chunk_size, options
    )
