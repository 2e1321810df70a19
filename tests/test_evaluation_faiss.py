"""The optional faiss search methods of `cpt_jax.evaluation.retrieval`: faiss flat against
exact search, HNSW recall, errors, and the message when faiss is missing."""

import sys

import numpy as np
import pytest

from cpt_jax.evaluation import retrieval

pytest.importorskip("faiss")

NUM_DOCS, DIM, NUM_QUERIES, K = 2000, 64, 50, 100


def unit_rows(rng, rows):
    x = rng.normal(size=(rows, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    documents, queries = unit_rows(rng, NUM_DOCS), unit_rows(rng, NUM_QUERIES)
    scores = queries.astype(np.float64) @ documents.T.astype(np.float64)
    return {
        "documents": documents,
        "queries": queries,
        "scores": scores,  # float64 reference scores [q, n]
        "exact": retrieval.exact_search(queries, documents, K),
    }


def assert_correct_ranking(got, data):
    """`got` is a best-first top K: its float64 scores match exact search's position by
    position up to float32 rounding, and (random data: near-ties are rare) nearly every
    index is exactly exact search's."""
    exact, scores = data["exact"], data["scores"]
    assert got.shape == exact.shape and got.dtype == np.int64
    rows = np.arange(len(got))[:, None]
    np.testing.assert_allclose(scores[rows, got], scores[rows, exact], rtol=0, atol=1e-6)
    assert (got == exact).mean() >= 0.99
    assert all(len(set(row)) == len(row) for row in got)  # no document twice


def test_faiss_flat_equals_exact_search(data):
    got = retrieval.faiss_search(data["queries"], data["documents"], K, index="flat")
    assert_correct_ranking(got, data)
    via_dispatch = retrieval.search_documents(
        data["queries"], data["documents"], K, method="faiss_flat"
    )
    np.testing.assert_array_equal(via_dispatch, got)
    np.testing.assert_array_equal(
        retrieval.search_documents(data["queries"], data["documents"], K), data["exact"]
    )


def test_faiss_flat_metrics_equal_exact_through_evaluate_retrieval(data):
    documents, queries, exact, scores = (
        data["documents"],
        data["queries"],
        data["exact"],
        data["scores"],
    )
    doc_ids = [f"d{j}" for j in range(NUM_DOCS)]
    query_ids = [f"q{i}" for i in range(NUM_QUERIES)]
    rows = {**dict(zip(doc_ids, documents)), **dict(zip(query_ids, queries))}

    def encode_fn(texts, kind):  # the "texts" are the ids of their embeddings
        assert all(t.startswith("q" if kind == "query" else "d") for t in texts)
        return np.stack([rows[t] for t in texts])

    # Relevant documents at assorted exact ranks (and some beyond K), each with a clear
    # score gap to its neighbours, so float32 rounding cannot move it: the metrics must be
    # identical, not merely close.
    ordered = np.sort(scores, axis=1)[:, ::-1]
    gaps = np.minimum(
        np.abs(np.diff(ordered, axis=1, prepend=np.inf)),
        np.abs(np.diff(ordered, axis=1, append=-np.inf)),
    )
    full_rank = np.argsort(-scores, axis=1, kind="stable")
    qrels = {}
    for i, qid in enumerate(query_ids):
        wanted = [(i % 12), 3 + i % 9, 20 + i, 90 + i % 20, 500 + i]
        picked = [r for r in wanted if gaps[i, r] > 1e-4][:3]
        assert picked
        qrels[qid] = {doc_ids[full_rank[i, r]]: 1 + (r % 2) for r in picked}
    assert (full_rank[:, :K] == exact).mean() >= 0.99  # the same ranking as exact_search
    qrels["q_unjudged"] = {"d0": 0}  # no relevant document: counted, not scored
    texts = dict(zip(doc_ids, doc_ids))
    query_texts = {**dict(zip(query_ids, query_ids)), "q_unjudged": "q0"}

    def evaluate(search, **kw):
        return retrieval.evaluate_retrieval(
            encode_fn, texts, query_texts, qrels, k=K, batch_size=512, search=search, **kw
        )

    want = evaluate("exact")
    assert want["num_queries"] == NUM_QUERIES and want["queries_without_relevant"] == 1
    assert 0 < want["mrr@10"] < 1 and 0 < want["recall@100"] < 1
    assert evaluate("faiss_flat") == want
    hnsw = evaluate("faiss_hnsw", search_options={"ef_search": 256})
    assert hnsw.keys() == want.keys()
    assert hnsw["recall@100"] == pytest.approx(want["recall@100"], abs=0.02)


def test_faiss_hnsw_recall_against_exact(data):
    exact10 = data["exact"][:, :10]
    got = retrieval.faiss_search(data["queries"], data["documents"], 10, index="hnsw", ef_search=64)
    assert got.shape == (NUM_QUERIES, 10) and got.dtype == np.int64
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, exact10)])
    assert recall >= 0.95, recall
    # Its own ordering is best first by score.
    rows = np.arange(NUM_QUERIES)[:, None]
    assert (np.diff(data["scores"][rows, got], axis=1) <= 1e-6).all()


