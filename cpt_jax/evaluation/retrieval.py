"""Retrieval with graded relevance judgements (BEIR / MS MARCO protocol): exact search and
the metrics MRR@10, nDCG@10 and Recall@100.

For one query with judgements `qrels = {doc_id: grade}` (grade > 0 is relevant) and a ranked
list of document ids (best first):

    MRR@k     1 / rank of the first relevant document within the top k, else 0
    nDCG@k    DCG@k / IDCG@k, DCG@k = sum_{r <= k} grade(r) / log2(r + 1) (linear gain, as
              trec_eval and BEIR's pytrec_eval compute it), IDCG@k the DCG of the judgements
              sorted by grade
    Recall@k  |relevant in the top k| / |relevant|

Corpus-level figures are means over the queries that have at least one relevant document
(queries without any are reported as `queries_without_relevant`, not scored).

Example:
  top = exact_search(query_embeddings, doc_embeddings, k=100)      # [q, 100] indices
  ranked = {qid: [doc_ids[j] for j in row] for qid, row in zip(query_ids, top)}
  retrieval_metrics(ranked, qrels)   # {'mrr@10': ..., 'ndcg@10': ..., 'recall@100': ...}

Search methods (`search_documents(..., method=...)`, `evaluate_retrieval(..., search=...)`):

    exact        numpy, chunked matrix products; ties by document index (the default)
    faiss_flat   faiss `IndexFlatIP`: exact too, multi-threaded BLAS, for large corpora
    faiss_hnsw   faiss `IndexHNSWFlat` (inner product): approximate, sub-linear per query
                 once built; `ef_search` trades speed for recall

The faiss methods need the optional `faiss` package (`pip install faiss-cpu`), imported only
when one of them is asked for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from cpt_jax.evaluation.bm25 import bm25_scores, build_bm25_index, code_tokenize
from cpt_jax.evaluation.code_search import encode_in_batches
from cpt_jax.quantization import VectorFormat

# Bytes of float32 scores held at once by `exact_search` (query rows x all documents).
_SCORE_CHUNK_BYTES = 256 * 2**20

SEARCH_METHODS = ("exact", "faiss_flat", "faiss_hnsw")
# Keyword options each method accepts (`search_documents(..., **options)`).
_METHOD_OPTIONS = {
    "exact": frozenset(),
    "faiss_flat": frozenset(),
    "faiss_hnsw": frozenset({"hnsw_m", "ef_construction", "ef_search"}),
}


def _search_inputs(
    queries: np.ndarray, documents: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """float32 `[q, d]` and `[n, d]` arrays and `min(k, n)`, or a ValueError."""
    queries, documents = np.asarray(queries, np.float32), np.asarray(documents, np.float32)
    if queries.ndim != 2 or documents.ndim != 2 or queries.shape[1] != documents.shape[1]:
        raise ValueError(
            f"need [q, d] and [n, d] embeddings, got {queries.shape}, {documents.shape}"
        )
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    return queries, documents, min(k, len(documents))


def exact_search(
    queries: np.ndarray,
    documents: np.ndarray,
    k: int,
    vector_format: VectorFormat | None = None,
) -> np.ndarray:
    """The `k` best documents of every query by dot product (cosine for unit-norm rows).

    Args:
      queries: `[q, d]` embeddings.
      documents: `[n, d]` embeddings.
      k: how many to return (at most n).
      vector_format: optional: search the documents as this format stores them (int8
        calibrated on them), scored by `vector_format.scores` (int8 dot products, Hamming
        distance, rescoring).

    Returns:
      int64 `[q, min(k, n)]` document indices, best first; equal scores are ordered by
      document index, so the result is deterministic.
    """
    queries, documents, k = _search_inputs(queries, documents, k)
    n = len(documents)
    score_fn = lambda chunk: chunk @ documents.T
    if vector_format is not None:
        vector_format, stored = vector_format.store(documents)
        score_fn = lambda chunk: vector_format.scores(chunk, stored)
    rows = max(1, _SCORE_CHUNK_BYTES // (4 * max(n, 1)))
    out = np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), rows):
        scores = score_fn(queries[start : start + rows])
        # lexsort's last key is primary: score descending, then index ascending.
        order = np.lexsort((np.broadcast_to(np.arange(n), scores.shape), -scores), axis=-1)
        out[start : start + rows] = order[:, :k]
    return out


def _import_faiss():
    try:
        import faiss
    except ImportError as error:
        raise ImportError(
            "the faiss search methods need the faiss package: pip install faiss-cpu "
            "(or use search='exact')"
        ) from error
    return faiss


def faiss_search(
    queries: np.ndarray,
    documents: np.ndarray,
    k: int,
    *,
    index: str = "flat",
    hnsw_m: int = 32,
    ef_construction: int = 200,
    ef_search: int = 128,
) -> np.ndarray:
    """`exact_search`'s contract through a faiss inner-product index built over `documents`.

    Args:
      queries: `[q, d]` embeddings.
      documents: `[n, d]` embeddings (copied into the index as float32: n * d * 4 bytes).
      k: how many to return (at most n).
      index: 'flat' (`IndexFlatIP`: exact, multi-threaded BLAS; the same top k as
        `exact_search` up to float32 rounding) or 'hnsw' (`IndexHNSWFlat` with
        `METRIC_INNER_PRODUCT`: approximate; best on unit-norm rows, where inner product
        order is L2 order).
      hnsw_m: HNSW graph degree (`M`); more is better recall, more memory and build time.
      ef_construction: HNSW candidate list while building.
      ef_search: HNSW candidate list while searching, raised to k if smaller; the knob that
        trades speed for recall.

    Returns:
      int64 `[q, min(k, n)]` document indices, best first. faiss does not order equal
      scores by document index, so among tied (or, after rounding, nearly tied) documents
      its order may differ from `exact_search`'s.
    """
    if index not in ("flat", "hnsw"):
        raise ValueError(f"unknown faiss index {index!r}; one of 'flat', 'hnsw'")
    queries, documents, k = _search_inputs(queries, documents, k)
    faiss = _import_faiss()
    if k == 0:  # an empty corpus
        return np.empty((len(queries), 0), np.int64)
    dim = documents.shape[1]
    if index == "flat":
        searcher = faiss.IndexFlatIP(dim)
    else:
        if hnsw_m < 2 or ef_construction < 1 or ef_search < 1:
            raise ValueError(
                f"need hnsw_m >= 2, ef_construction >= 1, ef_search >= 1, got {hnsw_m}, "
                f"{ef_construction}, {ef_search}"
            )
        searcher = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        searcher.hnsw.efConstruction = ef_construction
    searcher.add(np.ascontiguousarray(documents))
    if index == "hnsw":
        searcher.hnsw.efSearch = max(ef_search, k)
    _, found = searcher.search(np.ascontiguousarray(queries), k)
    if (found < 0).any():  # HNSW found fewer than k documents for some query
        raise RuntimeError(
            f"faiss {index} search returned fewer than k={k} documents for "
            f"{int((found < 0).any(axis=1).sum())} queries; raise ef_search"
        )
    return found.astype(np.int64, copy=False)


def _check_search_method(method: str, options: Mapping) -> None:
    """A ValueError for an unknown method, a TypeError for an option it does not take, and
    the faiss ImportError now (before any encoding) for a faiss method."""
    if method not in _METHOD_OPTIONS:
        raise ValueError(f"unknown search method {method!r}; one of {', '.join(SEARCH_METHODS)}")
    unknown = sorted(set(options) - _METHOD_OPTIONS[method])
    if unknown:
        allowed = ", ".join(sorted(_METHOD_OPTIONS[method])) or "none"
        raise TypeError(f"search method {method!r} takes no option {unknown} (takes: {allowed})")
    if method.startswith("faiss_"):
        _import_faiss()


def search_documents(
    queries: np.ndarray, documents: np.ndarray, k: int, *, method: str = "exact", **options
) -> np.ndarray:
    """The `k` best documents of every query by dot product, by one of `SEARCH_METHODS`.

    Args:
      queries: `[q, d]` embeddings.
      documents: `[n, d]` embeddings.
      k: how many to return (at most n).
      method: 'exact' (`exact_search`), 'faiss_flat' or 'faiss_hnsw' (`faiss_search` with
        index 'flat' / 'hnsw').
      **options: 'faiss_hnsw' only: `hnsw_m`, `ef_construction`, `ef_search`.

    Returns:
      int64 `[q, min(k, n)]` document indices, best first (tie order: see `exact_search`
      and `faiss_search`).
    """
    _check_search_method(method, options)
    if method == "exact":
        return exact_search(queries, documents, k)
    return faiss_search(queries, documents, k, index=method.removeprefix("faiss_"), **options)


def query_metrics(ranked: Sequence[str], qrels: Mapping[str, int], k_values=None) -> dict:
    """MRR@10, nDCG@10 and Recall@100 (or `k_values`' cut-offs) of one ranked list."""
    k = {"mrr": 10, "ndcg": 10, "recall": 100, **(k_values or {})}
    relevant = {doc for doc, grade in qrels.items() if grade > 0}
    if not relevant:
        raise ValueError("a query with no relevant document has no retrieval metrics")
    mrr = 0.0
    for rank, doc in enumerate(ranked[: k["mrr"]], start=1):
        if doc in relevant:
            mrr = 1.0 / rank
            break
    dcg = sum(
        max(qrels.get(doc, 0), 0) / math.log2(rank + 1)
        for rank, doc in enumerate(ranked[: k["ndcg"]], start=1)
    )
    ideal = sorted((g for g in qrels.values() if g > 0), reverse=True)[: k["ndcg"]]
    idcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal, start=1))
    found = len(relevant & set(ranked[: k["recall"]]))
    return {
        f"mrr@{k['mrr']}": mrr,
        f"ndcg@{k['ndcg']}": dcg / idcg,
        f"recall@{k['recall']}": found / len(relevant),
    }


