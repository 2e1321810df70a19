"""Evaluation: code search with the CodeSearchNet protocol, and its BM25 baseline."""

from cpt_jax.evaluation.bm25 import (
    bm25_code_search,
    bm25_scores,
    bm25_scores_reference,
    build_bm25_index,
    code_tokenize,
)
from cpt_jax.evaluation.code_search import (
    candidate_sets,
    code_search_mrr,
    evaluate_code_search,
    mean_reciprocal_rank,
    ranks_from_scores,
)

__all__ = [
    "bm25_code_search",
    "bm25_scores",
    "bm25_scores_reference",
    "build_bm25_index",
    "candidate_sets",
    "code_search_mrr",
    "code_tokenize",
    "evaluate_code_search",
    "mean_reciprocal_rank",
    "ranks_from_scores",
]
