"""Classification probes, k-NN, the TF-IDF baseline and similarity correlations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score

from cpt_jax.evaluation.classification import (
    knn_classify,
    knn_predict,
    linear_probe,
    macro_f1,
    tfidf_logistic_baseline,
)
from cpt_jax.evaluation.similarity import (
    average_ranks,
    pearson,
    similarity_correlations,
    spearman,
)

# ---------------------------------------------------------------- similarity


def test_pearson_hand_computed():
    # dx = [-1.5, -.5, .5, 1.5], y mean 5 -> dy = [-3, -1, 0, 4]; sum dx*dy = 4.5+.5+0+6 = 11,
    # sum dx^2 = 5, sum dy^2 = 26.
    assert pearson([1, 2, 3, 4], [2, 4, 5, 9]) == pytest.approx(11 / math.sqrt(5 * 26))
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_spearman_with_ties_hand_computed():
    # ranks x = [1, 2.5, 2.5, 4], ranks y = [1, 3, 2, 4]; centred: [-1.5, 0, 0, 1.5] and
    # [-1.5, .5, -.5, 1.5]; covariance 4.5, variances 4.5 and 5 -> 4.5 / sqrt(22.5) = 3/sqrt(10).
    np.testing.assert_array_equal(average_ranks([1, 2, 2, 3]), [1, 2.5, 2.5, 4])
    np.testing.assert_array_equal(average_ranks([5, 1, 5, 5]), [3, 1, 3, 3])
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(3 / math.sqrt(10))
    # Monotone but non-linear -> Spearman 1, Pearson below 1.
    x = np.arange(1, 8, dtype=float)
    assert spearman(x, np.exp(x)) == pytest.approx(1.0)
    assert pearson(x, np.exp(x)) < 0.95


def test_correlations_match_scipy_with_many_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=200).astype(float)
    y = x + rng.integers(0, 4, size=200)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    z = rng.normal(size=50)
    w = rng.normal(size=50)
    assert spearman(z, w) == pytest.approx(stats.spearmanr(z, w).statistic, abs=1e-12)


def test_constant_input_gives_nan():
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman([1, 2, 3], [4, 4, 4]))


def test_similarity_correlations():
    angles = np.array([0.1, 0.5, 0.9, 1.3, 1.5])
    scales = np.array([1.0, 3.0, 0.2, 7.0, 2.0])  # cosine must ignore the norms
    a = np.stack([np.cos(angles), np.sin(angles), np.zeros(5)], axis=1) * scales[:, None]
    b = np.tile([2.0, 0.0, 0.0], (5, 1))
    cos = np.cos(angles)
    out = similarity_correlations(a, b, gold=5 * cos + 1)  # affine in the cosine
    assert out == {"pearson": pytest.approx(1.0), "spearman": pytest.approx(1.0), "num_pairs": 5}
    out = similarity_correlations(a, b, gold=-(cos**3))  # monotone decreasing
    assert out["spearman"] == pytest.approx(-1.0)
    assert -1.0 < out["pearson"] < -0.9
    gold = np.array([3.0, 1.0, 2.0, 5.0, 4.0])
    out = similarity_correlations(a, b, gold)
    assert out["pearson"] == pytest.approx(stats.pearsonr(cos, gold).statistic)
    assert out["spearman"] == pytest.approx(stats.spearmanr(cos, gold).statistic)


def test_similarity_errors():
    with pytest.raises(ValueError, match="length mismatch"):
        pearson([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 2 values"):
        spearman([1], [1])
    with pytest.raises(ValueError, match="NaN or infinite"):
        pearson([1, np.nan, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="shape mismatch"):
        similarity_correlations(np.ones((3, 2)), np.ones((3, 4)), [1, 2, 3])
    with pytest.raises(ValueError, match="gold must have shape"):
        similarity_correlations(np.ones((3, 2)), np.ones((3, 2)), [1, 2])
    with pytest.raises(ValueError, match="no pairs"):
        similarity_correlations(np.ones((0, 2)), np.ones((0, 2)), [])


# ---------------------------------------------------------------- linear probe


def _blobs(rng, n_per_class, labels, d=8, spread=0.3):
    centres = np.eye(d)[: len(labels)] * 5.0
    x = np.concatenate([c + spread * rng.normal(size=(n_per_class, d)) for c in centres])
    y = np.repeat(np.array(labels), n_per_class)
    return x, y


def test_linear_probe_separable_reaches_one():
    rng = np.random.default_rng(0)
    labels = ["cat", "dog", "eel"]
    train_x, train_y = _blobs(rng, 20, labels)
    test_x, test_y = _blobs(rng, 10, labels)
    out = linear_probe(train_x, train_y, test_x, test_y)
    assert out == {
        "accuracy": 1.0,
        "macro_f1": 1.0,
        "num_train": 60,
        "num_test": 30,
        "num_classes": 3,
        "num_unseen_test": 0,
    }


def test_linear_probe_shuffled_labels_near_chance():
    rng = np.random.default_rng(1)
    labels = [0, 1, 2, 3]
    train_x, train_y = _blobs(rng, 100, labels)
    test_x, test_y = _blobs(rng, 100, labels)
    out = linear_probe(train_x, rng.permutation(train_y), test_x, rng.permutation(test_y))
    assert abs(out["accuracy"] - 0.25) < 0.1  # 4.6 standard deviations at n = 400
    assert out["macro_f1"] < 0.4


def test_linear_probe_unseen_test_class_counts_as_error():
    rng = np.random.default_rng(2)
    train_x, train_y = _blobs(rng, 10, ["a", "b"])
    test_x = np.eye(8)[[0, 0, 1, 1, 0]] * 5.0
    test_y = np.array(["a", "a", "b", "b", "c"])  # "c" sits in a's blob, never in train
    out = linear_probe(train_x, train_y, test_x, test_y)
    # Predictions a a b b a: accuracy 4/5; F1(a) = 2*2/(4+1+0) = .8, F1(b) = 1, F1(c) = 0.
    assert out["accuracy"] == pytest.approx(0.8)
    assert out["macro_f1"] == pytest.approx((0.8 + 1.0 + 0.0) / 3)
    assert out["num_classes"] == 3
    assert out["num_unseen_test"] == 1


def test_macro_f1_matches_sklearn():
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 5, size=100)
    y_pred = np.where(rng.random(100) < 0.5, y_true, rng.integers(0, 6, size=100))
    assert macro_f1(y_true, y_pred) == pytest.approx(f1_score(y_true, y_pred, average="macro"))


def test_linear_probe_errors():
    x = np.ones((4, 3))
    y = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="length mismatch"):
        linear_probe(x, y[:3], x, y)
    with pytest.raises(ValueError, match="length mismatch"):
        linear_probe(x, y, x, y[:3])
    with pytest.raises(ValueError, match="train_x is empty"):
        linear_probe(np.ones((0, 3)), [], x, y)
    with pytest.raises(ValueError, match="test_x is empty"):
        linear_probe(x, y, np.ones((0, 3)), [])
    with pytest.raises(ValueError, match="width mismatch"):
        linear_probe(x, y, np.ones((4, 2)), y)
    with pytest.raises(ValueError, match=r"must be \[n, d\]"):
        linear_probe(np.ones(4), y, x, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        linear_probe(x, np.zeros(4), x, y)
    with pytest.raises(ValueError, match="NaN or infinite"):
        linear_probe(np.full((4, 3), np.nan), y, x, y)


# ---------------------------------------------------------------- k-NN


def _at(degrees):
    r = np.radians(np.asarray(degrees, float))
    return np.stack([np.cos(r), np.sin(r)], axis=1)


# Train directions (degrees) and labels.
_KNN_TRAIN_X = _at([0, 10, 90, 80, 180]) * np.array([[1.0], [2.0], [0.5], [3.0], [1.0]])
_KNN_TRAIN_Y = np.array(["a", "a", "b", "b", "c"])


def test_knn_hand_made_majority():
    # k=3. 5 deg: t0, t1 (5 away), t3 (75) -> a. 85 deg: t2, t3, t1 -> b.
    # 170 deg: t4 (10 away) is nearest but t2 (80) and t3 (90) outvote it -> b.
    pred = knn_predict(_KNN_TRAIN_X, _KNN_TRAIN_Y, _at([5, 85, 170]), k=3)
    assert pred.tolist() == ["a", "b", "b"]
    # k=1: the single nearest neighbour.
    pred = knn_predict(_KNN_TRAIN_X, _KNN_TRAIN_Y, _at([5, 85, 170]), k=1)
    assert pred.tolist() == ["a", "b", "c"]


def test_knn_vote_tie_broken_by_summed_similarity():
    # k=4. 40 deg: t1 (30), t0 (40), t3 (40), t2 (50): 2 vs 2, a sums cos30+cos40 > b -> a.
    # 50 deg: t3 (30), t2 (40), t1 (40), t0 (50): 2 vs 2, b sums more -> b (not label order).
    pred = knn_predict(_KNN_TRAIN_X, _KNN_TRAIN_Y, _at([40, 50]), k=4)
    assert pred.tolist() == ["a", "b"]


def test_knn_full_tie_broken_by_label_order():
    # The two nearest are the same vector with labels "b" (lower index) and "a": equal votes,
    # equal summed similarity -> "a", the label that sorts first.
    train_x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    train_y = np.array(["b", "a", "c"])
    pred = knn_predict(train_x, train_y, np.array([[1.0, 0.2]]), k=2)
    assert pred.tolist() == ["a"]
    # Near c: c is nearest, and of the two equal copies only the lower index ("b") takes the
    # second place; 1 vote each, c's similarity is larger -> c.
    pred = knn_predict(train_x, train_y, np.array([[0.1, 1.0]]), k=2)
    assert pred.tolist() == ["c"]
    # k=3: all vote, a 1, b 1, c 1 with a and b equal -> by sum: c near c, a (not b) near a/b.
    pred = knn_predict(train_x, train_y, np.array([[0.1, 1.0], [1.0, 0.2]]), k=3)
    assert pred.tolist() == ["c", "a"]
    # k=1: equal similarities at the k-th place go to the lower train index -> "b".
    assert knn_predict(train_x, train_y, np.array([[1.0, 0.2]]), k=1).tolist() == ["b"]


def test_knn_matches_loop_reference():
    rng = np.random.default_rng(4)
    train_x, test_x = rng.normal(size=(60, 5)), rng.normal(size=(25, 5))
    train_y = rng.integers(0, 4, size=60)

    def reference(q, k):
        sims = [float(q @ t / (np.linalg.norm(q) * np.linalg.norm(t))) for t in train_x]
        order = sorted(range(len(sims)), key=lambda i: (-sims[i], i))[:k]
        votes = {}
        for i in order:
            count, total = votes.get(train_y[i], (0, 0.0))
            votes[train_y[i]] = (count + 1, total + sims[i])
        return min(votes, key=lambda c: (-votes[c][0], -votes[c][1], c))

    for k in (1, 4, 7):
        expected = [reference(q, k) for q in test_x]
        assert knn_predict(train_x, train_y, test_x, k=k).tolist() == expected


def test_knn_classify_metrics_and_k_cap():
    test_x = _at([5, 85, 170])
    test_y = np.array(["a", "b", "c"])
    out = knn_classify(_KNN_TRAIN_X, _KNN_TRAIN_Y, test_x, test_y, k=3)
    # Predictions a b b: F1(a) = 1, F1(b) = 2/(2+1) = 2/3, F1(c) = 0.
    assert out["accuracy"] == pytest.approx(2 / 3)
    assert out["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert out["k"] == 3
    assert out["num_train"] == 5 and out["num_test"] == 3 and out["num_classes"] == 3
    out = knn_classify(_KNN_TRAIN_X, _KNN_TRAIN_Y, test_x, test_y, k=100)
    assert out["k"] == 5  # capped at the train size
    # All 5 vote for every query: a 2, b 2, c 1; the a/b tie goes to the larger summed
    # similarity: a at 5 deg, b at 85 deg, b at 170 deg (a's cosines there are negative).
    assert out["accuracy"] == pytest.approx(2 / 3)


def test_knn_errors():
    x = np.ones((3, 2))
    y = np.array([0, 1, 0])
    with pytest.raises(ValueError, match="k must be at least 1"):
        knn_classify(x, y, x, y, k=0)
    with pytest.raises(ValueError, match="k must be at least 1"):
        knn_predict(x, y, x, k=-1)
    with pytest.raises(ValueError, match="length mismatch"):
        knn_classify(x, y[:2], x, y)
    with pytest.raises(ValueError, match="test_x is empty"):
        knn_classify(x, y, np.ones((0, 2)), [])


# ---------------------------------------------------------------- TF-IDF baseline


def test_tfidf_baseline_two_topics():
    train = [
        ("the striker scored a goal in the football match", "sport"),
        ("the team won the match after a late goal", "sport"),
        ("the goalkeeper saved a penalty in the final", "sport"),
        ("fans cheered as the team lifted the trophy", "sport"),
        ("bake the bread in a hot oven for an hour", "food"),
        ("stir the sauce and add salt and pepper", "food"),
        ("chop the onions and fry them in butter", "food"),
        ("the recipe needs flour sugar and butter", "food"),
    ]
    test = [
        ("a late goal won the football match", "sport"),
        ("the team lifted the trophy after the final", "sport"),
        ("fry the onions in butter and add salt", "food"),
        ("bake the bread with flour and sugar", "food"),
    ]
    out = tfidf_logistic_baseline(
        [t for t, _ in train], [y for _, y in train], [t for t, _ in test], [y for _, y in test]
    )
    assert out == {
        "accuracy": 1.0,
        "macro_f1": 1.0,
        "num_train": 8,
        "num_test": 4,
        "num_classes": 2,
        "num_unseen_test": 0,
    }


def test_tfidf_baseline_errors():
    texts = ["a cat", "a dog"]
    with pytest.raises(ValueError, match="length mismatch"):
        tfidf_logistic_baseline(texts, ["x"], texts, ["x", "y"])
    with pytest.raises(ValueError, match="train_texts is empty"):
        tfidf_logistic_baseline([], [], texts, ["x", "y"])
    with pytest.raises(ValueError, match="test_texts is empty"):
        tfidf_logistic_baseline(texts, ["x", "y"], [], [])
    with pytest.raises(TypeError, match="single string"):
        tfidf_logistic_baseline("a cat", ["x"], texts, ["x", "y"])
    with pytest.raises(TypeError, match="only strings"):
        tfidf_logistic_baseline(["a cat", 3], ["x", "y"], texts, ["x", "y"])