def test_k_beyond_corpus_and_errors(data):
    documents, queries = data["documents"][:30], data["queries"][:4]
    for method in ("faiss_flat", "faiss_hnsw"):
        top = retrieval.search_documents(queries, documents, K, method=method)
        assert top.shape == (4, 30)  # min(k, n)
        assert all(sorted(row) == list(range(30)) for row in top)  # every document once
    np.testing.assert_array_equal(
        retrieval.search_documents(queries, documents, K, method="faiss_flat")[:, :5],
        retrieval.exact_search(queries, documents, K)[:, :5],
    )
    empty = retrieval.faiss_search(queries, documents[:0], 5)
    assert empty.shape == (4, 0) and empty.dtype == np.int64
    with pytest.raises(ValueError, match="k must be positive"):
        retrieval.faiss_search(queries, documents, 0)
    with pytest.raises(ValueError, match="need \\[q, d\\] and \\[n, d\\]"):
        retrieval.faiss_search(queries, documents[:, :8], 5)
    with pytest.raises(ValueError, match="need \\[q, d\\] and \\[n, d\\]"):
        retrieval.search_documents(queries[0], documents, 5, method="faiss_hnsw")
    with pytest.raises(ValueError, match="unknown faiss index 'ivf'"):
        retrieval.faiss_search(queries, documents, 5, index="ivf")
    with pytest.raises(ValueError, match="need hnsw_m >= 2"):
        retrieval.faiss_search(queries, documents, 5, index="hnsw", ef_search=0)
    with pytest.raises(ValueError, match="unknown search method 'annoy'; one of exact, "):
        retrieval.search_documents(queries, documents, 5, method="annoy")
    with pytest.raises(TypeError, match="'faiss_flat' takes no option \\['ef_search'\\]"):
        retrieval.search_documents(queries, documents, 5, method="faiss_flat", ef_search=9)

    def never_called(texts, kind):
        raise AssertionError("encoded before the search method was checked")

    corpus, queries_text, qrels = {"d0": "x"}, {"q0": "y"}, {"q0": {"d0": 1}}
    with pytest.raises(ValueError, match="unknown search method 'annoy'"):
        retrieval.evaluate_retrieval(never_called, corpus, queries_text, qrels, search="annoy")
    with pytest.raises(TypeError, match="'exact' takes no option \\['ef_search'\\]"):
        retrieval.evaluate_retrieval(
            never_called, corpus, queries_text, qrels, search_options={"ef_search": 9}
        )


def test_missing_faiss_says_how_to_install(monkeypatch, data):
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    queries, documents = data["queries"][:2], data["documents"][:10]
    for call in (
        lambda: retrieval.faiss_search(queries, documents, 3),
        lambda: retrieval.search_documents(queries, documents, 3, method="faiss_hnsw"),
        lambda: retrieval.evaluate_retrieval(
            lambda texts, kind: pytest.fail("encoded without faiss"),
            {"d0": "x"},
            {"q0": "y"},
            {"q0": {"d0": 1}},
            search="faiss_flat",
        ),
    ):
        with pytest.raises(ImportError, match="pip install faiss-cpu"):
            call()
    # Exact search does not need faiss.
    assert retrieval.search_documents(queries, documents, 3).shape == (2, 3)
