"""`cpt_jax.quantization` against independent references: float64 numpy for truncation,
Python integers for int8 dot products, bit counting of Python ints for Hamming distances."""

import doctest

import numpy as np
import pytest

from cpt_jax import quantization
from cpt_jax.quantization import VectorFormat, bytes_per_vector, truncate


def unit(rng, n, d):
    x = rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_docstring_examples_run():
    result = doctest.testmod(quantization)
    assert result.attempted >= 5 and result.failed == 0, result


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
    assert np.all(np.isfinite(got)) and not got[2].any()
    np.testing.assert_allclose(truncate(x, None), x, atol=1e-7)


def test_bytes_per_vector():
    assert [bytes_per_vector(12, p) for p in ("float32", "int8", "binary")] == [48, 12, 2]
    assert bytes_per_vector(8, "binary") == 1
    assert VectorFormat(None, "int8").bytes_per_vector(384) == 384


def test_int8_calibration_maps_the_largest_coordinate_to_127_within_half_a_step():
    rng = np.random.default_rng(1)
    x = unit(rng, 50, 16)
    fmt, codes = VectorFormat(precision="int8").store(x)
    largest = np.abs(x.astype(np.float64)).max()
    assert fmt.int8_step == pytest.approx(largest / 127)
    assert codes.dtype == np.int8 and np.abs(codes).max() == 127
    assert np.abs(codes * fmt.int8_step - x).max() <= fmt.int8_step / 2 + 1e-7
    # Outside the calibration range: clipped, never wrapped around.
    wide = VectorFormat(precision="int8", int8_step=0.001).encode(x)
    assert wide.min() >= -127 and wide.max() == 127


def test_int8_scores_are_exact_integer_dot_products_times_the_step_squared():
    rng = np.random.default_rng(2)
    q, d = unit(rng, 4, 10), unit(rng, 9, 10)
    fmt, stored = VectorFormat(precision="int8").store(d)
    q_codes = [[int(round(v / fmt.int8_step)) for v in row] for row in q.astype(np.float64)]
    want = [
        [sum(a * int(b) for a, b in zip(qr, dr)) * fmt.int8_step**2 for dr in stored]
        for qr in q_codes
    ]
    np.testing.assert_allclose(fmt.scores(q, stored), want, rtol=1e-6)


@pytest.mark.parametrize("dims", [12, 20, 8])
def test_binary_scores_are_d_minus_twice_hamming_padding_bits_ignored(dims):
    rng = np.random.default_rng(dims)
    q, d = unit(rng, 3, 32), unit(rng, 7, 32)
    fmt = VectorFormat(dims, "binary")
    _, stored = fmt.store(d)
    assert stored.dtype == np.uint8 and stored.shape == (7, -(-dims // 8))
    as_int = lambda row: int("".join("1" if v > 0 else "0" for v in row[:dims]), 2)
    want = [[dims - 2 * bin(as_int(a) ^ as_int(b)).count("1") for b in d] for a in q]
    np.testing.assert_array_equal(fmt.scores(q, stored), want)


def test_rescoring_ranks_candidates_by_the_float_query_then_the_rest_ties_by_index():
    # 4 dimensions; documents 0..3 share the query's signs (Hamming 0), document 4 does not.
    q = truncate(np.array([[0.1, 0.2, 0.3, 0.9]]), None)  # unit norm, as the scores use it
    d = np.array(
        [[0.5, 0.5, 0.5, 0.5], [0.1, 0.1, 0.1, 0.98], [0.7, 0.1, 0.1, 0.7], [0.2, 0.3, 0.4, 0.8],
         [-0.5, 0.5, 0.5, 0.5]], np.float32)  # fmt: skip
    plain = VectorFormat(precision="binary")
    _, stored = plain.store(d)
    np.testing.assert_array_equal(plain.scores(q, stored), [[4, 4, 4, 4, 2]])
    # All four tie by Hamming: the best 2 are the lowest indices (0, 1), wherever the
    # document that matters sits; their rescored values all equal sum(q) / 2.
    fmt = VectorFormat(precision="binary", rescore=2)
    scores = fmt.scores(q, stored)[0]
    order = np.lexsort((np.arange(5), -scores))
    assert list(order) == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(scores[:2], q.sum() / 2 + 4 + 2, rtol=1e-6)
    # Reversing the stored order reverses which two are rescored (the lower indices).
    reversed_scores = fmt.scores(q, stored[::-1].copy())[0]
    assert set(np.flatnonzero(reversed_scores > 4)) == {1, 2}
    # rescore >= n rescores everything: the ranking is <q, sign(x)>, then by index.
    everything = VectorFormat(precision="binary", rescore=50).scores(q, stored)[0]
    signs = np.where(d > 0, 1.0, -1.0)
    np.testing.assert_allclose(everything, signs @ q[0] / 2 + 6, rtol=1e-6)


def test_quality_orders_as_expected_on_planted_neighbours():
    rng = np.random.default_rng(3)
    docs = unit(rng, 400, 64)
    queries = truncate(docs[:200] + 1.2 * unit(rng, 200, 64), None)
    accuracy = {}
    for fmt in (VectorFormat(), VectorFormat(precision="int8"), VectorFormat(precision="binary")):
        fmt, stored = fmt.store(docs)
        accuracy[fmt.precision] = np.mean(
            np.argmax(fmt.scores(queries, stored), axis=1) == np.arange(200)
        )
    assert accuracy["float32"] >= accuracy["int8"] - 0.02, accuracy
    assert accuracy["int8"] >= accuracy["binary"] + 0.05, accuracy


def test_json_round_trip_and_names():
    fmt = VectorFormat(128, "int8", int8_step=0.0042)
    assert VectorFormat.from_json(fmt.to_json()) == fmt
    assert fmt.name == "128d-int8" and VectorFormat().name == "full-float32"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: VectorFormat(precision="int4"), "precision must be one of"),
        (lambda: VectorFormat(0), "at least 1"),
        (lambda: VectorFormat(2.5), "must be an integer"),
        (lambda: VectorFormat(precision="int8", int8_step=0.0), "positive and finite"),
        (lambda: VectorFormat(precision="int8", int8_step=float("nan")), "positive and finite"),
        (lambda: VectorFormat(int8_step=0.1), "int8_step applies to int8"),
        (lambda: VectorFormat(rescore=3), "rescore applies to binary"),
        (lambda: VectorFormat(precision="binary", rescore=0), "at least 1"),
        (
            lambda: VectorFormat.from_json({"precision": "int8", "colour": 1}),
            "unknown vector format fields",
        ),
        (lambda: VectorFormat.from_json({"dimensions": "64"}), "must be an integer"),
        (lambda: truncate(np.ones((2, 4)), 5), "exceeds the vectors' width 4"),
        (lambda: truncate(np.ones(4), 2), "2-D"),
        (lambda: VectorFormat(precision="int8").encode(np.ones((2, 4))), "calibrate first"),
        (lambda: VectorFormat(precision="int8").calibrate(np.ones((0, 4))), "no vectors"),
        (
            lambda: VectorFormat(4, "binary").scores(np.ones((1, 8)), np.ones((3, 4), np.uint8)),
            r"uint8 \[n, 1\]",
        ),
        (lambda: VectorFormat(4).scores(np.ones((1, 8)), np.ones((3, 4), np.float64)), "float32"),
    ],
)
def test_bad_input_is_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()
