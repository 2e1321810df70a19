"""The symmetric InfoNCE loss and its metrics, global over devices, optionally Matryoshka.

See the package docstring (`cpt_jax.losses`) for the math, the column layout of hard
negatives and the masking of false negatives.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from cpt_jax.losses import scoring
from cpt_jax.losses.scoring import AxisName


def _weighted_mean(values, weights):
    return sum(w * v for w, v in zip(weights, values)) / sum(weights)


def _global_sums(block_sums, logit_scale, chunk_size, inputs, dims, weights):
    """`scoring.global_sums` with the Matryoshka sizes validated; also returns them."""
    sizes = scoring.matryoshka_sizes(dims, weights, inputs[0].shape[-1])
    sums, count, scale = scoring.global_sums(
        block_sums, logit_scale, chunk_size, *inputs, sizes=None if sizes is None else sizes[0]
    )
    return sums, count, scale, sizes


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
    matryoshka_dims: Sequence[int] | None = None,
    matryoshka_weights: Sequence[float] | None = None,
) -> jax.Array:
    """Symmetric InfoNCE with in-batch (and optional hard) negatives; a float32 scalar.

    With `Z = s * Q @ D.T` over the global batch of B pairs (`[B, B]`), hard negatives
    appended as extra query->document columns `Zn = s * Q @ Neg.T` (`[B, B*N]`):

        L = 1/B * sum_i 0.5 * ( logsumexp([Z[i, :], Zn[i, :]]) - Z[i, i]
                              + logsumexp(Z[:, i])              - Z[i, i] )

    with masked entries (false negatives) removed from the logsumexps.

    Matryoshka (Kusupati et al., 2022): with `matryoshka_dims = (m_1, ..., m_K)` the loss is
    the weighted mean over sizes of the same loss on the re-normalised prefixes,

        L = sum_k w_k * L(Q[:, :m_k] / |.|, D[:, :m_k] / |.|, s_k) / sum_k w_k,

    so that the first `m_k` coordinates of an embedding are an embedding themselves. A
    weighted *mean*, not sentence-transformers' sum: with one size it is the plain loss, and
    adding sizes does not multiply the gradients (the learning rate) by K.

    Args:
      queries: `[b, d]` unit-norm query embeddings (any float dtype; logits and logsumexp
        are computed in float32).
      documents: `[b, d]` unit-norm document embeddings; `documents[i]` is `queries[i]`'s
        positive.
      logit_scale: the scale `s` (1 / temperature), e.g. from `logit_scale_from_log`; with
        `matryoshka_dims` a scalar shared by every size or `[K]`, one per size.
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
      matryoshka_dims: optional strictly decreasing prefix lengths in `[1, d]`, e.g.
        `(384, 256, 128, 64)`. None: the plain loss on the full vectors (no re-normalising).
      matryoshka_weights: optional non-negative weight per size (default 1 each).

    Returns:
      The mean over the global batch of `0.5 * (CE over rows + CE over columns)`, float32
      (with Matryoshka sizes, its weighted mean over the sizes).

    Example:
      >>> q = d = jnp.eye(4)
      >>> float(symmetric_info_nce(q, d, logit_scale=100.0)) < 1e-6
      True
      >>> float(symmetric_info_nce(q, d, logit_scale=0.0))  # log(4): all equally likely
      1.386294...
      >>> # Prefixes of length 2 tell pairs 0 and 1 apart, not 2 and 3: mean(0, log(2)).
      >>> round(float(symmetric_info_nce(q, d, logit_scale=100.0, matryoshka_dims=(4, 2))), 4)
      0.3466
    """
    inputs = (queries, documents, axis_name, negatives, query_ids, document_ids, negative_ids)
    args = (logit_scale, chunk_size, inputs, matryoshka_dims, matryoshka_weights)
    total, count, _, sizes = _global_sums(scoring.loss_sum, *args)
    if sizes is None:
        return 0.5 * total / count
    return 0.5 * _weighted_mean(total, sizes[1]) / count


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
    matryoshka_dims: Sequence[int] | None = None,
    matryoshka_weights: Sequence[float] | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`(symmetric_info_nce(...), contrastive_metrics(...))` from one scoring of the logits.

    Takes the arguments of `symmetric_info_nce`. The metrics are read off the logits that
    the loss scores (no second gather or matmul) and carry no gradient, so
    `jax.value_and_grad(..., has_aux=True)` of this gives the loss's gradients. With
    Matryoshka sizes the metrics are those of the largest size, plus `loss@<m>` per size
    (and `logit_scale@<m>` with a scale per size).

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
    args = (logit_scale, chunk_size, inputs, matryoshka_dims, matryoshka_weights)
    both = lambda scored: (scoring.loss_sum(scored), scoring.metric_sums(scored))
    out, count, scale, sizes = _global_sums(both, *args)
    if sizes is None:
        total, sums = out
        return 0.5 * total / count, scoring.metrics_of_sums(sums, count, scale)
    dims, weights = sizes
    per_size = [0.5 * total / count for total, _ in out]
    metrics = scoring.metrics_of_sums(out[0][1], count, scale if scale.ndim == 0 else scale[0])
    for m, loss in zip(dims, per_size):
        metrics[f"loss@{m}"] = jax.lax.stop_gradient(loss)
    if scale.ndim:
        for k, m in enumerate(dims):
            metrics[f"logit_scale@{m}"] = jax.lax.stop_gradient(scale[k])
    return _weighted_mean(per_size, weights), metrics


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
    matryoshka_dims: Sequence[int] | None = None,
    matryoshka_weights: Sequence[float] | None = None,
) -> dict[str, jax.Array]:
    """Health metrics of a contrastive batch, global over devices like the loss.

    Takes the arguments of `symmetric_info_nce` (`chunk_size` included) and scores the
    same (masked) logits; with Matryoshka sizes, those of the largest size. With `R` the
    query->document logits (`[B, B + B*N]`, masked entries excluded) and `C` the
    document->query logits (`[B, B]`):

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
    if matryoshka_dims is not None:  # the largest size only, with its own scale
        sizes = scoring.matryoshka_sizes(matryoshka_dims, matryoshka_weights, queries.shape[-1])
        scale = jnp.asarray(logit_scale, jnp.float32)
        logit_scale = scoring.scales_per_size(scale, len(sizes[0]))[0]
        matryoshka_dims, matryoshka_weights = sizes[0][:1], None
    args = (logit_scale, chunk_size, inputs, matryoshka_dims, matryoshka_weights)
    sums, count, scale, sizes = _global_sums(scoring.metric_sums, *args)
    return scoring.metrics_of_sums(sums if sizes is None else sums[0], count, scale)
