"""Evaluation: code search (CodeSearchNet protocol), retrieval (BEIR protocol), linear-probe
and k-NN classification, similarity correlations; BM25 and TF-IDF baselines."""

from cpt_jax.evaluation.bm25 import (
    bm25_candidate_scores,
    bm25_code_search,
    bm25_scores,
    bm25_scores_reference,
    build_bm25_index,
    code_tokenize,
)
from cpt_jax.evaluation.classification import (
    knn_classify,
    knn_predict,
    linear_probe,
    macro_f1,
    tfidf_logistic_baseline,
)
from cpt_jax.evaluation.code_search import (
    candidate_scores,
    candidate_sets,
    code_search_mrr,
    encode_in_batches,
    evaluate_code_search,
    mean_reciprocal_rank,
    ranks_from_scores,
)
from cpt_jax.evaluation.fusion import (
    descending_ranks,
    hybrid_code_search,
    reciprocal_rank_fusion,
    score_fusion,
    standardize,
)
from cpt_jax.evaluation.retrieval import (
    SEARCH_METHODS,
    bm25_retrieval,
    evaluate_retrieval,
    exact_search,
    faiss_search,
    query_metrics,
    retrieval_metrics,
    search_documents,
)
from cpt_jax.evaluation.similarity import (
    average_ranks,
    pearson,
    rowwise_cosine,
    similarity_correlations,
    spearman,
)

__all__ = [
    "average_ranks",
    "descending_ranks",
    "hybrid_code_search",
    "reciprocal_rank_fusion",
    "score_fusion",
    "standardize",
    "knn_classify",
    "knn_predict",
    "linear_probe",
    "macro_f1",
    "pearson",
    "rowwise_cosine",
    "similarity_correlations",
    "spearman",
    "tfidf_logistic_baseline",
    "bm25_code_search",
    "bm25_retrieval",
    "evaluate_retrieval",
    "exact_search",
    "faiss_search",
    "search_documents",
    "SEARCH_METHODS",
    "query_metrics",
    "retrieval_metrics",
    "bm25_scores",
    "bm25_scores_reference",
    "build_bm25_index",
    "bm25_candidate_scores",
    "candidate_scores",
    "candidate_sets",
    "code_search_mrr",
    "encode_in_batches",
    "code_tokenize",
    "evaluate_code_search",
    "mean_reciprocal_rank",
    "ranks_from_scores",
]