def retrieval_metrics(
    ranked: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]], k_values=None
) -> dict:
    """Means of `query_metrics` over the judged queries that have a relevant document.

    Args:
      ranked: query id -> ranked document ids (best first); a judged query missing here
        is an error (it would silently raise the mean).
      qrels: query id -> {document id: grade}.
      k_values: optional cut-offs, e.g. `{"mrr": 10, "ndcg": 10, "recall": 100}`.
    """
    scored, empty = [], 0
    for qid, judgements in qrels.items():
        if not any(g > 0 for g in judgements.values()):
            empty += 1
            continue
        if qid not in ranked:
            raise ValueError(f"query {qid!r} is judged but has no ranking")
        scored.append(query_metrics(ranked[qid], judgements, k_values))
    if not scored:
        raise ValueError("no judged query has a relevant document")
    means = {key: float(np.mean([m[key] for m in scored])) for key in scored[0]}
    return {**means, "num_queries": len(scored), "queries_without_relevant": empty}


def rank_by_scores(scores: np.ndarray, doc_ids: Sequence[str], k: int) -> list[str]:
    """The `k` best document ids of one `[n]` score row (ties by document order)."""
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores, np.float64)))
    return [doc_ids[j] for j in order[:k]]


def evaluate_retrieval(
    encode_fn,
    corpus: Mapping[str, str],
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    k: int = 100,
    batch_size: int = 256,
    search: str = "exact",
    search_options: Mapping | None = None,
    vector_formats: Sequence[VectorFormat] = (),
) -> dict:
    """`retrieval_metrics` of an encoder by searching the whole corpus.

    Args:
      encode_fn: `(texts, kind) -> [n, d]` unit-norm embeddings; kind is 'query' or
        'document' (e.g. `lambda t, kind: embedder.encode(t, kind=kind)`).
      corpus, queries: id -> text (BEIR's corpus.jsonl / queries.jsonl).
      qrels: query id -> {document id: grade}; only judged queries are searched.
      k: ranking depth (Recall@k needs k at least 100).
      search: one of `SEARCH_METHODS`: 'exact' (default), 'faiss_flat' (exact, faiss BLAS)
        or 'faiss_hnsw' (approximate). Checked, and faiss imported, before any encoding.
      search_options: keyword options of the method, e.g. `{"ef_search": 256}` for
        'faiss_hnsw' (see `search_documents`).
      vector_formats: add `by_format`: the metrics of an exact search over the documents
        stored in each format (`exact_search`), keyed by `VectorFormat.name`, each with
        its `bytes_per_vector`; from the same embeddings.
    """
    search_options = dict(search_options or {})
    _check_search_method(search, search_options)

    doc_ids = list(corpus)
    query_ids = [q for q in qrels if q in queries]
    missing = [q for q in qrels if q not in queries]
    if missing:
        raise ValueError(f"{len(missing)} judged queries have no text, e.g. {missing[0]!r}")
    documents = encode_in_batches(encode_fn, [corpus[d] for d in doc_ids], "document", batch_size)
    query_embeddings = encode_in_batches(
        encode_fn, [queries[q] for q in query_ids], "query", batch_size
    )
    judged = {q: qrels[q] for q in query_ids}

    def metrics_of(top):
        ranked = {q: [doc_ids[j] for j in row] for q, row in zip(query_ids, top)}
        return retrieval_metrics(ranked, judged)

    top = search_documents(query_embeddings, documents, k, method=search, **search_options)
    result = metrics_of(top)
    if vector_formats:
        result["by_format"] = {
            f.name: {
                **metrics_of(exact_search(query_embeddings, documents, k, vector_format=f)),
                "bytes_per_vector": f.bytes_per_vector(documents.shape[1]),
            }
            for f in vector_formats
        }
    return result


def bm25_retrieval(
    corpus: Mapping[str, str],
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    k: int = 100,
    tokenize=None,
) -> dict:
    """`retrieval_metrics` of BM25 (`bm25s`, lucene variant) on the same data: the baseline
    printed beside an encoder. `tokenize` defaults to `bm25.code_tokenize` (lower-cased
    words, identifiers also split), which suits prose too."""
    tokenize = tokenize or code_tokenize
    doc_ids = list(corpus)
    retriever = build_bm25_index([tokenize(corpus[d]) for d in doc_ids])
    ranked = {
        q: rank_by_scores(bm25_scores(retriever, tokenize(queries[q])), doc_ids, k)
        for q in qrels
        if q in queries
    }
    return retrieval_metrics(ranked, {q: qrels[q] for q in ranked})
