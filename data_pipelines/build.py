"""Builds a pair corpus: `python -m data_pipelines.build <corpus> [options]`.

Writes `data/<corpus>/` by default (`--out_dir` to change it) in the layout of
`data_pipelines.corpus`: sharded TFRecord files per split and `manifest.json`. A build that
is killed restarts where it stopped when run again with the same command.

    python -m data_pipelines.build stdlib_code
    python -m data_pipelines.build codesearchnet data/csn/python_train_0.jsonl.gz ...
    python -m data_pipelines.build <corpus> --help      # the corpus's own options

Each corpus lives in its own module, which provides `add_arguments(parser)` and
`builder_from_args(args)` (or a `CORPORA` dict of several such pairs).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

from data_pipelines import corpus

# corpus name -> the module that builds it (imported only when asked for).
CORPORA = {
    "stdlib_code": "data_pipelines.python_code",
    "pypi_code": "data_pipelines.pypi_code",
    "tree_sitter_code": "data_pipelines.tree_sitter_code",
    "codesearchnet": "data_pipelines.codesearchnet",
    "text_neighbours": "data_pipelines.text_neighbours",
    "python_docs": "data_pipelines.python_docs",
    "wordnet": "data_pipelines.wordnet",
    "debian_text": "data_pipelines.debian_text",
    "beir": "data_pipelines.supervised",
    "msmarco": "data_pipelines.supervised",
    "nli": "data_pipelines.supervised",
    "mined_negatives": "data_pipelines.mined_negatives",
    "curated_pairs": "data_pipelines.curated_pairs",
}


def _entry_points(name: str):
    module = importlib.import_module(CORPORA[name])
    if hasattr(module, "CORPORA"):
        return module.CORPORA[name]
    return module.add_arguments, module.builder_from_args


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow writes the shards
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m data_pipelines.build",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="corpus", required=True, metavar="corpus")
    for name in CORPORA:
        subparsers.add_parser(name, help=f"build {name} (see its --help)", add_help=False)
    chosen = argv[0] if argv and argv[0] in CORPORA else None
    if chosen is None:
        parser.parse_args(argv)  # prints the usage / the unknown-corpus error
        return 2
    add_arguments, builder_from_args = _entry_points(chosen)
    corpus_parser = argparse.ArgumentParser(prog=f"python -m data_pipelines.build {chosen}")
    corpus_parser.add_argument(
        "--out_dir", default=os.path.join("data", chosen), help="corpus directory"
    )
    corpus_parser.add_argument(
        "--records_per_shard", type=int, default=corpus.DEFAULT_RECORDS_PER_SHARD
    )
    corpus_parser.add_argument(
        "--exclude_held_out_of",
        action="append",
        default=[],
        metavar="CORPUS_DIR",
        help="a built corpus whose validation/test texts must not appear in this one's "
        "train/validation (repeat; for corpora trained together in a mixture)",
    )
    add_arguments(corpus_parser)
    args = corpus_parser.parse_args(argv[1:])
    start = time.time()
    builder = builder_from_args(args)
    manifest = corpus.build(
        builder,
        args.out_dir,
        records_per_shard=args.records_per_shard,
        exclude_held_out_of=args.exclude_held_out_of,
    )
    summary = {key: manifest[key] for key in ("counts", "skipped")}
    print(json.dumps(summary, indent=2))
    print(f"[{chosen}] built in {time.time() - start:.1f} s: {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
