"""BM25 hard-negative mining (`data_pipelines.mined_negatives`): the picks against a float64
BM25 reference, the exclusion of a query's positives, and the mined corpus on disk."""

import numpy as np
import pytest
from corpora import GivenRecords

from cpt_jax.evaluation.bm25 import bm25_scores_reference, code_tokenize
from data_pipelines import corpus
from data_pipelines.mined_negatives import (
    MinedNegativesBuilder,
    mine_bm25_negatives,
    mine_dense_negatives,
)

QUERIES = [
    "parse a json document from text",
    "sort the items by key",
    "parse a json document from text",  # the same docstring on another function
    "open a file for reading",
    "compute the mean of values",
    "write json to a file",
    "sum values in a list",
]
DOCUMENTS = [
    "def loads(text): return json.loads(text)",
    "def sort_items(items, key): return sorted(items, key=key)",
    "def parse(text): return JSONDecoder().decode(text)",
    "def open_file(path): return open(path, 'r')",
    "def mean(values): return sum(values) / len(values)",
    "def dump(obj, path): json.dump(obj, open(path, 'w'))",
    "def total(values): return sum(list(values))",
]


def _eligible_by_reference(i):
    """Documents eligible for pair i, best BM25 first (float64 reference scores)."""
    docs = [code_tokenize(d) for d in DOCUMENTS]
    scores = bm25_scores_reference(code_tokenize(QUERIES[i]), docs)
    own = {j for j, q in enumerate(QUERIES) if q == QUERIES[i]}
    eligible = [j for j in range(len(DOCUMENTS)) if j not in own]
    return sorted(eligible, key=lambda j: -scores[j]), scores


def test_depth_one_takes_the_best_eligible_document_of_the_reference_ranking():
    mined = mine_bm25_negatives(QUERIES, DOCUMENTS, 1, depth=1)
    for i, negatives in enumerate(mined):
        ranking, scores = _eligible_by_reference(i)
        (picked,) = negatives
        assert picked in ranking
        # Ties may be broken either way: the pick scores as high as the best eligible one.
        np.testing.assert_allclose(scores[picked], scores[ranking[0]], rtol=1e-5, atol=1e-6)


def test_a_query_never_gets_its_own_document_or_one_paired_with_the_same_text():
    mined = mine_bm25_negatives(QUERIES, DOCUMENTS, 3, depth=5)
    for i, negatives in enumerate(mined):
        assert len(negatives) == len(set(negatives)) == 3
        assert i not in negatives
        assert not any(QUERIES[j] == QUERIES[i] for j in negatives)
    # Pairs 0 and 2 share their query: neither is the other's negative.
    assert 2 not in mined[0] and 0 not in mined[2]


def test_negatives_come_from_the_top_depth_in_rank_order_and_follow_the_seed():
    depth = 3
    runs = {
        seed: mine_bm25_negatives(QUERIES, DOCUMENTS, 2, depth=depth, seed=seed)
        for seed in range(6)
    }
    for i in range(len(QUERIES)):
        ranking, scores = _eligible_by_reference(i)
        cutoff = scores[ranking[depth - 1]]
        for mined in runs.values():
            picked = mined[i]
            assert all(scores[j] >= cutoff - 1e-6 for j in picked)
            assert scores[picked[0]] >= scores[picked[1]] - 1e-6  # rank order kept
    assert runs[0] == mine_bm25_negatives(QUERIES, DOCUMENTS, 2, depth=depth, seed=0)
    assert len({str(m) for m in runs.values()}) > 1  # the seed changes the draw


def test_a_pair_with_too_few_eligible_documents_gets_none():
    queries = ["same docstring", "same docstring", "other docstring"]
    documents = ["def a(): pass", "def b(): pass", "def c(): pass"]
    assert mine_bm25_negatives(queries, documents, 2, depth=2) == [None, None, [0, 1]]
    with pytest.raises(ValueError, match="num_negatives <= depth"):
        mine_bm25_negatives(queries, documents, 3, depth=2)
    with pytest.raises(ValueError, match="3 queries but 2 documents"):
        mine_bm25_negatives(queries, documents[:2], 1)


