"""A curated copy of a built pair corpus: the document taken from another field, and
boilerplate queries (one text repeated over many pairs) dropped.

    python -m data_pipelines.build curated_pairs --source data/pypi_code \\
        --document_field code_no_comments --max_query_repeats 2 --out_dir data/pypi_code_curated

- `--document_field F`: the copy's `document` is the source record's field `F` (for code
  corpora, `code_no_comments`: train on the text that code search ranks, so the model never
  learns to lean on comments it will not see). The source's `document` is kept as
  `source_document`. The merge de-duplicates on the new document, so two functions that
  differ only in their comments become one pair, and their texts stay distinct negatives.
- `--max_query_repeats K`: a pair is dropped (counted as `repeated_query`) when its query
  text, whitespace-normalised, is the query of more than `K` pairs of its split. Such texts
  are boilerplate (`"Initialize the weights"` over 91 pairs, one argument description over
  115 model classes of `transformers`): each copy is masked as a false negative of the
  others, so they cost a batch slot and teach little. Counting is per split: a
  validation split is curated by its own counts, and the training split's by its own.

Records keep every other field of the source; the merge recomputes `query_id` and
`document_id`. The manifest's description names the source fingerprint and the rules, so a
rebuilt source never reuses stale units.
"""

from __future__ import annotations

import argparse
import collections
from collections.abc import Iterable, Sequence

from data_pipelines import corpus
from data_pipelines.text_neighbours import normalise_whitespace

# Bump when the curation rule changes (invalidates the unit caches through `description`).
CURATION_VERSION = 1


def repeated_queries(queries: Sequence[str], max_repeats: int) -> set[str]:
    """The whitespace-normalised query texts that occur more than `max_repeats` times.

    >>> sorted(repeated_queries(["a b", "a  b", "c", "a b"], 2))
    ['a b']
    """
    if max_repeats < 1:
        raise ValueError(f"max_repeats must be at least 1, got {max_repeats}")
    counts = collections.Counter(normalise_whitespace(q) for q in queries)
    return {q for q, n in counts.items() if n > max_repeats}


class CuratedPairsBuilder(corpus.Builder):
    """The records of a finished corpus, curated (one unit per split).

    Args:
      source: a finished corpus directory.
      document_field: the source field that becomes the copy's `document` (a string field
        of the schema); "document" keeps it.
      max_query_repeats: drop pairs whose query text is shared by more than this many pairs
        of their split; None keeps all.
      splits: the splits to copy (default: all of the source's).
    """

    name = "curated_pairs"

    def __init__(
        self,
        source: str,
        *,
        document_field: str = "document",
        max_query_repeats: int | None = None,
        splits: Sequence[str] | None = None,
    ):
        manifest = corpus.read_manifest(source)
        schema = manifest["schema"]
        if schema.get(document_field) != "string":
            strings = sorted(f for f, kind in schema.items() if kind == "string")
            raise ValueError(
                f"{source}: --document_field {document_field!r} is not a string field of the "
                f"corpus (its string fields: {strings})"
            )
        if "negatives" in schema and document_field != "document":
            raise ValueError(
                f"{source}: the corpus has mined 'negatives' drawn from its 'document' texts; "
                f"curate the corpus before mining, not after"
            )
        if max_query_repeats is not None and max_query_repeats < 1:
            raise ValueError(f"max_query_repeats must be at least 1, got {max_query_repeats}")
        available = [s for s in corpus.SPLITS if s in manifest["shards"]]
        unknown = sorted(set(splits or ()) - set(available))
        if unknown:
            raise ValueError(f"{source}: no split(s) {unknown} (it has {available})")
        self.source = source
        self.source_fingerprint = manifest["fingerprint"]
        self.document_field = document_field
        self.max_query_repeats = max_query_repeats
        # Held-out splits first, as every builder orders them (see corpus.build).
        self.splits = [s for s in reversed(corpus.SPLITS) if s in (splits or available)]

    def units(self) -> Sequence[corpus.Unit]:
        return [corpus.Unit(split, split) for split in self.splits]

    def extract(self, unit: corpus.Unit, skipped: collections.Counter) -> Iterable[dict]:
        records = corpus.read_split(self.source, unit.payload)
        dropped = set()
        if self.max_query_repeats is not None:
            dropped = repeated_queries([r["query"] for r in records], self.max_query_repeats)
        for record in records:
            if dropped and normalise_whitespace(record["query"]) in dropped:
                skipped["repeated_query"] += 1
                continue
            out = {k: v for k, v in record.items() if k not in ("query_id", "document_id")}
            if self.document_field != "document":
                out["source_document"] = record["document"]
                out["document"] = record[self.document_field]
            out["split"] = unit.payload
            yield out

    def split(self, record: dict) -> str:
        return record["split"]

    def description(self) -> dict:
        return {
            "curation_version": CURATION_VERSION,
            "source": self.source,
            "source_fingerprint": self.source_fingerprint,
            "document_field": self.document_field,
            "max_query_repeats": self.max_query_repeats,
            "splits": self.splits,
        }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help="a finished pair corpus directory")
    parser.add_argument(
        "--document_field",
        default="document",
        help="the source field that becomes the document (e.g. code_no_comments)",
    )
    parser.add_argument(
        "--max_query_repeats",
        type=int,
        default=None,
        help="drop pairs whose query text is shared by more than this many pairs of a split",
    )
    parser.add_argument(
        "--splits", default=None, help="comma-separated splits to keep (default: all)"
    )


def builder_from_args(args: argparse.Namespace) -> CuratedPairsBuilder:
    splits = [s.strip() for s in args.splits.split(",")] if args.splits else None
    return CuratedPairsBuilder(
        args.source,
        document_field=args.document_field,
        max_query_repeats=args.max_query_repeats,
        splits=splits,
    )
