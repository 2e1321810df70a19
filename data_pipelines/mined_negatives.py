"""Hard negatives for a built pair corpus: a copy whose records gain mined `negatives`.

    python -m data_pipelines.build mined_negatives --source data/pypi_code --splits train \\
        --num_negatives 1 [--miner bm25 | minilm | MODEL_DIR] --out_dir data/pypi_code_neg

Each split of `--source` is mined on its own (a validation document is never a training
negative). Every query ranks the documents of its split, by one of two miners:

- `bm25` (default): `bm25s` over `code_tokenize` tokens (identifiers are also split into
  their snake/camel parts, so it serves code and prose);
- an embedding model, `minilm` (zero-shot, `cpt_jax.pretrained`) or a model directory
  written by training: cosine similarity of the query (at `--query_length` tokens) and
  document (`--document_length`) embeddings, with NV-Retriever's positive-aware filter
  (Moreira et al., 2024): a document scoring above `--max_relative_score` (0.95) times the
  query's own positive is as likely an unlabelled positive as a negative, so it is skipped.

Its negatives are `num_negatives` documents drawn, without replacement and seeded per
record, from the `depth` best-ranked *eligible* documents, kept in rank order. Drawing from
the top `depth` rather than always taking the very best hits lowers the share of false
negatives (near copies, other implementations of the same docstring) among them.

A document is not eligible as a negative of pair i when it is the document of any pair whose
query text equals i's (after whitespace normalisation), i's own included: it is a positive
of that query text. A pair with fewer than `num_negatives` eligible documents among its hits
is skipped and counted (`too_few_negatives`), never padded.

Records keep every field of the source (the merge recomputes `query_id`, `document_id` and
adds `negative_ids`, which mask false negatives in the loss) and gain `negatives` and
`split`. The manifest's description names the source's fingerprint and the miner (with a
model directory's checkpoint steps), so a rebuilt source or model never reuses stale units.
"""

from __future__ import annotations

import argparse
import collections
import os
from collections.abc import Iterable, Sequence

import numpy as np

from cpt_jax import pretrained
from cpt_jax.checkpoints import CHECKPOINT_SUBDIR
from cpt_jax.embed import Embedder
from cpt_jax.evaluation.bm25 import build_bm25_index, code_tokenize
from data_pipelines import derived
from data_pipelines.text import normalise_whitespace

# Bump when the mining rule changes (invalidates the unit caches through `description`).
MINER_VERSION = 1


def _draw(
    hits: np.ndarray,
    queries: Sequence[str],
    documents: Sequence[str],
    num_negatives: int,
    depth: int,
    seed: int,
    too_close: np.ndarray | None = None,
) -> list[list[int] | None]:
    """Per query, `num_negatives` of the first `depth` eligible documents of its ranked
    `hits` row (`[n, k]` document indices, best first), drawn with a per-record seed and
    kept in rank order; None when too few are eligible. `too_close[i, r]` (optional) marks
    hit r of query i as ineligible too."""
    query_keys = [normalise_whitespace(q) for q in queries]
    document_keys = [normalise_whitespace(d) for d in documents]
    positives_of: dict[str, set[str]] = collections.defaultdict(set)
    for q, d in zip(query_keys, document_keys):
        positives_of[q].add(d)
    mined: list[list[int] | None] = []
    for i in range(len(queries)):
        excluded = positives_of[query_keys[i]]
        eligible = [
            int(j)
            for r, j in enumerate(hits[i])
            if document_keys[j] not in excluded and (too_close is None or not too_close[i, r])
        ][:depth]
        if len(eligible) < num_negatives:
            mined.append(None)
            continue
        rng = np.random.default_rng([seed, i])
        picked = sorted(rng.choice(len(eligible), size=num_negatives, replace=False))
        mined.append([eligible[p] for p in picked])
    return mined


def _check(queries: Sequence[str], documents: Sequence[str], num_negatives: int, depth: int):
    if len(queries) != len(documents):
        raise ValueError(f"{len(queries)} queries but {len(documents)} documents")
    if num_negatives < 1 or depth < num_negatives:
        raise ValueError(
            f"need 1 <= num_negatives <= depth, got num_negatives={num_negatives}, depth={depth}"
        )


