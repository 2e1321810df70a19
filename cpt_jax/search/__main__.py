"""Semantic code search over a directory, in plain English.

  python -m cpt_jax.search index --checkpoint MODEL_DIR --source CODE_DIR --index INDEX_DIR
  python -m cpt_jax.search query --index INDEX_DIR [--top_k 10] [--json] QUERY [QUERY ...]
  python -m cpt_jax.search query --index INDEX_DIR --queries_file FILE   (one query a line)

`index` embeds every function and method below CODE_DIR (Python by `ast`; Go, Java,
JavaScript, PHP and Ruby by tree-sitter) with the model directory MODEL_DIR (or `minilm`,
zero-shot) and writes INDEX_DIR/index.npz. Run it again after editing the code: only files
whose content changed are embedded again, deleted files are dropped. Files that are binary,
not UTF-8 or do not parse are skipped and counted. The index file is replaced atomically: an
interrupted run leaves the previous index usable. `--dimensions N` (a Matryoshka model's
prefix), `--precision int8|binary` and `--binary_rescore K` store smaller vectors
(`cpt_jax.quantization`); an update keeps the index's format unless told otherwise.

`query` ranks the indexed functions for each query and prints the best `--top_k` as
`path:line  name  score` with the first lines of the function; with `--json`, one JSON list
per query, one line each, in order: objects with `path` (relative to CODE_DIR), `line`
(1-based, of the `def`), `end_line`, `name` (`function` or `Class.method`), `language`,
`score` and `snippet`. The model is loaded once for all queries. `--ranking` chooses dense
(cosine), bm25, score_fusion (the default: standardised cosine + `--weight` x standardised
BM25) or rrf (reciprocal rank fusion, `--rrf_k`).
"""

from __future__ import annotations

import os

# A command-line entry point: keep TensorFlow's C++ start-up chatter off the console.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse
import json
import sys
import time
from collections.abc import Iterable

from tqdm import tqdm

from cpt_jax.quantization import PRECISIONS, VectorFormat
from cpt_jax.search.index import (
    DEFAULT_RANKING,
    DEFAULT_RRF_K,
    DEFAULT_WEIGHT,
    INDEX_FILE,
    RANKINGS,
    CodeIndex,
    Hit,
)


def index_command(args: argparse.Namespace) -> int:
    previous = None
    if os.path.exists(os.path.join(args.index, INDEX_FILE)):
        try:
            previous = CodeIndex.open(args.index)
        except ValueError as e:
            print(f"warning: the existing index is unreadable, rebuilding it: {e}", file=sys.stderr)

    def progress(chunks: Iterable[list], total: int):
        with tqdm(
            total=total, unit="fn", desc="embedding", file=sys.stderr, disable=args.no_progress
        ) as bar:
            for chunk in chunks:
                yield chunk
                bar.update(len(chunk))

    vector_format = None
    if (args.dimensions, args.precision, args.binary_rescore) != (None, None, None):
        vector_format = VectorFormat(
            args.dimensions, args.precision or "float32", rescore=args.binary_rescore
        )
    start = time.perf_counter()
    index, report = CodeIndex.build(
        args.checkpoint,
        args.source,
        previous=previous,
        progress=progress,
        vector_format=vector_format,
    )
    path = index.save(args.index)
    print(f"{report.summary()}\nwrote {path} in {time.perf_counter() - start:.1f} s")
    return 0


def read_queries(args: argparse.Namespace) -> list[str]:
    queries = list(args.queries)
    if args.queries_file:
        with open(args.queries_file, encoding="utf-8") as f:
            queries += [line.strip() for line in f if line.strip()]
    return queries


def format_hits(query: str, hits: list[Hit]) -> str:
    lines = [f"query: {query}"]
    for rank, hit in enumerate(hits, 1):
        lines.append(f"{rank:3d}. {hit.path}:{hit.line}  {hit.name}  {hit.score:.3f}")
        lines += [f"       {line}" for line in hit.snippet.splitlines()]
    return "\n".join(lines)


def query_command(args: argparse.Namespace) -> int:
    queries = read_queries(args)
    if not queries:
        raise ValueError("no queries: give them as arguments or with --queries_file")
    index = CodeIndex.open(args.index)
    options = {"ranking": args.ranking, "weight": args.weight, "rrf_k": args.rrf_k}
    results = index.search_many(queries, args.top_k, **options)
    for query, hits in zip(queries, results):
        if args.json:
            print(json.dumps([hit.to_json() for hit in hits]))
        else:
            print(format_hits(query, hits) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cpt_jax.search",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    index = commands.add_parser("index", help="index (or update the index of) a source tree")
    index.add_argument("--checkpoint", required=True, help="a model directory, or minilm")
    index.add_argument("--source", required=True, help="the directory of code to index")
    index.add_argument("--index", required=True, help="the index directory (created)")
    index.add_argument("--no_progress", action="store_true", help="no progress bar")
    index.add_argument("--dimensions", type=int, help="store the first N coordinates")
    index.add_argument("--precision", choices=PRECISIONS, help="stored precision (float32)")
    index.add_argument(
        "--binary_rescore", type=int, help="binary: rescore the best K with the float query"
    )
    index.set_defaults(run=index_command)

    query = commands.add_parser("query", help="search an index")
    query.add_argument("queries", nargs="*", metavar="QUERY")
    query.add_argument("--index", required=True)
    query.add_argument("--queries_file", help="a UTF-8 file, one query per non-blank line")
    query.add_argument("--top_k", type=int, default=10)
    query.add_argument("--json", action="store_true", help="one JSON list per query")
    query.add_argument("--ranking", choices=RANKINGS, default=DEFAULT_RANKING)
    query.add_argument(
        "--weight", type=float, default=DEFAULT_WEIGHT, help="BM25's weight in score_fusion"
    )
    query.add_argument("--rrf_k", type=float, default=DEFAULT_RRF_K, help="the RRF constant")
    query.set_defaults(run=query_command)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
