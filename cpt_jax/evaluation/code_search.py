"""Code search with the CodeSearchNet protocol.

Each query is ranked against 1,000 candidates: its gold function plus 999 distractors drawn
from the other test functions. The rank is the number of candidates scoring at least as high
as the gold one (ties count against the model), and the metric is the mean reciprocal rank.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

EncodeFn = Callable[[list[str], str], np.ndarray]


def candidate_sets(num_queries: int, num_candidates: int = 1000, *, seed: int = 0) -> np.ndarray:
    """`[num_queries, num_candidates]` document indices; column 0 is query i's gold (i).

    The distractors of each query are distinct, never its gold, and fixed by `seed`.
    """
    if num_candidates < 2:
        raise ValueError(f"num_candidates must be at least 2, got {num_candidates}")
    if num_queries < num_candidates:
        raise ValueError(
            f"the protocol ranks each query against {num_candidates} candidates, so it needs "
            f"at least {num_candidates} (query, code) pairs; got {num_queries}"
        )
    rng = np.random.default_rng(seed)
    sets = np.empty((num_queries, num_candidates), np.int64)
    for i in range(num_queries):
        others = rng.choice(num_queries - 1, size=num_candidates - 1, replace=False)
        others = others + (others >= i)  # skip the gold index
        sets[i, 0] = i
        sets[i, 1:] = others
    return sets


def ranks_from_scores(scores: np.ndarray) -> np.ndarray:
    """`[n, C]` scores with the gold in column 0 -> `[n]` ranks (1 = best; ties pessimistic)."""
    scores = np.asarray(scores)
    return np.sum(scores >= scores[:, :1], axis=1)


def mean_reciprocal_rank(ranks: np.ndarray) -> float:
    return float(np.mean(1.0 / np.asarray(ranks, np.float64)))


def summarize(ranks: np.ndarray, num_candidates: int) -> dict:
    ranks = np.asarray(ranks)
    return {
        "mrr": mean_reciprocal_rank(ranks),
        "recall@1": float(np.mean(ranks <= 1)),
        "recall@10": float(np.mean(ranks <= 10)),
        "num_queries": int(len(ranks)),
        "num_candidates": int(num_candidates),
    }


def code_search_mrr(
    query_embeddings: np.ndarray,
    code_embeddings: np.ndarray,
    *,
    num_candidates: int = 1000,
    seed: int = 0,
) -> dict:
    """MRR of embeddings `[n, d]` (row i of each is a pair), scored by dot product."""
    q = np.asarray(query_embeddings, np.float32)
    c = np.asarray(code_embeddings, np.float32)
    if q.shape != c.shape:
        raise ValueError(f"query {q.shape} and code {c.shape} embeddings differ in shape")
    sets = candidate_sets(len(q), num_candidates, seed=seed)
    ranks = np.empty(len(q), np.int64)
    for start in range(0, len(q), 256):  # [chunk, C, d] at a time bounds memory
        rows = slice(start, start + 256)
        scores = np.einsum("nd,ncd->nc", q[rows], c[sets[rows]])
        ranks[rows] = ranks_from_scores(scores)
    return summarize(ranks, num_candidates)


def evaluate_code_search(
    encode_fn: EncodeFn,
    pairs: Sequence[dict],
    *,
    query_field: str = "query",
    code_field: str = "code_no_comments",
    num_candidates: int = 1000,
    seed: int = 0,
) -> dict:
    """Encodes the pairs with `encode_fn(texts, kind)` and scores them with `code_search_mrr`.

    `kind` is 'query' for the natural-language side and 'document' for code.
    """
    queries = [p[query_field] for p in pairs]
    codes = [p[code_field] for p in pairs]
    return code_search_mrr(
        encode_fn(queries, "query"),
        encode_fn(codes, "document"),
        num_candidates=num_candidates,
        seed=seed,
    )
