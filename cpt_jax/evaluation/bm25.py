"""BM25 baseline for code search (`bm25s`), on the same candidate sets as the models."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from cpt_jax.evaluation.code_search import candidate_sets, ranks_from_scores, summarize

_WORD = re.compile(r"[A-Za-z0-9_]+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def code_tokenize(text: str) -> list[str]:
    """Lower-cased identifier tokens: each whole identifier plus its snake/camel-case parts.

    `getHTTPResponse_code` -> ['gethttpresponse_code', 'get', 'http', 'response', 'code'].
    One-character parts are dropped (loop variables and operators carry no meaning).
    """
    tokens = []
    for word in _WORD.findall(text):
        parts = [p.lower() for chunk in word.split("_") for p in _CAMEL.findall(chunk)]
        whole = word.lower()
        if len(whole) > 1:
            tokens.append(whole)
        tokens.extend(p for p in parts if len(p) > 1 and p != whole)
    return tokens


def bm25_scores_reference(
    query_tokens: Sequence[str],
    documents_tokens: Sequence[Sequence[str]],
    *,
    k1: float = 1.2,
    b: float = 0.75,
) -> np.ndarray:
    """BM25 as Lucene computes it (bm25s's default), in float64, for tests.

    score(q, d) = sum over query terms t of
        ln(1 + (N - df_t + 0.5) / (df_t + 0.5)) * tf / (tf + k1 * (1 - b + b * |d| / avgdl)).
    """
    n = len(documents_tokens)
    avgdl = sum(len(d) for d in documents_tokens) / n
    df = Counter(t for d in documents_tokens for t in set(d))
    scores = np.zeros(n)
    for i, doc in enumerate(documents_tokens):
        tf = Counter(doc)
        for t in query_tokens:
            if t not in tf:
                continue
            idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
            scores[i] += idf * tf[t] / (tf[t] + k1 * (1 - b + b * len(doc) / avgdl))
    return scores


def bm25_code_search(
    pairs: Sequence[dict],
    *,
    query_field: str = "query",
    code_field: str = "code_no_comments",
    num_candidates: int = 1000,
    seed: int = 0,
    k1: float = 1.2,
    b: float = 0.75,
) -> dict:
    """CodeSearchNet-protocol MRR of BM25: all codes indexed once, scores gathered per query."""
    import bm25s

    codes = [code_tokenize(p[code_field]) for p in pairs]
    retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
    retriever.index(codes, show_progress=False)
    sets = candidate_sets(len(pairs), num_candidates, seed=seed)
    ranks = np.empty(len(pairs), np.int64)
    for i, pair in enumerate(pairs):
        scores = retriever.get_scores(code_tokenize(pair[query_field]))
        ranks[i] = ranks_from_scores(scores[sets[i]][None])[0]
    return summarize(ranks, num_candidates)
