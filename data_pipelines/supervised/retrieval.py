"""The retrieval base of `beir` and `msmarco`: qrels joined with query and document texts,
optionally with mined hard negatives.

Hard negatives (`--hard_negatives FILE`, jsonl or jsonl.gz, one object per line):

    {"qid": "q1", "neg": ["d7", "d3", ...]}                       candidates in this order
    {"qid": 17, "pos": [5], "neg": {"bm25": [...], "ce": [...]}}  sentence-transformers'
        msmarco-hard-negatives: one list per mining system, taken round-robin (the first of
        each system, then the second of each, ...) over `--negative_systems` (default: all, in
        the line's order)

A query's negatives are the first `num_negatives` candidates that are not relevant to it
(score > 0 in the qrels read, or listed in the line's optional `pos`), repeats dropped. Every
pair of that query gets the same negatives. A pair is skipped and counted, never padded (the
loss takes a fixed number per pair), when its query has no line (`no_hard_negatives`), too few
candidates (`too_few_negatives`) or a chosen candidate is not in the corpus
(`negative_not_in_corpus`). To train with negatives from a file that covers only the training
queries, build `--splits train` (and a second corpus without negatives for evaluation).

Memory: MS MARCO's collection has 8.8M passages, so nothing is loaded whole. One unit (a
dataset directory) reads the qrels first (the pairs, and so the query and document ids needed),
then the hard negatives of those queries only, then streams the queries and the corpus keeping
only the texts of the ids needed: memory grows with the pairs, not with the corpus.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence

from cpt_jax import files
from data_pipelines import corpus
from data_pipelines.supervised import readers
from data_pipelines.supervised.pairs import PairsBuilder

# Qrels split names (as the files are named) -> corpus splits.
SPLITS = {"train": "train", "dev": "validation", "test": "test"}


@dataclasses.dataclass(frozen=True)
class Layout:
    """The files of one retrieval dataset (resolved and checked when a builder is made)."""

    dataset: str
    root: str
    corpus: str
    queries: tuple[str, ...]
    qrels: tuple[tuple[str, str], ...]  # (qrels split name, path), in split order

    def files(self) -> list[str]:
        return [self.corpus, *self.queries, *(path for _, path in self.qrels)]


def keep_text(table: dict[str, str], key: str, text: str, role: str, skipped: Counter) -> None:
    """Stores a wanted text: empty ones are counted, a repeated id keeps the first."""
    if not text.strip():
        skipped[f"{role}_empty_text"] += 1
    elif key in table:
        skipped[f"{role}_duplicate_id"] += 1
    else:
        table[key] = text


# ----------------------------------------------------------------------------- hard negatives


def _candidate_ids(neg, systems: Sequence[str]) -> list[str] | None:
    """The candidate ids of one hard-negatives line, in order; None when mistyped."""
    if isinstance(neg, list):
        lists = [neg]
    elif isinstance(neg, dict):
        lists = [neg.get(s, []) for s in systems] if systems else list(neg.values())
    else:
        return None
    if not all(isinstance(ids, list) for ids in lists):
        return None
    # Round-robin over the systems: each contributes its best candidates first.
    ordered = [
        ids[i] for i in range(max(map(len, lists), default=0)) for ids in lists if i < len(ids)
    ]
    keys = [readers.key(value) for value in ordered]
    return None if None in keys else keys


def read_hard_negatives(
    path: str,
    queries: set[str],
    relevant: dict[str, set[str]],
    num_negatives: int,
    systems: Sequence[str],
    skipped: Counter,
) -> dict[str, list[str]]:
    """The negative document ids of each query in `queries` (at most `num_negatives` each).

    Format and selection rule: see the module docstring. Lines of other queries are ignored
    (the file may cover other splits); a query's later lines are counted as
    `hard_negatives_duplicate_qid`.
    """
    chosen: dict[str, list[str]] = {}
    systems_seen: set[str] = set()
    for _, line in readers.json_objects(path, "hard_negatives", skipped):
        if isinstance(line.get("neg"), dict):
            systems_seen.update(line["neg"])
        qid = readers.key(line.get("qid"))
        candidates = _candidate_ids(line.get("neg"), systems)
        positives = line.get("pos", [])
        if qid is None or candidates is None or not isinstance(positives, list):
            skipped["hard_negatives_missing_field"] += 1
            continue
        if qid not in queries:
            continue
        if qid in chosen:
            skipped["hard_negatives_duplicate_qid"] += 1
            continue
        excluded = relevant.get(qid, set()) | {readers.key(p) for p in positives}
        picked: list[str] = []
        for doc_id in candidates:
            if doc_id not in excluded and doc_id not in picked:
                picked.append(doc_id)
                if len(picked) == num_negatives:
                    break
        chosen[qid] = picked
    missing = sorted(set(systems) - systems_seen)
    if missing:
        # A misspelt system would otherwise just starve every query of negatives.
        raise ValueError(
            f"{path}: negative system(s) {missing} appear in no line "
            f"(systems in the file: {sorted(systems_seen)})"
        )
    return chosen


# ----------------------------------------------------------------------------- the builder


class RetrievalBuilder(PairsBuilder):
    """Query-document pairs from qrels, optionally with mined hard negatives (one unit per
    dataset directory)."""

    layout_name = ""  # for the manifest

    def __init__(
        self,
        layouts: Sequence[Layout],
        *,
        min_score: int = 1,
        hard_negatives: str | None = None,
        num_negatives: int | None = None,
        negative_systems: Sequence[str] = (),
    ):
        if num_negatives is None:
            num_negatives = 1 if hard_negatives else 0
        if num_negatives < 0:
            raise ValueError(f"num_negatives must be >= 0, got {num_negatives}")
        if num_negatives and not hard_negatives:
            raise ValueError(f"num_negatives={num_negatives} needs a --hard_negatives file")
        if not num_negatives:
            hard_negatives = None  # nothing to take from it
        if hard_negatives:
            readers.require(hard_negatives, "the hard negatives file")
            if len(layouts) > 1:
                # Query ids are only unique within one dataset.
                raise ValueError("--hard_negatives needs exactly one --data_dir")
        if min_score < 1:
            raise ValueError(f"min_score must be >= 1 (a judged-relevant score), got {min_score}")
        self.layouts = list(layouts)
        self.min_score = min_score
        self.hard_negatives = os.path.abspath(hard_negatives) if hard_negatives else None
        self.num_negatives = num_negatives
        self.negative_systems = tuple(negative_systems)

    def units(self) -> list[corpus.Unit]:
        return [
            corpus.Unit(f"{i:02d}-{corpus.safe_unit_name(layout.dataset)}", layout)
            for i, layout in enumerate(self.layouts)
        ]

    # The three readers a layout needs (qrels rows, query texts, document texts).
    def _qrels(self, path: str, skipped: Counter) -> Iterator[tuple[int, str, str, int]]:
        raise NotImplementedError

    def _queries(self, layout: Layout, wanted: set[str], skipped: Counter) -> dict[str, str]:
        raise NotImplementedError

    def _documents(self, layout: Layout, wanted: set[str], skipped: Counter) -> dict[str, str]:
        raise NotImplementedError

    def extract(self, unit: corpus.Unit, skipped: Counter) -> Iterator[dict]:
        layout: Layout = unit.payload
        pairs = []  # (split, qid, doc id, source), in qrels order
        relevant: dict[str, set[str]] = defaultdict(set)
        for split, path in layout.qrels:
            where = os.path.relpath(path, layout.root)
            for line_number, qid, doc_id, score in self._qrels(path, skipped):
                if score > 0:
                    relevant[qid].add(doc_id)
                if score < self.min_score:
                    skipped["qrels_not_relevant"] += 1
                    continue
                pairs.append((SPLITS[split], qid, doc_id, f"{where}:{line_number}"))
        wanted_queries = {qid for _, qid, _, _ in pairs}
        negatives: dict[str, list[str]] = {}
        if self.num_negatives:
            negatives = read_hard_negatives(
                self.hard_negatives,
                wanted_queries,
                relevant,
                self.num_negatives,
                self.negative_systems,
                skipped,
            )
        wanted_documents = {doc_id for _, _, doc_id, _ in pairs}
        wanted_documents.update(d for ids in negatives.values() for d in ids)
        queries = self._queries(layout, wanted_queries, skipped)
        documents = self._documents(layout, wanted_documents, skipped)
        for split, qid, doc_id, source in pairs:
            if qid not in queries:
                skipped["qrels_unknown_query"] += 1
                continue
            if doc_id not in documents:
                skipped["qrels_unknown_document"] += 1
                continue
            record = {
                "query": queries[qid],
                "document": documents[doc_id],
                "query_key": qid,
                "document_key": doc_id,
                "dataset": layout.dataset,
                "split": split,
                "source": source,
            }
            if self.num_negatives:
                ids = negatives.get(qid)
                if ids is None:
                    skipped["no_hard_negatives"] += 1
                    continue
                if len(ids) < self.num_negatives:
                    skipped["too_few_negatives"] += 1
                    continue
                if any(d not in documents for d in ids):
                    skipped["negative_not_in_corpus"] += 1
                    continue
                record["negatives"] = [documents[d] for d in ids]
            yield record

    def _describe(self) -> dict:
        description = {
            "format": self.layout_name,
            "datasets": [
                {
                    "dataset": layout.dataset,
                    "splits": {split: SPLITS[split] for split, _ in layout.qrels},
                    "files": [
                        {"file": os.path.relpath(p, layout.root), "sha256": files.sha256_of(p)}
                        for p in layout.files()
                    ],
                }
                for layout in self.layouts
            ],
            "pairs": f"qrels score >= {self.min_score}",
            "dedup": "(dataset, query id, document id, negatives)",
            "num_negatives": self.num_negatives,
        }
        if self.hard_negatives:
            description["hard_negatives"] = {
                "file": os.path.basename(self.hard_negatives),
                "sha256": files.sha256_of(self.hard_negatives),
                "systems": list(self.negative_systems) or "all",
            }
        return description