def test_the_mined_corpus_keeps_splits_apart_and_carries_negative_ids(tmp_path):
    records = [
        {"query": q, "document": d, "package": f"p{i}"}
        for i, (q, d) in enumerate(zip(QUERIES, DOCUMENTS))
    ]
    source = str(tmp_path / "source")
    corpus.build(GivenRecords("train_part", records[:5]), source, log=lambda *_: None)
    # One corpus with both splits: five train records, then two validation records.
    both = str(tmp_path / "both")

    def split(record):
        return "validation" if record["package"] in ("p5", "p6") else "train"

    corpus.build(GivenRecords("both", records, split=split), both, log=lambda *_: None)
    out = str(tmp_path / "mined")
    manifest = corpus.build(MinedNegativesBuilder(both, 1, depth=2), out, log=lambda *_: None)
    assert manifest["counts"] == {"train": 5, "validation": 2}
    assert manifest["schema"]["negatives"] == corpus.STRING_LIST
    validation_docs = set(DOCUMENTS[5:])
    for split, docs in (("train", DOCUMENTS[:5]), ("validation", DOCUMENTS[5:])):
        for record in corpus.read_split(out, split):
            assert record["package"].startswith("p")  # source metadata kept
            (negative,) = record["negatives"]
            assert negative in docs and negative != record["document"]
            assert (negative in validation_docs) == (split == "validation")
            assert len(record["negative_ids"]) == 1

    only_train = MinedNegativesBuilder(both, 1, splits=["train"])
    assert [u.name for u in only_train.units()] == ["train"]
    with pytest.raises(ValueError, match="no split"):
        MinedNegativesBuilder(source, 1, splits=["validation"])
    with pytest.raises(ValueError, match="already has a 'negatives' field"):
        MinedNegativesBuilder(out, 1)


def _unit_rows(rng, n, dim):
    x = rng.normal(size=(n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_dense_negatives_match_a_float64_ranking_with_the_positive_aware_filter():
    rng = np.random.default_rng(0)
    n, depth, ratio = 60, 4, 0.9
    queries = [f"query {i % 50}" for i in range(n)]  # pairs i and i + 50 share a query
    documents = [f"document {i}" for i in range(n)]
    q, d = _unit_rows(rng, n, 6), _unit_rows(rng, n, 6)
    mined = mine_dense_negatives(
        q.astype(np.float32), d.astype(np.float32), queries, documents, 2,
        depth=depth, max_relative_score=ratio, block_size=16,
    )  # fmt: skip
    scores = q @ d.T  # float64 reference
    for i, picked in enumerate(mined):
        own = {j for j in range(n) if queries[j] == queries[i]}
        eligible = [
            j
            for j in np.argsort(-scores[i], kind="stable")
            if j not in own and scores[i, j] <= ratio * scores[i, i]
        ][:depth]
        if len(eligible) < 2:
            assert picked is None
            continue
        assert set(picked) <= set(eligible)
        assert scores[i, picked[0]] >= scores[i, picked[1]]
    assert sum(m is not None for m in mined) > n // 2


def test_a_document_as_close_as_the_positive_is_never_a_dense_negative():
    queries = ["a", "b", "c"]
    documents = ["x", "y", "z"]
    q = np.eye(3, dtype=np.float32)
    d = np.array([[1, 0, 0], [0.99, 0.14, 0], [0, 0, 1]], np.float32)  # y almost x
    mined = mine_dense_negatives(q, d, queries, documents, 1, depth=1)
    assert mined[0] == [2]  # y scores 0.99 of x's 1.0: too close, so z
    plain = mine_dense_negatives(q, d, queries, documents, 1, depth=1, max_relative_score=1.0)
    assert plain[0] == [1]
    with pytest.raises(ValueError, match="3 pairs but 2 query"):
        mine_dense_negatives(q[:2], d, queries, documents, 1)


def test_a_model_miner_embeds_both_sides_and_unknown_miners_are_refused(tmp_path, monkeypatch):
    records = [{"query": q, "document": d} for q, d in zip(QUERIES, DOCUMENTS)]
    source = str(tmp_path / "source")
    corpus.build(GivenRecords("pairs", records), source, log=lambda *_: None)
    with pytest.raises(ValueError, match="neither 'bm25'"):
        MinedNegativesBuilder(source, 1, miner=str(tmp_path / "no_such_model"))
    rng = np.random.default_rng(1)
    embeddings = {"query": _unit_rows(rng, 7, 4), "document": _unit_rows(rng, 7, 4)}
    calls = []

    class FakeEmbedder:
        def encode(self, texts, kind, batch_size):
            calls.append((kind, list(texts)))
            return embeddings[kind].astype(np.float32)

    builder = MinedNegativesBuilder(source, 1, miner="minilm", depth=2)
    monkeypatch.setattr(builder, "_embedder", FakeEmbedder)
    out = str(tmp_path / "mined")
    corpus.build(builder, out, log=lambda *_: None)
    assert calls == [("query", QUERIES), ("document", DOCUMENTS)]
    expected = mine_dense_negatives(
        embeddings["query"], embeddings["document"], QUERIES, DOCUMENTS, 1, depth=2
    )
    by_query = {
        (r["query"], r["document"]): r["negatives"] for r in corpus.read_split(out, "train")
    }
    for i, negatives in enumerate(expected):
        if negatives is not None:
            assert by_query[(QUERIES[i], DOCUMENTS[i])] == [DOCUMENTS[negatives[0]]]
    assert builder.description()["miner"] == "minilm"


def test_docstring_example():
    import doctest

    from data_pipelines import mined_negatives

    assert doctest.testmod(mined_negatives).failed == 0
