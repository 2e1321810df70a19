"""Dense + BM25 hybrids (`cpt_jax.evaluation.fusion`), against hand-worked values and plain
float64 loops."""

import numpy as np
import pytest

from cpt_jax.evaluation import (
    bm25_code_search,
    bm25_scores_reference,
    candidate_sets,
    code_search_mrr,
    code_tokenize,
    descending_ranks,
    hybrid_code_search,
    reciprocal_rank_fusion,
    score_fusion,
    standardize,
)


def test_standardize_rows_and_constant_rows():
    scores = np.array([[1.0, 2.0, 3.0, 6.0], [4.0, 4.0, 4.0, 4.0]])
    z = standardize(scores)
    mean, std = 3.0, np.sqrt(((1 - 3) ** 2 + 1 + 0 + 9) / 4)
    np.testing.assert_allclose(z[0], (scores[0] - mean) / std)
    np.testing.assert_array_equal(z[1], 0.0)  # no preference, not NaN


def test_score_fusion_by_hand():
    dense = np.array([0.1, 0.5, 0.3])
    lexical = np.array([10.0, 0.0, 20.0])
    zd = (dense - dense.mean()) / dense.std()
    zl = (lexical - lexical.mean()) / lexical.std()
    np.testing.assert_allclose(score_fusion(dense, lexical, 0.5), zd + 0.5 * zl)
    # Weight 0 ranks as dense alone.
    assert np.argsort(-score_fusion(dense, lexical, 0.0)).tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match="weight"):
        score_fusion(dense, lexical, -1.0)
    with pytest.raises(ValueError, match="differ"):
        score_fusion(dense, lexical[:2], 0.1)


def test_descending_ranks_share_the_best_rank_of_ties():
    assert descending_ranks(np.array([3.0, 5.0, 5.0, 1.0])).tolist() == [3, 1, 1, 4]


def test_reciprocal_rank_fusion_by_hand():
    a = np.array([0.9, 0.1, 0.5])  # ranks 1, 3, 2
    b = np.array([0.0, 7.0, 0.0])  # ranks 2, 1, 2 (tied zeros share rank 2)
    fused = reciprocal_rank_fusion([a, b], k=10)
    np.testing.assert_allclose(fused, [1 / 11 + 1 / 12, 1 / 13 + 1 / 11, 1 / 12 + 1 / 12])
    with pytest.raises(ValueError, match="positive"):
        reciprocal_rank_fusion([a, b], k=0)
    with pytest.raises(ValueError, match="shape"):
        reciprocal_rank_fusion([a, b[:2]])


def test_hybrid_code_search_against_plain_loops():
    rng = np.random.default_rng(0)
    words = ["parse", "date", "string", "sort", "list", "read", "file", "json", "url", "quote"]
    n, num_candidates = 40, 12
    queries = [" ".join(rng.choice(words, 3)) for _ in range(n)]
    codes = [f"def f{i}({' '.join(rng.choice(words, 4))}): pass" for i in range(n)]
    q = rng.normal(size=(n, 8)).astype(np.float32)
    c = (q + rng.normal(size=(n, 8), scale=1.5)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    results = hybrid_code_search(
        q, c, queries, codes, weights=(0.0, 0.3), rrf_ks=(10,), num_candidates=num_candidates
    )
    assert set(results) == {"dense", "bm25", "score_fusion_0", "score_fusion_0.3", "rrf_10"}
    # The two systems alone: the library's own evaluations, on the same candidate sets.
    assert results["dense"] == code_search_mrr(q, c, num_candidates=num_candidates)
    assert results["bm25"] == bm25_code_search((queries, codes), num_candidates=num_candidates)
    assert results["score_fusion_0"]["mrr"] == results["dense"]["mrr"]

    # The fusions, recomputed query by query with the plain-Python BM25 formula.
    sets = candidate_sets(n, num_candidates)
    tokens = [code_tokenize(t) for t in codes]
    reciprocal = {"score_fusion_0.3": [], "rrf_10": []}
    for i in range(n):
        dense = (q[i].astype(np.float64) @ c.T.astype(np.float64))[sets[i]]
        lexical = bm25_scores_reference(code_tokenize(queries[i]), tokens)[sets[i]]
        z = [(s - s.mean()) / s.std() if s.std() > 0 else 0 * s for s in (dense, lexical)]
        fused = z[0] + 0.3 * z[1]
        reciprocal["score_fusion_0.3"].append(1 / np.sum(fused >= fused[0] - 1e-9))
        dense_rank = 1 + np.array([np.sum(dense > s) for s in dense])
        lexical_rank = 1 + np.array([np.sum(lexical > s + 1e-9) for s in lexical])
        rrf = 1 / (10 + dense_rank) + 1 / (10 + lexical_rank)
        reciprocal["rrf_10"].append(1 / np.sum(rrf >= rrf[0] - 1e-12))
    for name, values in reciprocal.items():
        assert results[name]["mrr"] == pytest.approx(np.mean(values), abs=1e-9), name
