"""Evaluation: code search (CodeSearchNet protocol) and retrieval (BEIR protocol), with
BM25 baselines."""

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
from cpt_jax.evaluation.retrieval import (
    bm25_retrieval,
    evaluate_retrieval,
    exact_search,
    query_metrics,
    retrieval_metrics,
)

__all__ = [
    "bm25_code_search",
    "bm25_retrieval",
    "evaluate_retrieval",
    "exact_search",
    "query_metrics",
    "retrieval_metrics",
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
