"""Internals of the contrastive losses: gathering, scoring and summing blocks of rows.

Every public loss (`cpt_jax.losses.info_nce`) is `global_sums` of one of the per-block
sums below: this device's rows are scored against the columns gathered from all devices,
a chunk of rows at a time, and the sums are `psum`-ed over the batch axes. Matryoshka
sizes (`matryoshka_sizes`) score the same rows once per prefix length.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

AxisName = str | tuple[str, ...] | None


class Columns(NamedTuple):
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


class Rows(NamedTuple):
    """A block of this device's pairs (every leaf has the same leading size r <= b)."""

    queries: jax.Array  # [r, d]
    documents: jax.Array  # [r, d]
    labels: jax.Array  # [r] global index of each pair: its positive's column / row
    query_ids: jax.Array | None  # [r]
    document_ids: jax.Array | None  # [r]


class ScoredBlock(NamedTuple):
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


def prepare(
    queries,
    documents,
    axis_name: AxisName,
    negatives=None,
    query_ids=None,
    document_ids=None,
    negative_ids=None,
) -> tuple[Rows, Columns]:
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
    columns = Columns(
        queries=_gather(queries, axis_name),
        documents=_gather(documents, axis_name),
        negatives=None if negatives is None else _gather(negatives, axis_name).reshape(-1, dim),
        query_ids=maybe_gather(query_ids),
        document_ids=maybe_gather(document_ids),
        negative_ids=None if negative_ids is None else _gather(negative_ids, axis_name).reshape(-1),
        count=count,
    )
    rows = Rows(queries, documents, offset + jnp.arange(b), query_ids, document_ids)
    return rows, columns


def score(block: Rows, columns: Columns, scale) -> ScoredBlock:
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
    return ScoredBlock(rows, cols, block.labels)


def sum_over_row_blocks(fn: Callable, rows: Rows, chunk_size: int | None):
    """`fn(rows)` for a function that sums over rows, computed `chunk_size` rows at a time.

    `fn` maps a `Rows` block to a pytree of sums. Blocks run in a `lax.scan` whose body is
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


def loss_sum(scored: ScoredBlock) -> jax.Array:
    """The block's summed cross-entropies, both directions (halved and averaged later)."""
    return jnp.sum(
        _cross_entropy(scored.rows, scored.labels) + _cross_entropy(scored.columns, scored.labels)
    )


def metric_sums(scored: ScoredBlock) -> dict[str, jax.Array]:
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


def metrics_of_sums(sums: dict[str, jax.Array], count: int, scale) -> dict[str, jax.Array]:
    """`contrastive_metrics`' means of the global `metric_sums` of `count` pairs."""
    return {
        "accuracy_q2d": sums["accuracy_q2d"] / count,
        "accuracy_d2q": sums["accuracy_d2q"] / count,
        "positive_logit_mean": sums["positive_logit_sum"] / count,
        "negative_logit_mean": sums["negative_logit_sum"] / jnp.maximum(sums["negative_count"], 1),
        "logit_scale": jax.lax.stop_gradient(scale),
    }


# -- Matryoshka sizes -------------------------------------------------------------------------
def matryoshka_sizes(
    dims: Sequence[int] | None, weights: Sequence[float] | None, width: int | None
) -> tuple[tuple[int, ...], tuple[float, ...]] | None:
    """Validated `(dims, weights)` for embeddings `width` wide (None: any width); None
    without `dims`.

    `dims` must be strictly decreasing integers in `[1, width]` (the order of a per-size
    logit scale); `weights` default to 1 each, must be non-negative with a positive sum.
    """
    if dims is None:
        if weights is not None:
            raise ValueError("matryoshka_weights given without matryoshka_dims")
        return None
    dims = tuple(dims)
    if not dims or any(isinstance(m, bool) or not isinstance(m, int) for m in dims):
        raise ValueError(f"matryoshka_dims must be a non-empty sequence of ints, got {dims}")
    too_wide = width is not None and dims[0] > width
    if any(a <= b for a, b in zip(dims, dims[1:])) or dims[-1] < 1 or too_wide:
        bound = "the embedding width" if width is None else f"{width}, the embedding width"
        raise ValueError(
            f"matryoshka_dims must decrease strictly within [1, {bound}], "
            f"e.g. (384, 256, 128, 64); got {dims}"
        )
    weights = (1.0,) * len(dims) if weights is None else tuple(float(w) for w in weights)
    if len(weights) != len(dims) or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(
            f"matryoshka_weights {weights} must be {len(dims)} non-negative numbers "
            f"(one per size of {dims}) with a positive sum"
        )
    return dims, weights


def prefix(x: jax.Array, size: int) -> jax.Array:
    """`[..., d] -> [..., size]`: the first `size` coordinates re-normalised to unit length
    (in float32; a zero prefix stays zero)."""
    x = x[..., :size].astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-24))


def _prefix_rows(rows: Rows, size: int) -> Rows:
    return rows._replace(queries=prefix(rows.queries, size), documents=prefix(rows.documents, size))


def _prefix_columns(columns: Columns, size: int) -> Columns:
    negatives = None if columns.negatives is None else prefix(columns.negatives, size)
    return columns._replace(
        queries=prefix(columns.queries, size),
        documents=prefix(columns.documents, size),
        negatives=negatives,
    )


def scales_per_size(scale: jax.Array, num_sizes: int) -> list[jax.Array]:
    """One scalar scale per size: a scalar shared by all, or `[num_sizes]` one each."""
    if scale.ndim == 0:
        return [scale] * num_sizes
    if scale.shape != (num_sizes,):
        raise ValueError(
            f"logit_scale must be a scalar or one per Matryoshka size [{num_sizes}], "
            f"got shape {scale.shape}"
        )
    return [scale[k] for k in range(num_sizes)]


def global_sums(
    block_sums: Callable,
    logit_scale,
    chunk_size,
    queries,
    documents,
    axis_name,
    *ids,
    sizes: Sequence[int] | None = None,
):
    """`block_sums(scored block)` summed over every row of the global batch (all devices),
    scored `chunk_size` local rows at a time; returns `(sums, B, scale)`. `ids`: the
    negatives and the three ids, in `prepare`'s order. With `sizes` (Matryoshka), `sums` is
    a list, one per size, each scored on the re-normalised prefixes with its own scale."""
    rows, columns = prepare(queries, documents, axis_name, *ids)
    scale = jnp.asarray(logit_scale, jnp.float32)
    if sizes is None:
        if scale.ndim != 0:
            raise ValueError(f"logit_scale must be a scalar, got shape {scale.shape}")

        def fn(block):
            return block_sums(score(block, columns, scale))

    else:
        # The gathered columns are cut and re-normalised once, outside the row blocks.
        per_size = [
            (size, _prefix_columns(columns, size), s)
            for size, s in zip(sizes, scales_per_size(scale, len(sizes)))
        ]

        def fn(block):
            return [block_sums(score(_prefix_rows(block, m), c, s)) for m, c, s in per_size]

    total = sum_over_row_blocks(fn, rows, chunk_size)
    return _psum(total, axis_name), columns.count, scale
