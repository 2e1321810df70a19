"""Code-search evaluation: the CodeSearchNet protocol and its BM25 (bm25s) baseline."""

import ast
import inspect
import zlib

import numpy as np
import pytest

from cpt_jax.evaluation import (
    bm25_code_search,
    bm25_scores,
    bm25_scores_reference,
    build_bm25_index,
    candidate_sets,
    code_search_mrr,
    code_tokenize,
    evaluate_code_search,
    mean_reciprocal_rank,
    ranks_from_scores,
)

# --------------------------------------------------------------------------- candidate sets


def test_candidate_sets_gold_first_distinct_distractors():
    n, c = 300, 50
    sets = candidate_sets(n, c, seed=3)
    assert sets.shape == (n, c)
    assert np.issubdtype(sets.dtype, np.integer)
    np.testing.assert_array_equal(sets[:, 0], np.arange(n))
    assert sets.min() >= 0 and sets.max() < n
    for i, row in enumerate(sets):
        assert len(set(row.tolist())) == c  # distinct
        assert i not in row[1:]  # gold never a distractor


def test_candidate_sets_deterministic_and_seeded():
    a = candidate_sets(200, 40, seed=7)
    np.testing.assert_array_equal(a, candidate_sets(200, 40, seed=7))
    assert not np.array_equal(a, candidate_sets(200, 40, seed=8))


def test_candidate_sets_distractors_cover_pool_uniformly():
    # Every document (other than the gold) is equally likely to be drawn as a distractor.
    n, c = 100, 20
    sets = candidate_sets(n, c, seed=0)
    counts = np.bincount(sets[:, 1:].ravel(), minlength=n)
    expected = n * (c - 1) / n  # each of the n queries draws c-1 of its n-1 others
    assert counts.min() > 0
    assert abs(counts.mean() - expected) < 1e-9
    assert counts.std() < 3 * np.sqrt(expected)


def test_candidate_sets_all_documents_when_pool_equals_candidates():
    sets = candidate_sets(30, 30)
    for row in sets:
        assert sorted(row.tolist()) == list(range(30))


def test_candidate_sets_errors_on_too_few_examples():
    with pytest.raises(ValueError, match=r"at least 1000"):
        candidate_sets(999, 1000)
    with pytest.raises(ValueError, match="num_candidates"):
        candidate_sets(10, 1)


# --------------------------------------------------------------------------- ranks and MRR


def test_ranks_best_worst_and_pessimistic_ties():
    scores = np.array(
        [
            [5.0, 1.0, 2.0, 3.0],  # gold strictly best -> 1
            [0.0, 1.0, 2.0, 3.0],  # gold strictly worst -> 4
            [2.0, 2.0, 1.0, 3.0],  # one tie and one better -> 3
            [7.0, 7.0, 7.0, 7.0],  # all equal -> C
            [1.0, 0.5, 1.5, 0.9],  # one better -> 2
        ]
    )
    np.testing.assert_array_equal(ranks_from_scores(scores), [1, 4, 3, 4, 2])


def test_ranks_all_equal_is_num_candidates():
    np.testing.assert_array_equal(ranks_from_scores(np.zeros((3, 1000))), [1000] * 3)


