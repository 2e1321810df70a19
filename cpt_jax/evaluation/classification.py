"""Classification probes on frozen embeddings, and a TF-IDF baseline to print beside them.

All functions take a train split and a test split and return a dictionary of metrics with at
least {"accuracy", "macro_f1", "num_train", "num_test", "num_classes"}.

Labels may be any sortable values (ints, strings). A test label that never occurs in the train
split cannot be predicted, so every such test example counts as an error: it stays in the
accuracy's denominator and its class enters the macro F1 with F1 0 (never silently dropped).
"num_unseen_test" reports how many test examples that affected.

Macro F1 is the unweighted mean of per-class F1 over the classes that occur in the test labels
or in the predictions (as scikit-learn's `f1_score(average="macro")`); a class with no true
positives has F1 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Rows with a norm below this are treated as zero vectors (cosine similarity 0 with anything).
_NORM_EPS = 1e-12
# float64 similarity entries held at once by `knn_classify` (test rows x train rows).
_SIM_CHUNK_ELEMENTS = 8 * 2**20


def _check_labels(y, n: int, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of labels, got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"length mismatch: {n} examples but {y.shape[0]} labels in {name}")
    return y


def _check_split(train_x, train_y, test_x, test_y) -> tuple[np.ndarray, ...]:
    """Validate `[n, d]` embeddings and `[n]` labels of both splits."""
    train_x = np.asarray(train_x, np.float64)
    test_x = np.asarray(test_x, np.float64)
    for name, x in (("train_x", train_x), ("test_x", test_x)):
        if x.ndim != 2:
            raise ValueError(f"{name} must be [n, d] embeddings, got shape {x.shape}")
        if x.shape[0] == 0:
            raise ValueError(f"{name} is empty")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name} contains NaN or infinite values")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"embedding width mismatch: train_x has {train_x.shape[1]}, "
            f"test_x has {test_x.shape[1]}"
        )
    train_y = _check_labels(train_y, train_x.shape[0], "train_y")
    test_y = _check_labels(test_y, test_x.shape[0], "test_y")
    return train_x, train_y, test_x, test_y


def _check_texts(texts, y, name: str) -> tuple[list[str], np.ndarray]:
    if isinstance(texts, str):
        raise TypeError(f"{name} must be a sequence of strings, not a single string")
    texts = list(texts)
    if not texts:
        raise ValueError(f"{name} is empty")
    if not all(isinstance(t, str) for t in texts):
        raise TypeError(f"{name} must contain only strings")
    return texts, _check_labels(y, len(texts), name.replace("texts", "y"))


def macro_f1(y_true, y_pred) -> float:
    """Unweighted mean F1 over the classes present in `y_true` or `y_pred` (both `[n]`)."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    classes = np.unique(np.concatenate([y_true, y_pred]))
    scores = []
    for c in classes:
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        scores.append(0.0 if tp == 0 else 2.0 * tp / (2.0 * tp + fp + fn))
    return float(np.mean(scores))


def _metrics(train_y: np.ndarray, test_y: np.ndarray, pred: np.ndarray) -> dict:
    seen = np.isin(test_y, np.unique(train_y))
    return {
        "accuracy": float(np.mean(pred == test_y)),
        "macro_f1": macro_f1(test_y, pred),
        "num_train": int(train_y.shape[0]),
        "num_test": int(test_y.shape[0]),
        "num_classes": int(np.unique(np.concatenate([train_y, test_y])).shape[0]),
        "num_unseen_test": int(np.sum(~seen)),
    }


def _fit_predict_logistic(train_x, train_y, test_x, *, c: float, max_iter: int, seed: int):
    from sklearn.linear_model import LogisticRegression

    if np.unique(train_y).shape[0] < 2:
        raise ValueError("logistic regression needs at least 2 classes in the train labels")
    if c <= 0:
        raise ValueError(f"c must be positive, got {c}")
    model = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
    model.fit(train_x, train_y)
    return model.predict(test_x)