def _hits_needed(queries: Sequence[str], documents: Sequence[str], depth: int) -> int:
    """Hits per query that leave `depth` after dropping the query text's own positives."""
    group = collections.Counter(normalise_whitespace(q) for q in queries)
    return min(len(documents), depth + max(group.values()))


def mine_bm25_negatives(
    queries: Sequence[str],
    documents: Sequence[str],
    num_negatives: int,
    *,
    depth: int = 10,
    seed: int = 0,
) -> list[list[int] | None]:
    """Hard-negative document indices for each pair `(queries[i], documents[i])`, by BM25.

    Returns a list as long as `queries`: entry i is `num_negatives` distinct document
    indices in BM25 rank order, drawn uniformly without replacement from the first `depth`
    eligible documents of query i's ranking (eligibility: see the module docstring), or None
    when fewer than `num_negatives` are eligible. Deterministic in `seed`.

    Example:
      >>> mine_bm25_negatives(
      ...     ["parse json text", "sort items as json", "load json file"],
      ...     ["json.loads(text)", "sorted(items, key=len)", "json.load(open(path))"],
      ...     num_negatives=1, depth=1)
      [[2], [0], [0]]
    """
    _check(queries, documents, num_negatives, depth)
    if not queries:
        return []
    retriever = build_bm25_index([code_tokenize(d) for d in documents])
    query_tokens = [code_tokenize(q) or ["<empty>"] for q in queries]
    k = _hits_needed(queries, documents, depth)
    hits, _ = retriever.retrieve(query_tokens, k=k, show_progress=False)
    return _draw(np.asarray(hits), queries, documents, num_negatives, depth, seed)


def mine_dense_negatives(
    query_embeddings: np.ndarray,
    document_embeddings: np.ndarray,
    queries: Sequence[str],
    documents: Sequence[str],
    num_negatives: int,
    *,
    depth: int = 10,
    seed: int = 0,
    max_relative_score: float = 0.95,
    block_size: int = 2048,
) -> list[list[int] | None]:
    """Hard negatives ranked by an embedding model: dot products of `[n, D]` query and
    document embeddings (unit rows: cosine similarity), best first.

    Same draw and eligibility as `mine_bm25_negatives`, plus the positive-aware filter of
    NV-Retriever (Moreira et al., 2024): a document scoring above `max_relative_score` times
    the query's score with its own document is too close to be a safe negative (it is as
    likely an unlabelled positive) and is not eligible. `queries`/`documents` are the texts
    (for the same-query exclusion).
    """
    _check(queries, documents, num_negatives, depth)
    n = len(queries)
    if query_embeddings.shape[0] != n or document_embeddings.shape[0] != n:
        raise ValueError(
            f"{n} pairs but {query_embeddings.shape[0]} query and "
            f"{document_embeddings.shape[0]} document embeddings"
        )
    if n == 0:
        return []
    k = _hits_needed(queries, documents, depth)
    hits = np.empty((n, k), np.int64)
    too_close = np.empty((n, k), bool)
    for start in range(0, n, block_size):
        scores = query_embeddings[start : start + block_size] @ document_embeddings.T
        rows = np.arange(scores.shape[0])
        positive = scores[rows, start + rows]
        # Too-close documents drop out before the top k, so that a query whose positive
        # the miner ranks low still finds `depth` eligible hits further down.
        scores = np.where(scores > max_relative_score * positive[:, None], -np.inf, scores)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        block_hits = np.take_along_axis(top, order, axis=1)
        hits[start : start + len(rows)] = block_hits
        too_close[start : start + len(rows)] = np.isneginf(
            np.take_along_axis(scores, block_hits, axis=1)
        )
    return _draw(hits, queries, documents, num_negatives, depth, seed, too_close)


