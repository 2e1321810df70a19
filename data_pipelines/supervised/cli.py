"""The command line of the three corpora: each one's flags and the builder they make.

`python -m data_pipelines.build <beir|msmarco|nli> --help` lists them; `CORPORA` is what
`data_pipelines.build` reads.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from data_pipelines import corpus
from data_pipelines.supervised import retrieval
from data_pipelines.supervised.beir import BeirBuilder
from data_pipelines.supervised.msmarco import MsMarcoBuilder, MsMarcoTriplesBuilder
from data_pipelines.supervised.nli import NliBuilder
from data_pipelines.supervised.pairs import PairsBuilder


def _parse_splits(splits: str | Sequence[str] | None) -> list[str] | None:
    """The qrels splits of `--splits` (comma-separated); None: every split present."""
    if splits is None:
        return None
    names = splits.split(",") if isinstance(splits, str) else list(splits)
    names = [s.strip() for s in names if s.strip()]
    unknown = [s for s in names if s not in retrieval.SPLITS]
    if unknown or not names:
        raise ValueError(f"splits must be some of {list(retrieval.SPLITS)}, got {splits!r}")
    return names


def _add_negative_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hard_negatives",
        default=None,
        help='jsonl(.gz): {"qid": ..., "neg": [doc ids] | {system: [doc ids]}} per line',
    )
    parser.add_argument(
        "--num_negatives",
        type=int,
        default=None,
        help="negatives per pair (default: 1 with --hard_negatives/--triples, else 0)",
    )
    parser.add_argument(
        "--negative_systems",
        default="",
        help="comma-separated mining systems of a dict-valued `neg` (default: all)",
    )
    parser.add_argument(
        "--splits", default=None, help="comma-separated qrels splits (default: all present)"
    )
    parser.add_argument(
        "--min_score", type=int, default=1, help="qrels score a pair needs (default 1)"
    )


def _negative_kwargs(args: argparse.Namespace) -> dict:
    return {
        "min_score": args.min_score,
        "hard_negatives": args.hard_negatives,
        "num_negatives": args.num_negatives,
        "negative_systems": [s.strip() for s in args.negative_systems.split(",") if s.strip()],
    }


def add_beir_arguments(parser: argparse.ArgumentParser) -> None:
    """The `beir` corpus's flags."""
    parser.add_argument("--data_dir", nargs="+", required=True, help="BEIR dataset directories")
    _add_negative_arguments(parser)


def beir_from_args(args: argparse.Namespace) -> BeirBuilder:
    """The `beir` builder of parsed flags."""
    return BeirBuilder(args.data_dir, _parse_splits(args.splits), **_negative_kwargs(args))


def add_msmarco_arguments(parser: argparse.ArgumentParser) -> None:
    """The `msmarco` corpus's flags."""
    parser.add_argument("--data_dir", default=None, help="the MS MARCO passage files' directory")
    parser.add_argument(
        "--triples", nargs="+", default=None, help="query/positive/negative tsv files instead"
    )
    _add_negative_arguments(parser)


def msmarco_from_args(args: argparse.Namespace) -> PairsBuilder:
    """The `msmarco` builder of parsed flags (qrels mode, or triples mode with --triples)."""
    if args.triples:
        if args.data_dir or args.hard_negatives:
            raise ValueError(
                "--triples builds from the triples alone (no --data_dir/--hard_negatives)"
            )
        return MsMarcoTriplesBuilder(args.triples, args.num_negatives)
    if not args.data_dir:
        raise ValueError("msmarco needs --data_dir (or --triples)")
    return MsMarcoBuilder(args.data_dir, _parse_splits(args.splits), **_negative_kwargs(args))


def add_nli_arguments(parser: argparse.ArgumentParser) -> None:
    """The `nli` corpus's flags."""
    parser.add_argument("files", nargs="+", help="SNLI/MultiNLI or triplet .jsonl/.tsv/.txt/.csv")
    parser.add_argument("--format", default="auto", choices=("auto", "snli", "triplets"))
    parser.add_argument("--anchor_column", default="anchor")
    parser.add_argument("--positive_column", default="positive")
    parser.add_argument("--negative_columns", default="negative", help="comma-separated")
    parser.add_argument("--num_negatives", type=int, default=1)
    parser.add_argument("--split", default=None, choices=corpus.SPLITS, help="for every file")


def nli_from_args(args: argparse.Namespace) -> NliBuilder:
    """The `nli` builder of parsed flags."""
    return NliBuilder(
        args.files,
        file_format=args.format,
        anchor_column=args.anchor_column,
        positive_column=args.positive_column,
        negative_columns=[c.strip() for c in args.negative_columns.split(",") if c.strip()],
        num_negatives=args.num_negatives,
        split=args.split,
    )


# What `python -m data_pipelines.build` reads: corpus name -> (add_arguments, builder_from_args).
CORPORA = {
    "beir": (add_beir_arguments, beir_from_args),
    "msmarco": (add_msmarco_arguments, msmarco_from_args),
    "nli": (add_nli_arguments, nli_from_args),
}
