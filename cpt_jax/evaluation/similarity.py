"""Sentence-similarity evaluation of frozen embeddings: correlation with gold scores.

Each pair (a[i], b[i]) is scored by the cosine similarity of its two embeddings, and the scores
are compared with the gold similarities by Pearson and Spearman correlation (the STS protocol).
"""

from __future__ import annotations

import numpy as np

# Rows with a norm below this are treated as zero vectors (cosine similarity 0 with anything).
_NORM_EPS = 1e-12


def _as_pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"expected two 1-D arrays, got shapes {x.shape} and {y.shape}")
    if x.shape != y.shape:
        raise ValueError(f"length mismatch: {x.shape[0]} vs {y.shape[0]}")
    if x.shape[0] < 2:
        raise ValueError(f"a correlation needs at least 2 values, got {x.shape[0]}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("inputs contain NaN or infinite values")
    return x, y


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    dx = x - x.mean()
    dy = y - y.mean()
    denom = np.sqrt(np.dot(dx, dx) * np.dot(dy, dy))
    if denom == 0.0:
        return float("nan")
    return float(np.clip(np.dot(dx, dy) / denom, -1.0, 1.0))


def average_ranks(x) -> np.ndarray:
    """`[n]` values -> `[n]` float64 ranks 1..n; tied values share the mean of their ranks."""
    x = np.asarray(x)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # 1-based rank of the last member of each group of equal values
    return (last - (counts - 1) / 2.0)[inverse.reshape(-1)]


def pearson(x, y) -> float:
    """Pearson correlation of two `[n]` arrays (n >= 2); NaN if either is constant."""
    return _pearson(*_as_pair(x, y))


def spearman(x, y) -> float:
    """Spearman rank correlation of two `[n]` arrays (n >= 2): Pearson of their average ranks.

    Ties get the mean of the ranks they span (as `scipy.stats.spearmanr`); NaN if either array
    is constant.
    """
    x, y = _as_pair(x, y)
    return _pearson(average_ranks(x), average_ranks(y))


def rowwise_cosine(a, b) -> np.ndarray:
    """`[n, d]`, `[n, d]` -> `[n]` float64 cosine similarity of a[i] and b[i] (0 for a zero row)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"expected two [n, d] arrays, got shapes {a.shape} and {b.shape}")
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    na = np.maximum(np.linalg.norm(a, axis=1), _NORM_EPS)
    nb = np.maximum(np.linalg.norm(b, axis=1), _NORM_EPS)
    return np.einsum("nd,nd->n", a, b) / (na * nb)


def similarity_correlations(a, b, gold) -> dict:
    """Correlate the cosine similarity of embedding pairs with gold similarity scores.

    a, b: `[n, d]` embeddings of the two sides of n pairs; gold: `[n]` gold scores (any scale).
    Returns {"pearson", "spearman", "num_pairs"}; the correlations are NaN if the cosine
    similarities (or the gold scores) are all equal.
    """
    gold = np.asarray(gold, np.float64)
    a = np.asarray(a)
    if a.ndim >= 1 and gold.shape != (a.shape[0],):
        raise ValueError(f"gold must have shape ({a.shape[0]},) to match a, got {gold.shape}")
    if a.ndim >= 1 and a.shape[0] == 0:
        raise ValueError("no pairs to evaluate")
    sims = rowwise_cosine(a, b)
    if not np.all(np.isfinite(sims)):
        raise ValueError("embeddings contain NaN or infinite values")
    return {
        "pearson": pearson(sims, gold),
        "spearman": spearman(sims, gold),
        "num_pairs": int(sims.shape[0]),
    }
