"""Code search with the CodeSearchNet protocol.

Each query is ranked against `num_candidates` (1,000) candidates: its gold function plus 999
distractors drawn, without replacement, from the other test functions. The rank is the number
of candidates scoring at least as high as the gold one (ties count against the model; the gold
counts itself, so the best rank is 1), and the metric is the mean reciprocal rank.

Embeddings are scored by dot product (they are assumed unit-norm, so this is cosine); with a
`cpt_jax.quantization.VectorFormat`, the way that format's stored vectors would be (shorter
prefixes, int8 codes, bits), the codes calibrated on the code embeddings being scored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from cpt_jax.quantization import VectorFormat

EncodeFn = Callable[[list[str], str], np.ndarray]

# Bytes of float64 scores held at once by `code_search_mrr` (rows of queries x all codes).
_SCORE_CHUNK_BYTES = 64 * 2**20


def _check_sizes(num_queries: int, num_candidates: int) -> None:
    if num_candidates < 2:
        raise ValueError(f"num_candidates must be at least 2, got {num_candidates}")
    if num_queries < num_candidates:
        raise ValueError(
            f"the code-search protocol ranks each query against {num_candidates} candidates "
            f"(its gold code plus {num_candidates - 1} distractors), so it needs at least "
            f"{num_candidates} (query, code) examples; got {num_queries}. Use more examples "
            f"or a smaller num_candidates."
        )


def candidate_sets(num_queries: int, num_candidates: int = 1000, *, seed: int = 0) -> np.ndarray:
    """`[num_queries, num_candidates]` int64 document indices; column 0 is query i's gold, i.

    Columns 1.. are `num_candidates - 1` distinct distractors drawn without replacement from
    the other documents (never the gold), fixed by `seed`.
    """
    _check_sizes(num_queries, num_candidates)
    rng = np.random.default_rng(seed)
    sets = np.empty((num_queries, num_candidates), np.int64)
    sets[:, 0] = np.arange(num_queries)
    for i in range(num_queries):
        others = rng.choice(num_queries - 1, size=num_candidates - 1, replace=False)
        sets[i, 1:] = others + (others >= i)  # 0..n-2 -> 0..n-1 without i
    return sets


def ranks_from_scores(scores: np.ndarray) -> np.ndarray:
    """`[n, C]` scores with the gold in column 0 -> `[n]` int64 ranks in 1..C (1 = best).

    rank = number of candidates whose score is not below the gold's (the gold included), so
    ties are pessimistic: if all C scores are equal the rank is C. A NaN anywhere counts
    against the gold too (a NaN gold gets rank C).
    """
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] < 1:
        raise ValueError(f"scores must be [num_queries, num_candidates], got {scores.shape}")
    return np.sum(~(scores < scores[:, :1]), axis=1, dtype=np.int64)


def mean_reciprocal_rank(ranks: np.ndarray) -> float:
    """Mean of 1 / rank over queries (ranks start at 1)."""
    ranks = np.asarray(ranks, np.float64)
    if ranks.size == 0:
        raise ValueError("no ranks to average")
    if np.any(ranks < 1):
        raise ValueError("ranks start at 1")
    return float(np.mean(1.0 / ranks))


def summarize(ranks: np.ndarray, num_candidates: int, groups: Sequence[str] | None = None) -> dict:
    """The result dictionary shared by the embedding and BM25 evaluations.

    `groups` (one label per query, e.g. each function's package) adds `by_group`: the
    same figures over each label's queries, labels in sorted order. Candidates are still
    drawn from every query's code, so a group's MRR is not that of a benchmark of its own.
    """
    ranks = np.asarray(ranks)
    result = {
        "mrr": mean_reciprocal_rank(ranks),
        "recall@1": float(np.mean(ranks <= 1)),
        "recall@10": float(np.mean(ranks <= 10)),
        "num_queries": int(len(ranks)),
        "num_candidates": int(num_candidates),
    }
    if groups is not None:
        labels = np.asarray([str(g) for g in groups])
        if labels.shape != ranks.shape:
            raise ValueError(f"{len(labels)} group labels for {len(ranks)} queries")
        result["by_group"] = {
            label: summarize(ranks[labels == label], num_candidates)
            for label in sorted(set(labels.tolist()))
        }
    return result


def code_search_mrr(
    query_embeddings: np.ndarray,
    code_embeddings: np.ndarray,
    *,
    num_candidates: int = 1000,
    seed: int = 0,
    groups: Sequence[str] | None = None,
    vector_format: VectorFormat | None = None,
) -> dict:
    """Code-search metrics of embeddings `[n, d]`; row i of both arrays is one (query, code).

    Returns `mrr`, `recall@1`, `recall@10`, `num_queries`, `num_candidates`, and with
    `groups` (n labels) `by_group` (see `summarize`). `vector_format` scores the codes as
    that format stores them (see `candidate_scores`).
    """
    q, c = _pair_embeddings(query_embeddings, code_embeddings)
    if groups is not None and len(groups) != len(q):
        raise ValueError(f"{len(groups)} group labels for {len(q)} queries")
    sets = candidate_sets(len(q), num_candidates, seed=seed)
    scores = candidate_scores(q, c, sets, vector_format)
    return summarize(ranks_from_scores(scores), num_candidates, groups)


def figures_by_format(
    query_embeddings: np.ndarray,
    code_embeddings: np.ndarray,
    vector_formats: Sequence[VectorFormat],
    **kwargs,
) -> dict[str, dict]:
    """`code_search_mrr(..., vector_format=f)` for each format, keyed by `f.name`, each with
    its `bytes_per_vector` (the index's size per million vectors, in MB)."""
    width = np.shape(code_embeddings)[1]
    return {
        f.name: {
            **code_search_mrr(query_embeddings, code_embeddings, vector_format=f, **kwargs),
            "bytes_per_vector": f.bytes_per_vector(width),
        }
        for f in vector_formats
    }


def _pair_embeddings(query_embeddings, code_embeddings) -> tuple[np.ndarray, np.ndarray]:
    q = np.asarray(query_embeddings)
    c = np.asarray(code_embeddings)
    if q.ndim != 2 or q.shape != c.shape:
        raise ValueError(
            f"query and code embeddings must both be [n, d] of one shape; got {q.shape} "
            f"and {c.shape}"
        )
    return q, c


def candidate_scores(
    query_embeddings: np.ndarray,
    code_embeddings: np.ndarray,
    sets: np.ndarray,
    vector_format: VectorFormat | None = None,
) -> np.ndarray:
    """`[n, C]` float32 dot products of query i with the codes `sets[i]` (`candidate_sets`).

    Computed in row chunks of `queries @ codes.T` (memory bounded for any n), in float64,
    then rounded to float32: identical code embeddings then get bit-identical scores
    whatever the summation order, so duplicated code ties (pessimistically) with its gold
    as it should.

    With `vector_format`, the codes are stored in that format (int8 calibrated on all of
    them) and each query scores its candidates by `vector_format.scores`: a binary format's
    rescoring then reranks the best of the query's own C candidates.
    """
    q, c = _pair_embeddings(query_embeddings, code_embeddings)
    if vector_format is not None:
        vector_format, stored = vector_format.store(c)
        out = np.empty(sets.shape, np.float32)
        for i in range(len(q)):
            out[i] = vector_format.scores(q[i : i + 1], stored[sets[i]])[0]
        return out
    n = len(q)
    c64 = c.astype(np.float64)
    rows_per_chunk = max(1, _SCORE_CHUNK_BYTES // (8 * n))
    out = np.empty(sets.shape, np.float32)
    for start in range(0, n, rows_per_chunk):
        rows = slice(start, start + rows_per_chunk)
        scores = (q[rows].astype(np.float64) @ c64.T).astype(np.float32)
        out[rows] = np.take_along_axis(scores, sets[rows], axis=1)
    return out


def encode_in_batches(
    encode_fn: EncodeFn, texts: list[str], kind: str, batch_size: int
) -> np.ndarray:
    """`encode_fn(texts, kind)` over `batch_size` texts at a time -> `[len(texts), d]`."""
    chunks = []
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        out = np.asarray(encode_fn(batch, kind))
        if out.ndim != 2 or len(out) != len(batch):
            raise ValueError(
                f"encode_fn({len(batch)} texts, {kind!r}) returned shape {out.shape}; "
                f"expected [{len(batch)}, d]"
            )
        chunks.append(out)
    return np.concatenate(chunks)


def evaluate_code_search(
    encode_fn: EncodeFn,
    pairs: Sequence[dict],
    *,
    query_field: str = "query",
    code_field: str = "code_no_comments",
    num_candidates: int = 1000,
    seed: int = 0,
    batch_size: int = 256,
    group_field: str | None = None,
    vector_formats: Sequence[VectorFormat] = (),
) -> dict:
    """Encodes the pairs with `encode_fn(texts, kind)` and scores them with `code_search_mrr`.

    `kind` is 'query' for the natural-language side and 'document' for code; `encode_fn` is
    called on at most `batch_size` texts at a time and returns `[len(texts), d]` embeddings.
    `group_field` (a field of the pairs, e.g. 'package') adds the `by_group` figures;
    `vector_formats` add `by_format` (`figures_by_format`), from the same embeddings.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    _check_sizes(len(pairs), num_candidates)  # fail before encoding anything
    groups = pair_field_labels(pairs, group_field)
    queries = [p[query_field] for p in pairs]
    codes = [p[code_field] for p in pairs]
    q = encode_in_batches(encode_fn, queries, "query", batch_size)
    c = encode_in_batches(encode_fn, codes, "document", batch_size)
    result = code_search_mrr(q, c, num_candidates=num_candidates, seed=seed, groups=groups)
    if vector_formats:
        kw = {"num_candidates": num_candidates, "seed": seed}
        result["by_format"] = figures_by_format(q, c, vector_formats, **kw)
    return result


def pair_field_labels(pairs: Sequence[dict], field: str | None) -> list[str] | None:
    """Each pair's `field` as a string, the group labels of `summarize` (None: no field).

    A pair lacking the field is an error that names the pair and the fields it has.
    """
    if field is None:
        return None
    for i, pair in enumerate(pairs):
        if field not in pair:
            raise ValueError(
                f"pair {i} has no field {field!r} to group by (its fields: {sorted(pair)})"
            )
    return [str(p[field]) for p in pairs]
