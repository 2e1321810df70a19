"""`cpt_jax.quantization` against independent references: float64 numpy for truncation,
Python integers for int8 dot products, bit counting of Python ints for Hamming distances,
a Python sort for sentence-transformers-style binary rescoring."""

import doctest
import json
import math

import numpy as np
import pytest

from cpt_jax import quantization
from cpt_jax.quantization import PRECISIONS, VectorFormat, bytes_per_vector, truncate


def unit(rng, n, d):
    x = rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def bits_as_int(row, dims):
    """The sign bits of `row[:dims]` as one Python int (x > 0 -> 1)."""
    return int("".join("1" if v > 0 else "0" for v in row[:dims]), 2)


def hamming_score(a, b, dims):
    return dims - 2 * bin(bits_as_int(a, dims) ^ bits_as_int(b, dims)).count("1")


def reference_rescored_ranking(query, docs, dims, k):
    """Python: the best k by Hamming score (ties: lower index) first, ordered by
    <q, sign(x)> / sqrt(D) (ties: lower index), then the rest by Hamming score."""
    q = [float(v) for v in truncate(np.asarray([query]), dims)[0]]
    binary = [hamming_score(query, doc, dims) for doc in docs]
    by_binary = sorted(range(len(docs)), key=lambda i: (-binary[i], i))
    candidates, rest = by_binary[:k], by_binary[k:]
    signs = lambda doc: [1.0 if v > 0 else -1.0 for v in doc[:dims]]
    rescored = {
        i: sum(a * b for a, b in zip(q, signs(docs[i]))) / math.sqrt(dims) for i in candidates
    }
    return sorted(candidates, key=lambda i: (-rescored[i], i)) + rest, rescored


def ranking(scores):
    """Indices by score descending, then index ascending (as the evaluation ranks)."""
    return list(np.lexsort((np.arange(len(scores)), -scores)))


def test_docstring_examples_run():
    result = doctest.testmod(quantization)
    assert result.attempted >= 15 and result.failed == 0, result


def test_truncate_renormalises_prefixes_and_keeps_zero_rows_zero():
    rng = np.random.default_rng(0)
    x = unit(rng, 5, 12)
    x[2] = 0.0
    got = truncate(x, 7)
    ref = x[:, :7].astype(np.float64)
    norms = np.linalg.norm(ref, axis=1, keepdims=True)
    ref = np.divide(ref, norms, out=np.zeros_like(ref), where=norms > 0)
    assert got.dtype == np.float32 and got.shape == (5, 7)
    np.testing.assert_allclose(got, ref, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(got[[0, 1, 3, 4]], axis=1), 1.0, atol=1e-6)
    assert np.all(np.isfinite(got)) and not got[2].any()
    # None: every coordinate, still re-normalised and float32.
    full = truncate(3 * x.astype(np.float64), None)
    assert full.dtype == np.float32 and full.shape == (5, 12)
    np.testing.assert_allclose(full, x, atol=1e-6)


def test_zero_vectors_encode_and_score_without_nan():
    zeros = np.zeros((2, 10))
    assert not VectorFormat(precision="int8", int8_step=0.01).encode(zeros).any()
    assert not VectorFormat(precision="binary").encode(zeros).any()
    fmt, stored = VectorFormat(precision="int8").store(zeros)
    assert fmt.int8_step == pytest.approx(1 / 127) and not stored.any()
    for precision in PRECISIONS:
        fmt, stored = VectorFormat(precision=precision).store(np.ones((3, 10)))
        assert np.all(np.isfinite(fmt.scores(zeros, stored)))


def test_bytes_per_vector():
    assert [bytes_per_vector(12, p) for p in ("float32", "int8", "binary")] == [48, 12, 2]
    assert [bytes_per_vector(d, "binary") for d in (1, 8, 9, 20)] == [1, 1, 2, 3]
    assert VectorFormat(None, "int8").bytes_per_vector(384) == 384
    assert VectorFormat(64, "binary").bytes_per_vector(384) == 8


