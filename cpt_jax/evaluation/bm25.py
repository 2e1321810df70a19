"""BM25 baseline for code search (`bm25s`), on the same candidate sets as the models.

All test codes are indexed once (IDF over the whole pool of test codes, as is standard); each
query is scored against every code with `bm25s`, and its candidate columns are gathered and
ranked exactly as `code_search_mrr` ranks embedding scores.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections import Counter
from collections.abc import Sequence

import numpy as np

from cpt_jax.evaluation.code_search import (
    _check_sizes,
    candidate_sets,
    pair_field_labels,
    ranks_from_scores,
    summarize,
)

_WORD = re.compile(r"[A-Za-z0-9_]+")
# Within one '_'-free chunk: acronyms before a capitalised word, capitalised/lower words,
# trailing acronyms, digit runs.  'getHTTPResponse' -> get, HTTP, Response.
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def code_tokenize(text: str) -> list[str]:
    """Lower-cased tokens of code or text: each whole identifier plus its snake/camel parts.

    Text is split on everything but ASCII letters, digits and '_'. Every resulting word is
    kept whole, followed by its parts (split on '_', then camelCase / acronym / digit
    boundaries) that differ from the whole word:
    `getHTTPResponse_code` -> ['gethttpresponse_code', 'get', 'http', 'response', 'code'].
    One-character tokens are dropped (loop variables like `i`, `x` carry no meaning and
    would only add noise to the document lengths). Stop words are kept: IDF discounts them.
    """
    tokens = []
    for word in _WORD.findall(text):
        whole = word.lower()
        if len(whole) > 1:
            tokens.append(whole)
        for chunk in word.split("_"):
            for part in _CAMEL.findall(chunk):
                part = part.lower()
                if len(part) > 1 and part != whole:
                    tokens.append(part)
    return tokens


def bm25_scores_reference(
    query_tokens: Sequence[str],
    documents_tokens: Sequence[Sequence[str]],
    *,
    k1: float = 1.2,
    b: float = 0.75,
) -> np.ndarray:
    """`[num_documents]` BM25 scores in float64: the formula of bm25s's default ('lucene').

    score(q, d) = sum over query tokens t (repeats counted) present in d of
        ln(1 + (N - df_t + 0.5) / (df_t + 0.5)) * tf_td / (tf_td + k1 * (1 - b + b * |d| / avgdl))

    (bm25s's lucene variant has no (k1 + 1) factor in the numerator; it does not change
    rankings.) A plain-Python reference for tests of the `bm25s` path.
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


def build_bm25_index(
    documents_tokens: Sequence[Sequence[str]], *, k1: float = 1.2, b: float = 0.75
):
    """A `bm25s.BM25` (lucene variant) indexing pre-tokenized documents."""
    with warnings.catch_warnings():  # its tqdm.auto import warns in a kernel without ipywidgets
        warnings.simplefilter("ignore")
        import bm25s

    # bm25s sets its logger to DEBUG on import; its index-building messages are noise here.
    logging.getLogger(bm25s.__name__).setLevel(logging.WARNING)

    retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
    retriever.index([list(d) for d in documents_tokens], show_progress=False)
    return retriever


def bm25_scores(retriever, query_tokens: Sequence[str]) -> np.ndarray:
    """`[num_documents]` float32 scores of one tokenized query; all zeros for an empty query
    or one whose tokens are all out of the index vocabulary."""
    ids = retriever.get_tokens_ids(list(query_tokens))
    if not ids:
        return np.zeros(retriever.scores["num_docs"], np.float32)
    return retriever.get_scores(ids)


def bm25_code_search(
    pairs: Sequence[dict] | tuple[Sequence[str], Sequence[str]],
    *,
    query_field: str = "query",
    code_field: str = "code_no_comments",
    num_candidates: int = 1000,
    seed: int = 0,
    k1: float = 1.2,
    b: float = 0.75,
    group_field: str | None = None,
) -> dict:
    """CodeSearchNet-protocol metrics of BM25; same keys and candidate sets as
    `code_search_mrr(..., num_candidates=num_candidates, seed=seed)`.

    `pairs` is a sequence of dicts (read with `query_field` / `code_field`) or a tuple
    `(queries, codes)` of two equally long string sequences. Queries and codes both go
    through `code_tokenize`. A query with no known token scores all candidates 0, hence
    (ties being pessimistic) gets rank `num_candidates`. `group_field` (dict pairs only)
    adds `by_group`, as in `evaluate_code_search`.
    """
    if isinstance(pairs, tuple):
        queries, codes = pairs
        if len(queries) != len(codes):
            raise ValueError(f"{len(queries)} queries but {len(codes)} codes")
        if group_field is not None:
            raise ValueError("group_field needs pairs as dicts, not a (queries, codes) tuple")
        groups = None
    else:
        queries = [p[query_field] for p in pairs]
        codes = [p[code_field] for p in pairs]
        groups = pair_field_labels(pairs, group_field)
    _check_sizes(len(queries), num_candidates)
    sets = candidate_sets(len(queries), num_candidates, seed=seed)
    scores = bm25_candidate_scores(queries, codes, sets, k1=k1, b=b)
    return summarize(ranks_from_scores(scores), num_candidates, groups)


def bm25_candidate_scores(
    queries: Sequence[str],
    codes: Sequence[str],
    sets: np.ndarray,
    *,
    k1: float = 1.2,
    b: float = 0.75,
) -> np.ndarray:
    """`[n, C]` float32 BM25 scores of query i against the codes `sets[i]`, all codes
    indexed once (IDF over the whole pool); queries and codes go through `code_tokenize`."""
    retriever = build_bm25_index([code_tokenize(c) for c in codes], k1=k1, b=b)
    out = np.empty(sets.shape, np.float32)
    for i, query in enumerate(queries):
        out[i] = bm25_scores(retriever, code_tokenize(query))[sets[i]]
    return out
