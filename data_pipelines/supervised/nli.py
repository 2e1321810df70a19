"""The `nli` corpus: SimCSE-style triplets from SNLI / MultiNLI files, or (anchor, positive,
negative) triplet files.

The lines of one file are grouped by premise (`sentence1`, first appearance order); each
entailed hypothesis of a premise is a positive, and its negatives are `num_negatives` distinct
contradicted hypotheses of the same premise, chosen round-robin (the i-th positive starts at
the i-th contradiction). Premises with no entailment (`nli_premise_without_entailment`) or
fewer contradictions than needed (`nli_premise_too_few_contradictions`) give nothing and are
counted; neutral lines (`nli_neutral`) and lines without a gold label (`nli_no_gold_label`,
SNLI's "-") are counted too. A file is read as SNLI-style when its header (tsv/csv) or first
JSON object has `sentence1`, `sentence2` and `gold_label` (`--format` forces either);
otherwise as triplets, which take `--anchor_column`, `--positive_column` and the first
`num_negatives` of `--negative_columns`. An SNLI-style file is grouped in memory (SNLI's 550k
lines are small); every other input is streamed.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

from cpt_jax import files
from data_pipelines import corpus
from data_pipelines.supervised import readers
from data_pipelines.supervised.pairs import PairsBuilder

NLI_LABELS = ("entailment", "neutral", "contradiction")


def split_for_file(path: str) -> str:
    """The split an NLI file's name says: `train`, `dev`/`valid`/`validation`, or `test`."""
    words = set(re.split(r"[^a-z]+", os.path.basename(path).lower()))
    found = {
        split
        for split, names in (
            ("train", {"train"}),
            ("validation", {"dev", "valid", "validation"}),
            ("test", {"test"}),
        )
        if words & names
    }
    if len(found) != 1:
        raise ValueError(
            f"{path}: cannot tell its split from the name (found {sorted(found) or 'none'}); "
            "pass --split train|validation|test"
        )
    return found.pop()


