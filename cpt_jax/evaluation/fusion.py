"""Hybrid ranking: dense (embedding) scores fused with lexical (BM25) scores.

Two fusions of the scores two systems give the same candidates, row by row (one row per
query, one column per candidate):

- **score fusion**: each system's row standardised (z-scores over the row's candidates),
  then `z(dense) + weight * z(lexical)`. Standardising puts cosine similarities (about
  -0.1..0.9) and BM25 scores (0..40) on one scale, query by query.
- **reciprocal rank fusion** (RRF, Cormack et al., 2009): `sum_s 1 / (k + rank_s)` over the
  systems, ranks 1-based by descending score (tied candidates share the best rank of their
  group, so the many zero-score BM25 candidates of a query are not ordered arbitrarily).

Example:
  dense = query_embeddings @ code_embeddings.T          # [q, n]
  lexical = np.stack([bm25_scores(index, code_tokenize(t)) for t in query_texts])
  fused = score_fusion(dense, lexical, weight=0.1)      # [q, n], higher is better

Measured on code search (`python -m cpt_jax.evaluate ... --fusion`): RRF costs a good
dense model MRR, because it gives BM25's ranks as much say as the model's; score fusion with
a small weight gains a little. See docs/experiments.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.stats

from cpt_jax.evaluation import bm25, code_search


def standardize(scores: np.ndarray) -> np.ndarray:
    """Row-wise z-scores of `[..., n]` scores, in float64: `(s - mean) / std` over the last
    axis. A row whose scores are all equal (a query with no known word, for BM25) becomes
    all zeros: it carries no preference."""
    scores = np.asarray(scores, np.float64)
    centred = scores - scores.mean(axis=-1, keepdims=True)
    std = centred.std(axis=-1, keepdims=True)
    return np.divide(centred, std, out=np.zeros_like(centred), where=std > 0)


def score_fusion(dense: np.ndarray, lexical: np.ndarray, weight: float) -> np.ndarray:
    """`standardize(dense) + weight * standardize(lexical)`, both `[..., n]` -> `[..., n]`
    float64. `weight` 0 ranks exactly as `dense` does."""
    dense, lexical = np.asarray(dense), np.asarray(lexical)
    if dense.shape != lexical.shape:
        raise ValueError(f"dense scores {dense.shape} and lexical scores {lexical.shape} differ")
    if not np.isfinite(weight) or weight < 0:
        raise ValueError(f"the lexical weight must be a finite number >= 0, got {weight}")
    return standardize(dense) + weight * standardize(lexical)


def descending_ranks(scores: np.ndarray) -> np.ndarray:
    """`[..., n]` scores -> int64 ranks (1 = highest) along the last axis; equal scores share
    the best rank of their group (`[3, 5, 5, 1]` -> `[3, 1, 1, 4]`)."""
    return scipy.stats.rankdata(-np.asarray(scores, np.float64), method="min", axis=-1).astype(
        np.int64
    )


def reciprocal_rank_fusion(systems: Sequence[np.ndarray], k: float = 60.0) -> np.ndarray:
    """`sum_s 1 / (k + rank_s)` over the systems' `[..., n]` scores (all of one shape) ->
    `[..., n]` float64 fused scores. `k` (> 0) damps the top ranks' weight (60 in the
    original paper)."""
    if not systems:
        raise ValueError("reciprocal rank fusion needs at least one system's scores")
    shapes = {np.shape(s) for s in systems}
    if len(shapes) != 1:
        raise ValueError(f"the systems' scores differ in shape: {sorted(shapes)}")
    if not k > 0:
        raise ValueError(f"the RRF constant k must be positive, got {k}")
    return sum(1.0 / (k + descending_ranks(s)) for s in systems)


# The settings `hybrid_code_search` scores by default (what `evaluate --fusion` prints).
FUSION_WEIGHTS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
RRF_KS = (10, 60)


def hybrid_code_search(
    query_embeddings: np.ndarray,
    code_embeddings: np.ndarray,
    queries: Sequence[str],
    codes: Sequence[str],
    *,
    weights: Sequence[float] = FUSION_WEIGHTS,
    rrf_ks: Sequence[float] = RRF_KS,
    num_candidates: int = 1000,
    seed: int = 0,
) -> dict[str, dict]:
    """The CodeSearchNet-protocol figures (`code_search.summarize`) of dense, BM25 and their
    fusions, all on the same candidate sets: row i of the embeddings is (queries[i],
    codes[i]); fusions standardise and rank over each query's candidates.

    Returns `{"dense": ..., "bm25": ..., "score_fusion_<w>": ... per weight,
    "rrf_<k>": ... per k}`.
    """
    if len(queries) != len(codes) or len(queries) != len(query_embeddings):
        raise ValueError(
            f"{len(query_embeddings)} embedding pairs for {len(queries)} queries and "
            f"{len(codes)} codes"
        )
    sets = code_search.candidate_sets(len(queries), num_candidates, seed=seed)
    dense = code_search.candidate_scores(query_embeddings, code_embeddings, sets)
    lexical = bm25.bm25_candidate_scores(queries, codes, sets)
    fused = {"dense": dense, "bm25": lexical}
    for weight in weights:
        fused[f"score_fusion_{weight:g}"] = score_fusion(dense, lexical, weight)
    for k in rrf_ks:
        fused[f"rrf_{k:g}"] = reciprocal_rank_fusion([dense, lexical], k)
    return {
        name: code_search.summarize(code_search.ranks_from_scores(scores), num_candidates)
        for name, scores in fused.items()
    }