def test_ranks_nan_counts_against_gold():
    scores = np.array([[np.nan, 1.0, 2.0], [1.0, np.nan, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(ranks_from_scores(scores), [3, 2, 1])


def test_ranks_rejects_non_matrix():
    with pytest.raises(ValueError):
        ranks_from_scores(np.zeros(5))


def test_mean_reciprocal_rank_hand_cases():
    assert mean_reciprocal_rank([1, 1, 1]) == 1.0
    assert mean_reciprocal_rank([1, 2, 4]) == pytest.approx((1 + 0.5 + 0.25) / 3)
    assert mean_reciprocal_rank(np.array([10])) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        mean_reciprocal_rank([0, 1])
    with pytest.raises(ValueError):
        mean_reciprocal_rank([])


# --------------------------------------------------------------------------- embeddings


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_code_search_mrr_perfect_embeddings():
    rng = np.random.default_rng(0)
    n, d = 1200, 64
    codes = _unit(rng.standard_normal((n, d))).astype(np.float32)
    result = code_search_mrr(codes, codes)  # default protocol: 1,000 candidates
    assert result["mrr"] == 1.0
    assert result["recall@1"] == 1.0 and result["recall@10"] == 1.0
    assert result["num_queries"] == n and result["num_candidates"] == 1000
    identity = np.eye(n, dtype=np.float32)
    assert code_search_mrr(identity, identity)["mrr"] == 1.0


def test_code_search_mrr_random_embeddings_match_uniform_ranks():
    # Query and gold independent -> the gold's rank is uniform on 1..C, E[1/rank] = H_C / C.
    rng = np.random.default_rng(1)
    n, d, c = 3000, 32, 1000
    q = _unit(rng.standard_normal((n, d)))
    k = _unit(rng.standard_normal((n, d)))
    result = code_search_mrr(q, k, num_candidates=c)
    expected = np.sum(1.0 / np.arange(1, c + 1)) / c  # ~0.00749
    var = np.sum(1.0 / np.arange(1, c + 1) ** 2) / c - expected**2
    assert abs(result["mrr"] - expected) < 5 * np.sqrt(var / n)  # ~5 sigma, ~0.0036
    assert result["recall@1"] < 0.005
    assert abs(result["recall@10"] - 10 / c) < 0.01


def test_code_search_mrr_planted_exact():
    # Queries one-hot; code j = s_j * e_j. A query's distractors all score 0, its gold s_i:
    # s_i > 0 -> rank 1; s_i == 0 -> ties with every distractor -> rank C; s_i < 0 -> rank C.
    n, c = 400, 25
    s = np.ones(n)
    s[::2] = 0.0
    s[1::4] = -1.0
    q = np.eye(n)
    k = np.eye(n) * s[:, None]
    ranks = np.where(s > 0, 1, c)
    result = code_search_mrr(q, k, num_candidates=c, seed=5)
    assert result["mrr"] == pytest.approx(np.mean(1.0 / ranks), abs=1e-12)
    assert result["recall@1"] == pytest.approx(np.mean(s > 0))


def test_code_search_groups_report_the_ranks_of_their_own_queries():
    # The planted ranks above, labelled by a group that cuts across them: every group's
    # figures are those of its own queries' ranks, worked out independently.
    n, c = 400, 25
    s = np.ones(n)
    s[::2] = 0.0
    s[1::4] = -1.0
    ranks = np.where(s > 0, 1, c)
    groups = np.array(["b", "a", "c"])[np.arange(n) % 3]
    result = code_search_mrr(np.eye(n), np.eye(n) * s[:, None], num_candidates=c, groups=groups)
    assert list(result["by_group"]) == ["a", "b", "c"]
    for label, figures in result["by_group"].items():
        own = ranks[groups == label]
        assert figures["num_queries"] == len(own)
        assert figures["mrr"] == pytest.approx(np.mean(1.0 / own), abs=1e-12)
        assert figures["recall@1"] == pytest.approx(np.mean(own == 1))
    weighted = sum(f["mrr"] * f["num_queries"] for f in result["by_group"].values()) / n
    assert weighted == pytest.approx(result["mrr"], abs=1e-12)
    without = code_search_mrr(np.eye(n), np.eye(n) * s[:, None], num_candidates=c)
    assert {k: v for k, v in result.items() if k != "by_group"} == without
    with pytest.raises(ValueError, match="3 group labels for 400 queries"):
        code_search_mrr(np.eye(n), np.eye(n), num_candidates=c, groups=["a", "b", "c"])


def test_code_search_mrr_ordered_scores_full_pool():
    # n == C: every document is a candidate of every query, whatever the seed. All queries
    # equal, code j scores v_j: query i's rank is #{j : v_j >= v_i}.
    v = np.array([3.0, 1.0, 1.0, 0.0, 2.0])
    q = np.ones((5, 1))
    k = v[:, None]
    ranks = np.array([1, 4, 4, 5, 2])
    for seed in range(3):
        result = code_search_mrr(q, k, num_candidates=5, seed=seed)
        assert result["mrr"] == pytest.approx(np.mean(1.0 / ranks))


def test_code_search_mrr_duplicate_codes_tie_pessimistically():
    # Code 1 duplicates code 0 (CodeSearchNet has duplicates): queries 0 and 1 tie with it
    # and must get rank 2, however the dot products are summed.
    rng = np.random.default_rng(2)
    n, d = 60, 257
    k = _unit(rng.standard_normal((n, d))).astype(np.float32)
    k[1] = k[0]
    q = k.copy()
    result = code_search_mrr(q, k, num_candidates=n)
    assert result["mrr"] == pytest.approx((n - 2 + 2 * 0.5) / n)


def test_code_search_mrr_chunking_matches_direct(monkeypatch):
    from cpt_jax.evaluation import code_search

    rng = np.random.default_rng(3)
    n, d, c = 500, 16, 50
    q = rng.standard_normal((n, d))
    k = q + 2.0 * rng.standard_normal((n, d))
    sets = candidate_sets(n, c, seed=4)
    direct = ranks_from_scores(np.einsum("nd,ncd->nc", q, k[sets]))
    monkeypatch.setattr(code_search, "_SCORE_CHUNK_BYTES", 8 * n * 7)  # 7 rows a chunk
    result = code_search_mrr(q, k, num_candidates=c, seed=4)
    assert result["mrr"] == pytest.approx(mean_reciprocal_rank(direct), abs=1e-12)
    assert 0.05 < result["mrr"] < 1.0


def test_code_search_mrr_shape_errors():
    with pytest.raises(ValueError, match="shape"):
        code_search_mrr(np.zeros((10, 4)), np.zeros((10, 5)), num_candidates=5)
    with pytest.raises(ValueError, match="at least 20"):
        code_search_mrr(np.zeros((10, 4)), np.zeros((10, 4)), num_candidates=20)


def _hash_embedder(dim=256):
    """Bag of hashed code tokens, unit-normalised: a deterministic toy encoder."""
    calls = []

    def encode(texts, kind):
        calls.append((len(texts), kind))
        out = np.zeros((len(texts), dim), np.float32)
        for row, text in enumerate(texts):
            for token in code_tokenize(text):
                out[row, zlib.crc32(token.encode()) % dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)

    return encode, calls


def test_evaluate_code_search_batches_kinds_and_matches_embeddings(stdlib_pairs):
    encode, calls = _hash_embedder()
    result = evaluate_code_search(encode, stdlib_pairs, num_candidates=20, seed=1, batch_size=16)
    n = len(stdlib_pairs)
    assert sum(size for size, kind in calls if kind == "query") == n
    assert sum(size for size, kind in calls if kind == "document") == n
    assert {kind for _, kind in calls} == {"query", "document"}
    assert max(size for size, _ in calls) <= 16
    queries = encode([p["query"] for p in stdlib_pairs], "query")
    codes = encode([p["code_no_comments"] for p in stdlib_pairs], "document")
    direct = code_search_mrr(queries, codes, num_candidates=20, seed=1)
    assert result == direct
    assert result["mrr"] > 0.3  # shared identifiers make even hashed tokens useful


def test_evaluate_code_search_fails_before_encoding():
    encode, calls = _hash_embedder()
    pairs = [{"query": "a", "code_no_comments": "b"}] * 10
    with pytest.raises(ValueError, match="at least 1000"):
        evaluate_code_search(encode, pairs)
    assert calls == []


def test_evaluate_code_search_and_bm25_group_by_a_pair_field(stdlib_pairs):
    encode, calls = _hash_embedder()
    kw = {"num_candidates": 20, "seed": 1}
    result = evaluate_code_search(encode, stdlib_pairs, group_field="module", **kw)
    queries = encode([p["query"] for p in stdlib_pairs], "query")
    codes = encode([p["code_no_comments"] for p in stdlib_pairs], "document")
    modules = [p["module"] for p in stdlib_pairs]
    assert result == code_search_mrr(queries, codes, groups=modules, **kw)
    assert set(result["by_group"]) == set(modules) and len(set(modules)) > 1
    bm25 = bm25_code_search(stdlib_pairs, group_field="module", **kw)
    assert {k: v for k, v in bm25.items() if k != "by_group"} == bm25_code_search(
        stdlib_pairs, **kw
    )
    assert sum(f["num_queries"] for f in bm25["by_group"].values()) == len(stdlib_pairs)

    calls.clear()
    with pytest.raises(ValueError, match="pair 0 has no field 'package'"):
        evaluate_code_search(encode, stdlib_pairs, group_field="package", **kw)
    assert calls == []  # before encoding anything
    with pytest.raises(ValueError, match="needs pairs as dicts"):
        bm25_code_search((["q"] * 5, ["c"] * 5), num_candidates=2, group_field="module")


def test_evaluate_code_search_checks_encoder_output():
    pairs = [{"query": f"q{i}", "code_no_comments": f"c{i}"} for i in range(8)]
    with pytest.raises(ValueError, match="encode_fn"):
        evaluate_code_search(lambda t, k: np.zeros((1, 3)), pairs, num_candidates=4)


# --------------------------------------------------------------------------- BM25

_STDLIB_MODULES = (
    "textwrap",
    "shlex",
    "fnmatch",
    "posixpath",
    "difflib",
    "heapq",
    "bisect",
    "calendar",
    "base64",
    "string",
    "json.encoder",
    "json.decoder",
    "colorsys",
    "glob",
    "html",
    "ipaddress",
    "statistics",
    "quopri",
)


def _strip_docstring(source):
    tree = ast.parse(source)
    fn = tree.body[0]
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        fn.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)  # drops comments as well


@pytest.fixture(scope="module")
def stdlib_pairs():
    """(docstring summary, code without docstring or comments) of real stdlib functions."""
    import importlib
    import textwrap

    pairs = []
    for name in _STDLIB_MODULES:
        module = importlib.import_module(name)
        for fname, fn in sorted(vars(module).items()):
            if not inspect.isfunction(fn) or fn.__module__ != module.__name__:
                continue
            if fname.startswith("_") or not fn.__doc__:
                continue
            query = inspect.cleandoc(fn.__doc__).split("\n\n")[0].replace("\n", " ")
            try:
                source = inspect.getsource(fn)
            except OSError:  # defined by exec, no source file
                continue
            code = _strip_docstring(textwrap.dedent(source))
            if len(query.split()) >= 3:
                pairs.append({"query": query, "code_no_comments": code, "module": name})
    assert len(pairs) >= 60, len(pairs)
    return pairs


def test_code_tokenize_identifiers():
    tokens = code_tokenize("getHTTPResponse_code")
    assert tokens[0] == "gethttpresponse_code"
    assert set(tokens) == {"gethttpresponse_code", "get", "http", "response", "code"}
    assert code_tokenize("def parse_url(self, rawURL2):") == [
        "def",
        "parse_url",
        "parse",
        "url",
        "self",
        "rawurl2",
        "raw",
        "url",
    ]
    # punctuation splits, one-character tokens dropped, case folded, digits kept as parts
    assert code_tokenize("x = a+b; i.e.") == []
    assert code_tokenize("Return the base64 DATA.") == [
        "return",
        "the",
        "base64",
        "base",
        "64",
        "data",
    ]
    assert code_tokenize("XMLParser __init__") == ["xmlparser", "xml", "parser", "__init__", "init"]
    assert code_tokenize("") == []


def test_bm25s_scores_match_reference(stdlib_pairs):
    docs = [code_tokenize(p["code_no_comments"]) for p in stdlib_pairs]
    queries = [code_tokenize(p["query"]) for p in stdlib_pairs]
    for k1, b in [(1.2, 0.75), (1.5, 0.3), (0.9, 1.0)]:
        retriever = build_bm25_index(docs, k1=k1, b=b)
        nonzero = 0
        for query in queries + [["return", "return", "value"], ["zzz_not_in_vocab"], []]:
            got = bm25_scores(retriever, query)
            want = bm25_scores_reference(query, docs, k1=k1, b=b)
            assert got.shape == (len(docs),)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
            nonzero += int(np.count_nonzero(want))
        assert nonzero > len(queries)  # the comparison is not vacuous


def test_bm25_reference_hand_computed():
    docs = [["a", "b", "b"], ["b", "c"], ["c"]]
    n, avgdl, k1, b = 3, 2.0, 1.2, 0.75
    idf_b = np.log(1 + (n - 2 + 0.5) / (2 + 0.5))
    want0 = idf_b * 2 / (2 + k1 * (1 - b + b * 3 / avgdl))
    want1 = idf_b * 1 / (1 + k1 * (1 - b + b * 2 / avgdl))
    got = bm25_scores_reference(["b"], docs, k1=k1, b=b)
    np.testing.assert_allclose(got, [want0, want1, 0.0])


def test_bm25_code_search_beats_random(stdlib_pairs):
    c = 20
    result = bm25_code_search(stdlib_pairs, num_candidates=c, seed=0)
    random_mrr = np.sum(1.0 / np.arange(1, c + 1)) / c  # ~0.18
    assert result["num_queries"] == len(stdlib_pairs) and result["num_candidates"] == c
    assert result["mrr"] > 2.5 * random_mrr
    assert result["recall@1"] <= result["recall@10"] <= 1.0


def test_bm25_code_search_equals_reference_ranking(stdlib_pairs):
    c, seed = 20, 3
    result = bm25_code_search(stdlib_pairs, num_candidates=c, seed=seed)
    docs = [code_tokenize(p["code_no_comments"]) for p in stdlib_pairs]
    sets = candidate_sets(len(stdlib_pairs), c, seed=seed)
    ranks = [
        ranks_from_scores(
            bm25_scores_reference(code_tokenize(p["query"]), docs)[sets[i]][None].astype(np.float32)
        )[0]
        for i, p in enumerate(stdlib_pairs)
    ]
    assert result["mrr"] == pytest.approx(mean_reciprocal_rank(ranks), abs=1e-12)
    # (queries, codes) tuples give the same result as dicts
    as_tuple = (
        [p["query"] for p in stdlib_pairs],
        [p["code_no_comments"] for p in stdlib_pairs],
    )
    assert bm25_code_search(as_tuple, num_candidates=c, seed=seed) == result


def test_bm25_code_search_unknown_query_is_worst_rank():
    codes = [f"def func_{i}(alpha_{i}): return alpha_{i} + beta" for i in range(10)]
    queries = ["nothing matches here"] * 10
    result = bm25_code_search((queries, codes), num_candidates=10)
    assert result["mrr"] == pytest.approx(0.1)
    queries = [f"func_{i} alpha" for i in range(10)]
    assert bm25_code_search((queries, codes), num_candidates=10)["mrr"] == 1.0


def test_bm25_code_search_errors():
    with pytest.raises(ValueError, match="at least 1000"):
        bm25_code_search((["q"] * 5, ["c"] * 5))
    with pytest.raises(ValueError, match="queries"):
        bm25_code_search((["q"] * 5, ["c"] * 4), num_candidates=2)