def linear_probe(
    train_x, train_y, test_x, test_y, *, c: float = 1.0, max_iter: int = 1000, seed: int = 0
) -> dict:
    """Multinomial logistic regression on frozen embeddings.

    train_x `[n_train, d]`, train_y `[n_train]`, test_x `[n_test, d]`, test_y `[n_test]`;
    `c` is the inverse L2 strength (scikit-learn's `C`), fitted with lbfgs on the raw features.
    Returns {"accuracy", "macro_f1", "num_train", "num_test", "num_classes",
    "num_unseen_test"}; test classes absent from train count as errors (see the module doc).
    num_classes counts the distinct labels of both splits. Needs >= 2 train classes.
    """
    train_x, train_y, test_x, test_y = _check_split(train_x, train_y, test_x, test_y)
    pred = _fit_predict_logistic(train_x, train_y, test_x, c=c, max_iter=max_iter, seed=seed)
    return _metrics(train_y, test_y, pred)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _NORM_EPS)


def knn_predict(train_x, train_y, test_x, *, k: int = 10) -> np.ndarray:
    """Cosine k-NN majority vote: `[n_train, d]`, `[n_train]`, `[n_test, d]` -> `[n_test]` labels.

    The k train rows most cosine-similar to each test row vote (a zero row has similarity 0
    with everything). Equal similarities at the k-th place go to the lower train index. A tie in
    votes goes to the label with the larger summed similarity of its voters, then to the label
    that sorts first (`np.unique` order). k is capped at n_train.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    train_x = _unit_rows(np.asarray(train_x, np.float64))
    test_x = _unit_rows(np.asarray(test_x, np.float64))
    classes, train_idx = np.unique(np.asarray(train_y), return_inverse=True)
    train_idx = train_idx.reshape(-1)
    k = min(k, train_x.shape[0])
    num_classes = classes.shape[0]
    chunk = max(1, _SIM_CHUNK_ELEMENTS // train_x.shape[0])
    pred = np.empty(test_x.shape[0], np.int64)
    for start in range(0, test_x.shape[0], chunk):
        sims = test_x[start : start + chunk] @ train_x.T  # [m, n_train]
        m = sims.shape[0]
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]  # [m, k]
        top_sims = np.take_along_axis(sims, top, axis=1)
        top_cls = train_idx[top]
        rows = np.repeat(np.arange(m), k)
        counts = np.zeros((m, num_classes), np.int64)
        sums = np.zeros((m, num_classes), np.float64)
        np.add.at(counts, (rows, top_cls.reshape(-1)), 1)
        np.add.at(sums, (rows, top_cls.reshape(-1)), top_sims.reshape(-1))
        # Among the most-voted classes, the largest summed similarity; argmax keeps the first.
        best = counts == counts.max(axis=1, keepdims=True)
        pred[start : start + m] = np.argmax(np.where(best, sums, -np.inf), axis=1)
    return classes[pred]


def knn_classify(train_x, train_y, test_x, test_y, *, k: int = 10) -> dict:
    """Cosine-similarity k-NN with majority vote on frozen embeddings (see `knn_predict`).

    Shapes as `linear_probe`. Returns {"accuracy", "macro_f1", "k", "num_train", "num_test",
    "num_classes", "num_unseen_test"}, where "k" is the k used (capped at n_train).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    train_x, train_y, test_x, test_y = _check_split(train_x, train_y, test_x, test_y)
    pred = knn_predict(train_x, train_y, test_x, k=k)
    return {**_metrics(train_y, test_y, pred), "k": min(k, train_x.shape[0])}


def tfidf_logistic_baseline(
    train_texts: Sequence[str],
    train_y,
    test_texts: Sequence[str],
    test_y,
    *,
    c: float = 1.0,
    max_iter: int = 1000,
    seed: int = 0,
) -> dict:
    """TF-IDF (word unigrams + bigrams, sublinear tf, fitted on train) + logistic regression.

    The bag-of-words baseline printed beside the embedding probes; same keys as `linear_probe`.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    train_texts, train_y = _check_texts(train_texts, train_y, "train_texts")
    test_texts, test_y = _check_texts(test_texts, test_y, "test_texts")
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    train_x = vectorizer.fit_transform(train_texts)
    test_x = vectorizer.transform(test_texts)
    pred = _fit_predict_logistic(train_x, train_y, test_x, c=c, max_iter=max_iter, seed=seed)
    return _metrics(train_y, test_y, pred)