class MinedNegativesBuilder(derived.DerivedBuilder):
    """The records of a finished corpus with mined `negatives` (one unit per split).

    `miner` is "bm25", or an embedding model: "minilm" (a pretrained model of
    `cpt_jax.pretrained`, zero-shot) or a model directory written by training; a model
    embeds queries at `query_length` and documents at `document_length` tokens.
    """

    name = "mined_negatives"

    def __init__(
        self,
        source: str,
        num_negatives: int = 1,
        *,
        miner: str = "bm25",
        depth: int = 10,
        seed: int = 0,
        splits: Sequence[str] | None = None,
        max_relative_score: float = 0.95,
        query_length: int = 32,
        document_length: int = 128,
    ):
        super().__init__(source, splits)
        if "negatives" in self.schema:
            raise ValueError(f"{source}: the corpus already has a 'negatives' field")

        if miner != "bm25" and miner not in pretrained.PRETRAINED and not os.path.isdir(miner):
            raise ValueError(
                f"miner {miner!r} is neither 'bm25', a pretrained model "
                f"({sorted(pretrained.PRETRAINED)}) nor a model directory"
            )
        self.num_negatives = num_negatives
        self.miner = miner
        self.depth = depth
        self.seed = seed
        self.max_relative_score = max_relative_score
        self.lengths = {"queries": query_length, "documents": document_length}

    def _embedder(self):
        if self.miner in pretrained.PRETRAINED:
            model = pretrained.load(self.miner)
            return Embedder(model.config, model.params, model.tokenizer, self.lengths)
        loaded = Embedder.from_checkpoint(self.miner)
        return Embedder(loaded.model_config, loaded.params, loaded.tokenizer, self.lengths)

    def _mine(self, queries: list[str], documents: list[str]) -> list[list[int] | None]:
        kw = {"depth": self.depth, "seed": self.seed}
        if self.miner == "bm25":
            return mine_bm25_negatives(queries, documents, self.num_negatives, **kw)
        embedder = self._embedder()
        return mine_dense_negatives(
            embedder.encode(queries, "query", batch_size=128),
            embedder.encode(documents, "document", batch_size=128),
            queries,
            documents,
            self.num_negatives,
            max_relative_score=self.max_relative_score,
            **kw,
        )

    def derive(
        self, records: list[dict], split: str, skipped: collections.Counter
    ) -> Iterable[dict]:
        mined = self._mine([r["query"] for r in records], [r["document"] for r in records])
        for record, negatives in zip(records, mined):
            if negatives is None:
                skipped["too_few_negatives"] += 1
                continue
            out = derived.copy_record(record, split)
            out["negatives"] = [records[j]["document"] for j in negatives]
            yield out

    def description(self) -> dict:
        described = {
            "miner_version": MINER_VERSION,
            "miner": self.miner,
            **super().description(),
            "num_negatives": self.num_negatives,
            "depth": self.depth,
            "seed": self.seed,
        }
        if self.miner == "bm25":
            described["bm25"] = "bm25s lucene k1=1.2 b=0.75 over code_tokenize"
        else:
            described["max_relative_score"] = self.max_relative_score
            described["sequence_lengths"] = self.lengths
            if os.path.isdir(self.miner):
                # A retrained model in the same directory must not reuse stale units.

                steps = os.path.join(self.miner, CHECKPOINT_SUBDIR)
                described["miner_checkpoints"] = sorted(os.listdir(steps))
        return described


def add_arguments(parser: argparse.ArgumentParser) -> None:
    derived.add_source_arguments(parser)
    parser.add_argument("--num_negatives", type=int, default=1, help="negatives per pair")
    parser.add_argument(
        "--miner",
        default="bm25",
        help="bm25, a pretrained model (minilm) or a trained model directory",
    )
    parser.add_argument(
        "--depth", type=int, default=10, help="draw from this many best eligible hits"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max_relative_score",
        type=float,
        default=0.95,
        help="model miners: a hit scoring above this times the positive's score is skipped",
    )
    parser.add_argument("--query_length", type=int, default=32, help="model miners")
    parser.add_argument("--document_length", type=int, default=128, help="model miners")


def builder_from_args(args: argparse.Namespace) -> MinedNegativesBuilder:
    return MinedNegativesBuilder(
        args.source,
        args.num_negatives,
        miner=args.miner,
        depth=args.depth,
        seed=args.seed,
        splits=derived.splits_from_args(args),
        max_relative_score=args.max_relative_score,
        query_length=args.query_length,
        document_length=args.document_length,
    )
