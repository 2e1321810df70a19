"""Corpora derived from a finished corpus: the shared part of `mined_negatives` and
`curated_pairs`.

A derived corpus reads the records of some splits of `--source` (one build unit per split,
held-out splits first, as every builder orders them) and writes changed copies of them into
the same splits. The source is already de-duplicated by its own rule, which the copy keeps
(`dedup_key` is None): a derived builder never merges two records its source kept apart.
The manifest's description names the source's fingerprint, so a rebuilt source never
reuses stale units.
"""

from __future__ import annotations

import abc
import argparse
import collections
from collections.abc import Iterable, Sequence

from data_pipelines import corpus


class DerivedBuilder(corpus.Builder):
    """Copies of the records of `splits` (default: all) of the finished corpus `source`.

    Subclasses implement `derive(records, split, skipped)`, yielding the new records of one
    split (from `copy_record`), and extend `description()`.
    """

    def __init__(self, source: str, splits: Sequence[str] | None = None):
        self.source = source
        self.manifest = corpus.read_manifest(source)
        available = [s for s in corpus.SPLITS if s in self.manifest["shards"]]
        unknown = sorted(set(splits or ()) - set(available))
        if unknown:
            raise ValueError(f"{source}: no split(s) {unknown} (it has {available})")
        # Held-out splits first, as every builder orders them (see corpus.build).
        self.splits = [s for s in reversed(corpus.SPLITS) if s in (splits or available)]

    @property
    def schema(self) -> dict[str, str]:
        """The source's field types."""
        return self.manifest["schema"]

    @abc.abstractmethod
    def derive(
        self, records: list[dict], split: str, skipped: collections.Counter
    ) -> Iterable[dict]:
        """The derived records of one split of the source (`skipped` counts what is left out)."""

    def units(self) -> Sequence[corpus.Unit]:
        return [corpus.Unit(split, split) for split in self.splits]

    def extract(self, unit: corpus.Unit, skipped: collections.Counter) -> Iterable[dict]:
        return self.derive(corpus.read_split(self.source, unit.payload), unit.payload, skipped)

    def split(self, record: dict) -> str:
        return record["split"]

    def dedup_key(self, record: dict) -> str | None:
        return None

    def description(self) -> dict:
        return {
            "source": self.source,
            "source_fingerprint": self.manifest["fingerprint"],
            "splits": self.splits,
        }


def copy_record(record: dict, split: str) -> dict:
    """A source record to change: its fields without the ids (the merge recomputes them from
    the new texts), with `split`."""
    out = {k: v for k, v in record.items() if k not in ("query_id", "document_id", "negative_ids")}
    out["split"] = split
    return out


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help="a finished pair corpus directory")
    parser.add_argument(
        "--splits", default=None, help="comma-separated splits to keep (default: all)"
    )


def splits_from_args(args: argparse.Namespace) -> list[str] | None:
    return [s.strip() for s in args.splits.split(",")] if args.splits else None
