"""A curated copy of a built pair corpus: the document taken from another field, and
boilerplate queries (one text repeated over many pairs) dropped.

    python -m data_pipelines.build curated_pairs --source data/pypi_code --splits train \\
        --document_field code_no_comments --max_query_repeats 2 --out_dir data/pypi_code_curated

- `--document_field F`: the copy's `document` is the source record's field `F` (for code
  corpora, `code_no_comments`: train on the text that code search ranks, so the model never
  learns to lean on comments it will not see). The source's `document` is kept as
  `source_document`. The copy is de-duplicated on the new document, as code corpora are:
  when two functions differ only in their comments, only the first is kept, so no text is
  the positive of two pairs. A record whose new document is the `F` text of a record in a
  more held-out split of the source (validation or test for train, test for validation)
  is skipped (`held_out_in_source`), whether or not that split is copied too: the
  evaluation ranks those texts.
- `--max_query_repeats K`: a pair is dropped (counted as `repeated_query`) when its query
  text, whitespace-normalised, is the query of more than `K` pairs of its split in the
  source. Such texts are boilerplate (`"Initialize the weights"` over 91 pairs, one argument
  description over 115 model classes of `transformers`): they teach little, and the copies
  whose texts are equal are masked as false negatives of one another, so they only fill
  batch slots. Each split is counted on its own.

Records keep every other field of the source and gain `split`; the merge recomputes
`query_id` and `document_id` (see `data_pipelines.derived`).
"""

from __future__ import annotations

import argparse
import collections
from collections.abc import Iterable, Sequence

from data_pipelines import corpus, derived
from data_pipelines.text import normalise_whitespace

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


class CuratedPairsBuilder(derived.DerivedBuilder):
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
        super().__init__(source, splits)
        if self.schema.get(document_field) != "string":
            strings = sorted(f for f, kind in self.schema.items() if kind == "string")
            raise ValueError(
                f"{source}: --document_field {document_field!r} is not a string field of the "
                f"corpus (its string fields: {strings})"
            )
        if "negatives" in self.schema and document_field != "document":
            raise ValueError(
                f"{source}: the corpus has mined 'negatives' drawn from its 'document' texts; "
                f"curate the corpus before mining, not after"
            )
        if max_query_repeats is not None and max_query_repeats < 1:
            raise ValueError(f"max_query_repeats must be at least 1, got {max_query_repeats}")
        self.document_field = document_field
        self.max_query_repeats = max_query_repeats

    def _held_out_documents(self, split: str) -> set[str]:
        """The whitespace-normalised new documents of the source's more held-out splits."""
        if self.document_field == "document":
            return set()  # the source's own de-duplication already kept them apart
        later = corpus.SPLITS[corpus.SPLITS.index(split) + 1 :]
        return {
            normalise_whitespace(record[self.document_field])
            for other in later
            if other in self.manifest["shards"]
            for record in corpus.read_split(self.source, other)
        }

    def derive(
        self, records: list[dict], split: str, skipped: collections.Counter
    ) -> Iterable[dict]:
        dropped = set()
        if self.max_query_repeats is not None:
            dropped = repeated_queries([r["query"] for r in records], self.max_query_repeats)
        held_out = self._held_out_documents(split)
        for record in records:
            if dropped and normalise_whitespace(record["query"]) in dropped:
                skipped["repeated_query"] += 1
                continue
            if held_out and normalise_whitespace(record[self.document_field]) in held_out:
                skipped["held_out_in_source"] += 1
                continue
            out = derived.copy_record(record, split)
            if self.document_field != "document":
                out["source_document"] = record["document"]
                out["document"] = record[self.document_field]
            yield out

    def dedup_key(self, record: dict) -> str | None:
        if self.document_field == "document":
            return None  # the source's own rule stands
        return normalise_whitespace(record["document"])

    def description(self) -> dict:
        return {
            "curation_version": CURATION_VERSION,
            **super().description(),
            "document_field": self.document_field,
            "max_query_repeats": self.max_query_repeats,
        }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    derived.add_source_arguments(parser)
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


def builder_from_args(args: argparse.Namespace) -> CuratedPairsBuilder:
    return CuratedPairsBuilder(
        args.source,
        document_field=args.document_field,
        max_query_repeats=args.max_query_repeats,
        splits=derived.splits_from_args(args),
    )