def test_int8_calibration_maps_the_largest_coordinate_to_127_within_half_a_step():
    rng = np.random.default_rng(1)
    x = unit(rng, 50, 16)
    fmt, codes = VectorFormat(precision="int8").store(x)
    largest = np.abs(x.astype(np.float64)).max()
    assert fmt.int8_step == pytest.approx(largest / 127)
    assert codes.dtype == np.int8 and np.abs(codes).max() == 127
    assert np.abs(codes * fmt.int8_step - x).max() <= fmt.int8_step / 2 + 1e-7
    # Calibration uses the truncated (re-normalised) vectors.
    short = VectorFormat(4, "int8").calibrate(x)
    assert short.int8_step == pytest.approx(np.abs(truncate(x, 4)).max() / 127)
    # A given step is kept by store; outside its range codes clip, never wrap around.
    kept, wide = VectorFormat(precision="int8", int8_step=0.001).store(x)
    assert kept.int8_step == 0.001 and wide.min() >= -127 and wide.max() == 127
    # Other precisions have nothing to calibrate.
    for fmt in (VectorFormat(), VectorFormat(8, "binary", rescore=3)):
        assert fmt.calibrate(x) is fmt


def test_int8_scores_are_exact_integer_dot_products_times_the_step_squared():
    rng = np.random.default_rng(2)
    q, d = unit(rng, 4, 10), unit(rng, 9, 10)
    fmt, stored = VectorFormat(precision="int8").store(d)
    q_codes = [[max(-127, min(127, round(float(v) / fmt.int8_step))) for v in row] for row in q]
    want = [
        [sum(a * int(b) for a, b in zip(qr, dr)) * fmt.int8_step**2 for dr in stored]
        for qr in q_codes
    ]
    got = fmt.scores(q, stored)
    assert got.dtype == np.float32 and got.shape == (4, 9)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_float32_scores_are_float64_dot_products_of_truncated_vectors():
    rng = np.random.default_rng(4)
    q, d = unit(rng, 3, 20), unit(rng, 6, 20)
    fmt, stored = VectorFormat(8).store(d)
    want = truncate(q, 8).astype(np.float64) @ truncate(d, 8).astype(np.float64).T
    got = fmt.scores(q, stored)
    assert stored.shape == (6, 8) and got.dtype == np.float32
    np.testing.assert_array_equal(got, want.astype(np.float32))


