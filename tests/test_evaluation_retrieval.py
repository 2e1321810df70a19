"""Retrieval metrics (MRR@10, nDCG@10, Recall@100) and exact search, against hand-worked
values and a brute-force sort."""

import numpy as np
import pytest

from cpt_jax.evaluation import retrieval

QRELS = {"d1": 2, "d2": 1, "d5": 1, "d7": 0}  # d7 judged non-relevant
RANKED = ["d3", "d1", "d9", "d2", "d7"]


def test_query_metrics_by_hand():
    m = retrieval.query_metrics(RANKED, QRELS)
    assert m["mrr@10"] == 0.5  # first relevant (d1) at rank 2
    # DCG = 2/log2(3) + 1/log2(5) = 1.6925361; IDCG = 2/log2(2) + 1/log2(3) + 1/log2(4)
    # = 3.1309298 (grades 2, 1, 1 in the ideal order).
    assert m["ndcg@10"] == pytest.approx(1.6925361 / 3.1309298, abs=1e-7)
    assert m["recall@100"] == pytest.approx(2 / 3)  # d1, d2 of d1, d2, d5
    cut = retrieval.query_metrics(RANKED, QRELS, {"mrr": 1, "ndcg": 2, "recall": 2})
    # IDCG@2 takes the two best grades only: 2/log2(2) + 1/log2(3).
    ideal_2 = 2 + 1 / np.log2(3)
    assert cut == {
        "mrr@1": 0.0,
        "ndcg@2": pytest.approx(2 / np.log2(3) / ideal_2),
        "recall@2": 1 / 3,
    }
    perfect = retrieval.query_metrics(["d1", "d2", "d5"], QRELS)
    assert perfect == {"mrr@10": 1.0, "ndcg@10": pytest.approx(1.0), "recall@100": 1.0}


def test_corpus_means_skip_queries_without_relevant_documents():
    qrels = {"q1": QRELS, "q2": {"d4": 1}, "q3": {"d8": 0}}
    ranked = {"q1": RANKED, "q2": ["d9", "d8", "d4"], "q3": ["d8"]}
    m = retrieval.retrieval_metrics(ranked, qrels)
    assert m["num_queries"] == 2 and m["queries_without_relevant"] == 1
    assert m["mrr@10"] == pytest.approx((0.5 + 1 / 3) / 2)
    assert m["recall@100"] == pytest.approx((2 / 3 + 1) / 2)
    with pytest.raises(ValueError, match="query 'q2' is judged but has no ranking"):
        retrieval.retrieval_metrics({"q1": RANKED}, qrels)
    with pytest.raises(ValueError, match="no relevant document"):
        retrieval.query_metrics(["d1"], {"d1": 0})


def test_exact_search_equals_a_brute_force_sort_with_ties_by_index():
    rng = np.random.default_rng(0)
    documents = rng.normal(size=(50, 8)).astype(np.float32)
    documents /= np.linalg.norm(documents, axis=1, keepdims=True)  # unit norm: cosine
    documents[[7, 30]] = documents[3]  # three equal documents: ties
    queries = np.concatenate([documents[[3]], rng.normal(size=(4, 8)).astype(np.float32)])
    got = retrieval.exact_search(queries, documents, k=10)
    for q, row in zip(queries, got):
        scores = [float(np.dot(q.astype(np.float64), d)) for d in documents]
        want = sorted(range(50), key=lambda j: (-round(scores[j], 4), j))[:10]
        assert list(row) == want
    assert list(got[0, :3]) == [3, 7, 30]
    assert retrieval.exact_search(queries, documents, k=500).shape == (5, 50)
    with pytest.raises(ValueError, match="k must be positive"):
        retrieval.exact_search(queries, documents, k=0)
    with pytest.raises(ValueError, match="need \\[q, d\\] and \\[n, d\\]"):
        retrieval.exact_search(queries[:, :4], documents, k=3)


CORPUS = {
    "d1": "parse a date string into a datetime",
    "d2": "sort a list of numbers in place",
    "d3": "open a file and read its lines",
    "d4": "compute the mean of a list of numbers",
}
QUERIES = {"q1": "date string parsing", "q2": "mean of numbers", "q3": "unjudged query"}
JUDGED = {"q1": {"d1": 1}, "q2": {"d4": 2, "d2": 0}}


def word_encoder(texts, kind):
    """Unit-norm bags of word hashes: a stand-in encoder whose rankings are easy to predict."""
    out = np.zeros((len(texts), 64))
    for i, text in enumerate(texts):
        for word in text.split():
            out[i, sum(map(ord, word)) % 64] += 1.0
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_evaluate_retrieval_and_bm25_on_a_tiny_corpus():
    m = retrieval.evaluate_retrieval(word_encoder, CORPUS, QUERIES, JUDGED, k=4)
    # q1 shares 'date', 'string' with d1 only; q2 shares 'mean', 'of', 'numbers' most with d4.
    assert (m["mrr@10"], m["num_queries"]) == (1.0, 2)
    assert m["recall@100"] == 1.0
    bm25 = retrieval.bm25_retrieval(CORPUS, QUERIES, JUDGED)
    assert bm25["mrr@10"] == 1.0 and bm25["num_queries"] == 2
    with pytest.raises(ValueError, match="judged queries have no text"):
        retrieval.evaluate_retrieval(word_encoder, CORPUS, {"q1": "x"}, JUDGED)


def test_load_beir_reads_the_layout_and_refuses_partial_data(tmp_path):
    import json

    from cpt_jax import evaluate

    (tmp_path / "qrels").mkdir()
    docs = [{"_id": "d1", "title": "Dates", "text": "parse a date"}, {"_id": 2, "text": "sort"}]
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "date?"}) + "\n")
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\n")
    corpus, queries, qrels = evaluate.load_beir(str(tmp_path), "test")
    assert corpus == {"d1": "Dates parse a date", "2": "sort"}
    assert queries == {"q1": "date?"} and qrels == {"q1": {"d1": 2}}
    with open(tmp_path / "qrels" / "test.tsv", "a") as f:
        f.write("q1\td9\t1\n")
    with pytest.raises(ValueError, match=r"test\.tsv:3: unknown corpus id 'd9'"):
        evaluate.load_beir(str(tmp_path), "test")
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    with pytest.raises(ValueError, match=r"unusable lines .*qrels_malformed_row"):
        evaluate.load_beir(str(tmp_path), "test")
    with pytest.raises(ValueError, match="qrels split 'valid' is not one of"):
        evaluate.load_beir(str(tmp_path), "valid")