class NliBuilder(PairsBuilder):
    """NLI triplets: SNLI/MultiNLI files grouped by premise, or (anchor, positive, negative)
    files; one unit per file."""

    name = "nli"

    def __init__(
        self,
        paths: Iterable[str],
        *,
        file_format: str = "auto",
        anchor_column: str = "anchor",
        positive_column: str = "positive",
        negative_columns: Sequence[str] = ("negative",),
        num_negatives: int = 1,
        split: str | None = None,
    ):
        if file_format not in ("auto", "snli", "triplets"):
            raise ValueError(f"format must be auto, snli or triplets, got {file_format!r}")
        if split is not None and split not in corpus.SPLITS:
            raise ValueError(f"split must be one of {corpus.SPLITS}, got {split!r}")
        if num_negatives < 0:
            raise ValueError(f"num_negatives must be >= 0, got {num_negatives}")
        self.paths = [os.path.abspath(readers.require(p, "an NLI file")) for p in paths]
        self.splits = [split or split_for_file(p) for p in self.paths]
        self.file_format = file_format
        self.anchor_column, self.positive_column = anchor_column, positive_column
        self.negative_columns = tuple(negative_columns)
        self.num_negatives = num_negatives

    def units(self) -> list[corpus.Unit]:
        return [
            corpus.Unit(f"{i:02d}-{corpus.safe_unit_name(readers.stem(p))}", (p, s))
            for i, (p, s) in enumerate(zip(self.paths, self.splits))
        ]

    def extract(self, unit: corpus.Unit, skipped: Counter) -> Iterator[dict]:
        path, split = unit.payload
        rows = readers.table_rows(path, "nli", skipped)
        first = next(rows, None)
        if first is None:
            return
        header = first[1] if first[0] == 0 else None
        rows = rows if header is not None else _chain(first, rows)
        file_format = self.file_format
        if file_format == "auto":
            file_format = (
                "snli"
                if {"sentence1", "sentence2", "gold_label"} <= first[1].keys()
                else "triplets"
            )
        base = {"dataset": readers.stem(path), "split": split}
        if file_format == "snli":
            yield from self._snli(path, rows, base, skipped)
        else:
            yield from self._triplets(path, header, rows, base, skipped)

    def _triplets(self, path, header, rows, base, skipped) -> Iterator[dict]:
        negative_columns = self.negative_columns[: self.num_negatives]
        if len(negative_columns) < self.num_negatives:
            raise ValueError(
                f"num_negatives={self.num_negatives} but only {len(self.negative_columns)} "
                f"negative columns ({list(self.negative_columns)})"
            )
        columns = [self.anchor_column, self.positive_column, *negative_columns]
        if header is not None and (missing := [c for c in columns if c not in header]):
            raise ValueError(f"{path}: header has no column {missing} (columns: {list(header)})")
        for line_number, row in rows:
            texts = [row.get(c) for c in columns]
            if not all(isinstance(t, str) for t in texts):
                skipped["nli_missing_field"] += 1
                continue
            if not all(t.strip() for t in texts):
                skipped["nli_empty_text"] += 1
                continue
            record = {
                "query": texts[0],
                "document": texts[1],
                "query_key": "",
                "document_key": "",
                **base,
                "source": f"{os.path.basename(path)}:{line_number}",
            }
            if self.num_negatives:
                record["negatives"] = texts[2:]
            yield record

    def _snli(self, path, rows, base, skipped) -> Iterator[dict]:
        # premise -> {"key": its id, label: [(hypothesis id, text, line)]}; premises in order.
        premises: dict[str, dict] = {}
        for line_number, row in rows:
            label, premise, hypothesis = (
                row.get(k) for k in ("gold_label", "sentence1", "sentence2")
            )
            if not all(isinstance(v, str) for v in (label, premise, hypothesis)):
                skipped["nli_missing_field"] += 1
                continue
            label = label.strip()
            if label in ("", "-"):
                skipped["nli_no_gold_label"] += 1
                continue
            if label not in NLI_LABELS:
                skipped["nli_unknown_label"] += 1
                continue
            if not premise.strip() or not hypothesis.strip():
                skipped["nli_empty_text"] += 1
                continue
            # SNLI names the premise's id captionID, MultiNLI promptID.
            premise_key = readers.key(row.get("captionID", row.get("promptID"))) or ""
            group = premises.setdefault(
                premise, {"key": premise_key, **{k: [] for k in NLI_LABELS}}
            )
            if label == "neutral":
                skipped["nli_neutral"] += 1
                continue
            group[label].append((readers.key(row.get("pairID")) or "", hypothesis, line_number))
        for premise, group in premises.items():
            entailed, contradicted = group["entailment"], group["contradiction"]
            if not entailed:
                skipped["nli_premise_without_entailment"] += 1
                continue
            if len(contradicted) < self.num_negatives:
                skipped["nli_premise_too_few_contradictions"] += 1
                continue
            for i, (hypothesis_key, hypothesis, line_number) in enumerate(entailed):
                record = {
                    "query": premise,
                    "document": hypothesis,
                    "query_key": group["key"],
                    "document_key": hypothesis_key,
                    **base,
                    "source": f"{os.path.basename(path)}:{line_number}",
                }
                if self.num_negatives:
                    record["negatives"] = [
                        contradicted[(i + j) % len(contradicted)][1]
                        for j in range(self.num_negatives)
                    ]
                yield record

    def _describe(self) -> dict:
        return {
            "format": f"NLI ({self.file_format})",
            "files": [
                {"file": os.path.basename(p), "split": s, "sha256": files.sha256_of(p)}
                for p, s in zip(self.paths, self.splits)
            ],
            "num_negatives": self.num_negatives,
            "columns": [self.anchor_column, self.positive_column, *self.negative_columns],
            "triplets": "premise, entailed hypothesis, contradicted hypotheses (round-robin)",
        }


def _chain(first, rest):
    yield first
    yield from rest