@pytest.mark.parametrize("dims", [12, 20, 8, 1])
def test_binary_scores_are_d_minus_twice_hamming_padding_bits_ignored(dims):
    rng = np.random.default_rng(dims)
    q, d = unit(rng, 3, 32), unit(rng, 7, 32)
    fmt = VectorFormat(dims, "binary")
    _, stored = fmt.store(d)
    assert stored.dtype == np.uint8 and stored.shape == (7, -(-dims // 8))
    # Padding bits are zero in storage; garbage there must not count either.
    stored_dirty = stored.copy()
    if dims % 8:
        stored_dirty[:, -1] |= (1 << (8 - dims % 8)) - 1
    want = [[hamming_score(a, b, dims) for b in d] for a in q]
    np.testing.assert_array_equal(fmt.scores(q, stored), want)
    np.testing.assert_array_equal(fmt.scores(q, stored_dirty), want)


def test_rescoring_ties_go_to_the_lower_index_wherever_the_relevant_document_sits():
    # 4 dimensions; documents 0..3 share the query's signs (Hamming 0), document 4 does not.
    q = truncate(np.array([[0.1, 0.2, 0.3, 0.9]]), None)
    relevant = [0.1, 0.1, 0.1, 0.98]  # its float dot with q is the best, its signs tie
    others = [[0.5, 0.5, 0.5, 0.5], [0.7, 0.1, 0.1, 0.7], [0.2, 0.3, 0.4, 0.8]]
    worse = [-0.5, 0.5, 0.5, 0.5]
    fmt = VectorFormat(precision="binary", rescore=2)
    # The relevant document last among its equals: not among the 2 candidates (0, 1).
    _, stored = fmt.store(np.array([*others, relevant, worse], np.float32))
    scores = fmt.scores(q, stored)[0]
    np.testing.assert_array_equal(scores[2:], [4 - 6, 4 - 6, 2 - 6])
    np.testing.assert_allclose(scores[:2], q.sum() / 2, rtol=1e-6)  # same signs: equal r
    assert ranking(scores) == [0, 1, 2, 3, 4]
    # First among its equals: a candidate, ranked first. The same rule either way.
    _, stored = fmt.store(np.array([relevant, *others, worse], np.float32))
    scores = fmt.scores(q, stored)[0]
    assert set(np.flatnonzero(scores > -2)) == {0, 1} and ranking(scores)[:2] == [0, 1]


@pytest.mark.parametrize("dims, k", [(12, 5), (20, 9), (12, 1), (5, 30), (20, 100)])
def test_rescoring_matches_a_python_reference_with_many_ties(dims, k):
    rng = np.random.default_rng(dims * 100 + k)
    # Few sign patterns (many exact Hamming ties), random magnitudes: distinct float scores.
    patterns = np.where(rng.random((6, 24)) < 0.5, -1.0, 1.0)
    docs = (patterns[rng.integers(0, 6, 30)] * rng.uniform(0.1, 1.0, (30, 24))).astype(np.float32)
    queries = rng.normal(size=(4, 24)).astype(np.float32)
    fmt, stored = VectorFormat(dims, "binary", rescore=k).store(docs)
    scores = fmt.scores(queries, stored)
    assert scores.shape == (4, 30) and scores.dtype == np.float32
    for query, row in zip(queries, scores):
        want, rescored = reference_rescored_ranking(query, docs, dims, k)
        assert ranking(row) == want
        candidates = sorted(rescored)
        np.testing.assert_allclose(row[candidates], [rescored[i] for i in candidates], atol=1e-6)
        rest = sorted(set(range(30)) - set(rescored))
        np.testing.assert_array_equal(
            row[rest], [hamming_score(query, docs[i], dims) - dims - 2 for i in rest]
        )


def test_rescore_at_least_n_rescores_everything():
    rng = np.random.default_rng(5)
    q, d = unit(rng, 3, 16), unit(rng, 7, 16)
    for k in (7, 50):
        fmt, stored = VectorFormat(precision="binary", rescore=k).store(d)
        want = q.astype(np.float64) @ np.where(d > 0, 1.0, -1.0).T / 4
        np.testing.assert_allclose(fmt.scores(q, stored), want, atol=1e-6)
    empty = VectorFormat(precision="binary", rescore=3).scores(q, np.zeros((0, 2), np.uint8))
    assert empty.shape == (3, 0)


def test_rescored_order_survives_float32_at_large_widths():
    # 2048 dimensions, 12 documents each flipping one sign: equal Hamming scores, rescored
    # values 1e-6 apart, increasing with the index; an offset of ~D would round them equal.
    dims = 2048
    q = (1.0 + 1e-3 * np.arange(dims, 0, -1))[None]
    docs = np.ones((12, dims))
    docs[np.arange(12), np.arange(12)] = -1
    fmt, stored = VectorFormat(precision="binary", rescore=12).store(docs)
    assert ranking(fmt.scores(q, stored)[0]) == list(range(11, -1, -1))


def test_scoring_in_blocks_equals_scoring_at_once(monkeypatch):
    rng = np.random.default_rng(6)
    q, d = unit(rng, 5, 24), unit(rng, 40, 24)
    formats = [VectorFormat(), VectorFormat(precision="int8"), VectorFormat(20, "binary")]
    formats.append(VectorFormat(20, "binary", rescore=6))
    stored = [fmt.store(d) for fmt in formats]
    at_once = [fmt.scores(q, s) for fmt, s in stored]
    monkeypatch.setattr(quantization, "_BLOCK", 50)
    for (fmt, s), want in zip(stored, at_once):
        np.testing.assert_array_equal(fmt.scores(q, s), want)


def test_quality_orders_as_expected_on_planted_neighbours():
    rng = np.random.default_rng(3)
    docs = unit(rng, 400, 64)
    queries = truncate(docs[:200] + 1.5 * unit(rng, 200, 64), None)
    accuracy = {}
    formats = [VectorFormat(precision=p) for p in PRECISIONS]
    for fmt in [*formats, VectorFormat(precision="binary", rescore=10), VectorFormat(16)]:
        fmt, stored = fmt.store(docs)
        top = np.argmax(fmt.scores(queries, stored), axis=1)
        accuracy[fmt.name] = np.mean(top == np.arange(200))
    assert accuracy["full-float32"] >= accuracy["full-int8"] - 0.02, accuracy
    assert accuracy["full-int8"] >= accuracy["full-binary"] + 0.1, accuracy
    assert accuracy["full-binary-rescore10"] >= accuracy["full-binary"] + 0.05, accuracy
    assert accuracy["full-float32"] >= accuracy["16d-float32"] + 0.1, accuracy


def test_json_round_trip_and_names():
    for fmt in (
        VectorFormat(128, "int8", int8_step=0.0042),
        VectorFormat(),
        VectorFormat(64, "binary", rescore=40),
    ):
        assert VectorFormat.from_json(json.loads(json.dumps(fmt.to_json()))) == fmt
    assert VectorFormat(128, "int8").name == "128d-int8" and VectorFormat().name == "full-float32"
    assert VectorFormat(64, "binary", rescore=40).name == "64d-binary-rescore40"
    # numpy numbers are accepted and stored as plain Python numbers (JSON-serialisable).
    fmt = VectorFormat(np.int64(64), "binary", rescore=np.int32(5))
    assert json.dumps(fmt.to_json()) == (
        '{"dimensions": 64, "precision": "binary", "int8_step": null, "rescore": 5}'
    )
    assert type(VectorFormat(precision="int8", int8_step=np.float32(0.5)).int8_step) is float


def _scores(fmt, stored, width=8):
    return lambda: fmt.scores(np.ones((1, width)), stored)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: VectorFormat(precision="int4"), "precision must be one of .* 'int4'"),
        (lambda: bytes_per_vector(8, "fp16"), "precision must be one of .* 'fp16'"),
        (lambda: bytes_per_vector(0, "int8"), "dimensions must be at least 1, got 0"),
        (lambda: VectorFormat(0), "dimensions must be at least 1, got 0"),
        (lambda: VectorFormat(2.5), "dimensions must be an integer, got 2.5"),
        (lambda: VectorFormat(precision="int8", int8_step=0.0), "positive and finite, got 0.0"),
        (lambda: VectorFormat(precision="int8", int8_step=-1.0), "positive and finite, got -1"),
        (lambda: VectorFormat(precision="int8", int8_step=float("nan")), "finite, got nan"),
        (lambda: VectorFormat(precision="int8", int8_step=float("inf")), "finite, got inf"),
        (lambda: VectorFormat(precision="int8", int8_step="0.1"), "int8_step must be a number"),
        (lambda: VectorFormat(int8_step=0.1), "int8_step applies to int8, not float32"),
        (lambda: VectorFormat(rescore=3), "rescore applies to binary, not float32"),
        (lambda: VectorFormat(precision="binary", rescore=0), "rescore must be at least 1"),
        (lambda: VectorFormat(precision="binary", rescore=2.0), "rescore must be an integer"),
        (
            lambda: VectorFormat.from_json({"precision": "int8", "colour": 1}),
            r"unknown vector format fields \['colour'\]",
        ),
        (lambda: VectorFormat.from_json({"dimensions": "64"}), "dimensions must be an integer"),
        (lambda: VectorFormat.from_json({"precision": 8}), "precision must be one of"),
        (lambda: VectorFormat.from_json([]), "JSON object, got list"),
        (lambda: truncate(np.ones((2, 4)), 5), "dimensions=5 exceeds the vectors' width 4"),
        (lambda: truncate(np.ones((2, 4)), 0), "dimensions must be at least 1, got 0"),
        (lambda: truncate(np.ones(4), 2), r"2-D \[n, d\] array, got shape \[4\]"),
        (lambda: VectorFormat(8).encode(np.ones((2, 4))), "exceeds the vectors' width 4"),
        (lambda: VectorFormat(precision="int8").encode(np.ones((2, 4))), "calibrate first"),
        (
            lambda: VectorFormat(precision="int8").scores(
                np.ones((1, 4)), np.ones((1, 4), np.int8)
            ),
            "calibrate first",
        ),
        (lambda: VectorFormat(precision="int8").calibrate(np.ones((0, 4))), "no vectors"),
        (
            _scores(VectorFormat(4, "binary"), np.ones((3, 4), np.uint8)),
            r"stored as uint8 \[n, 1\]; got uint8 \[3, 4\]",
        ),
        (
            _scores(VectorFormat(12, "binary", rescore=2), np.ones((3, 1), np.uint8), 16),
            r"stored as uint8 \[n, 2\]; got uint8 \[3, 1\]",
        ),
        (_scores(VectorFormat(4), np.ones((3, 4), np.float64)), "float32 .*; got float64"),
        (
            _scores(VectorFormat(4, "int8", int8_step=0.1), np.ones((3, 4), np.uint8)),
            r"int8 \[n, 4\]; got uint8",
        ),
        (_scores(VectorFormat(), np.ones((3, 4), np.float32)), r"float32 \[n, 8\]; got"),
        (_scores(VectorFormat(), np.ones(8, np.float32)), "stored vectors must be a 2-D"),
    ],
)
def test_bad_input_is_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()
