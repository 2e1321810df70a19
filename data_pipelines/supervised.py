"""Supervised fine-tuning pairs that users bring: BEIR and MS MARCO layouts, NLI triplets.

Three corpora (`python -m data_pipelines.build <corpus> --help` lists the options):

    beir     --data_dir DIR [DIR ...]   BEIR dataset directories:
               corpus.jsonl   {"_id", "title", "text"}
               queries.jsonl  {"_id", "text"}
               qrels/{train,dev,test}.tsv  tab-separated `query-id corpus-id score`, one header
    msmarco  --data_dir DIR             the MS MARCO passage files:
               collection.tsv            pid \\t passage
               queries.{split}.tsv       qid \\t query     (else queries.{split}.small.tsv)
               qrels.{split}.tsv         qid 0 pid score  (TREC; else qrels.{split}.small.tsv)
             or --triples FILE ...      `query \\t positive \\t negative` texts (train only)
    nli      FILE ...                   SNLI / MultiNLI (`sentence1`, `sentence2`,
                                        `gold_label`) as jsonl or tsv, or (anchor, positive,
                                        negative) triplets as jsonl, tsv or csv

Records: `query`, `document`, `negatives` (only when negatives are requested, then exactly
`num_negatives` texts in every record), `query_key` and `document_key` (the source's ids as
strings; "" where the source has none: triples and triplet files), `dataset`, `split`, `source`
(`file:line` of the pair). Qrels splits map train -> train, dev -> validation,
test -> test; an NLI file's split comes from its name (`..._dev_matched.jsonl`: validation)
unless `--split` says otherwise.

Retrieval pairs: every (query, judged document) with `score >= min_score` (default 1, i.e.
relevant) in the qrels of the requested splits. BEIR's document text is
`(title + " " + text).strip()`, as BEIR's own encoders join them; MS MARCO passages are used
as they are.

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

NLI (SimCSE-style triplets): the lines of one file are grouped by premise (`sentence1`, first
appearance order); each entailed hypothesis of a premise is a positive, and its negatives are
`num_negatives` distinct contradicted hypotheses of the same premise, chosen round-robin (the
i-th positive starts at the i-th contradiction). Premises with no entailment
(`nli_premise_without_entailment`) or fewer contradictions than needed
(`nli_premise_too_few_contradictions`) give nothing and are counted; neutral lines
(`nli_neutral`) and lines without a gold label (`nli_no_gold_label`, SNLI's "-") are counted
too. A file is read as SNLI-style when its header (tsv/csv) or first JSON object has
`sentence1`, `sentence2` and `gold_label` (`--format` forces either); otherwise as triplets,
which take `--anchor_column`, `--positive_column` and the first `num_negatives` of
`--negative_columns`. An SNLI-style file is grouped in memory (SNLI's 550k lines are small);
every other input is streamed.

Bad input is skipped and counted in the manifest by reason, prefixed by the file's role
(`corpus_`, `queries_`, `qrels_`, `hard_negatives_`, `triples_`, `nli_`): `non_utf8`,
`invalid_json`, `missing_field` (missing or mistyped), `malformed_row`, `empty_text`,
`duplicate_id` (the first wins), and for pairs `qrels_not_relevant`, `qrels_unknown_query`,
`qrels_unknown_document`. `corpus_*`/`queries_*` reasons count lines (`empty_text` and
`duplicate_id` there only among the ids needed: the others are never kept); `qrels_*` and the
negative reasons count pairs. What cannot be skipped is an error naming the file: a missing
corpus, queries or qrels file, a csv/tsv header without a configured column.

De-duplication (`dedup_key`) is by pair, never by document alone (one passage is relevant to
many queries): (dataset, query id, document id) where the source has ids, else the
whitespace-normalised query and document texts; plus the negatives' texts.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import gzip
import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence

from cpt_jax import files
from data_pipelines import corpus
from data_pipelines.text import normalise_whitespace

# Qrels split names (as the files are named) -> corpus splits.
SPLITS = {"train": "train", "dev": "validation", "test": "test"}
NLI_LABELS = ("entailment", "neutral", "contradiction")


# ----------------------------------------------------------------------------- reading


def _open(path: str):
    opener = gzip.open if path.endswith(".gz") else open
    try:
        return opener(path, "rb")
    except OSError as e:
        raise OSError(f"{path}: cannot read input file ({e.strerror or e})") from e


def text_lines(path: str, role: str, skipped: Counter) -> Iterator[tuple[int, str]]:
    """`(line number, line without its line break)` for each non-blank line of a file.

    Streams the file (plain or .gz). A line that is not UTF-8 is counted as
    `{role}_non_utf8` and left out.
    """
    with _open(path) as f:
        for line_number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                skipped[f"{role}_non_utf8"] += 1
                continue
            line = line.rstrip("\r\n")
            if line.strip():
                yield line_number, line


def json_objects(path: str, role: str, skipped: Counter) -> Iterator[tuple[int, dict]]:
    """`(line number, object)` for each JSON-object line; others are counted by reason."""
    for line_number, line in text_lines(path, role, skipped):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            skipped[f"{role}_invalid_json"] += 1
            continue
        if not isinstance(value, dict):
            skipped[f"{role}_missing_field"] += 1
            continue
        yield line_number, value


def _key(value) -> str | None:
    """An id as a string (ids are strings or integers in the wild); None if it is neither."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value).strip() or None


def _stem(path: str) -> str:
    """The file name without its extensions (`snli_1.0_dev.jsonl.gz` -> `snli_1.0_dev`)."""
    name = os.path.basename(path)
    if name.endswith(".gz"):
        name = name[: -len(".gz")]
    return os.path.splitext(name)[0]


class _PairsBuilder(corpus.Builder):
    """What the supervised builders share: the `split` field, pair keys, a cached description."""

    num_negatives: int = 0
    _description: dict | None = None

    def split(self, record: dict) -> str:
        return record["split"]

    def dedup_key(self, record: dict) -> str:
        """The pair, never the document alone: one passage is relevant to many queries.

        By (dataset, query id, document id) where the source has ids, else by the
        whitespace-normalised texts; the negatives' texts are part of the key either way.
        """
        if record["query_key"] and record["document_key"]:
            parts = [record["dataset"], record["query_key"], record["document_key"]]
        else:
            parts = [
                normalise_whitespace(record["query"]),
                normalise_whitespace(record["document"]),
            ]
        parts += [normalise_whitespace(text) for text in record.get("negatives", ())]
        return "\x1f".join(parts)

    def description(self) -> dict:
        # Computed once: it hashes the inputs (gigabytes for MS MARCO), and `corpus.build`
        # asks for it several times.
        if self._description is None:
            self._description = self._describe()
        return self._description

    def _describe(self) -> dict:
        raise NotImplementedError


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
    keys = [_key(value) for value in ordered]
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
    for _, line in json_objects(path, "hard_negatives", skipped):
        if isinstance(line.get("neg"), dict):
            systems_seen.update(line["neg"])
        qid = _key(line.get("qid"))
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
        excluded = relevant.get(qid, set()) | {_key(p) for p in positives}
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


# ----------------------------------------------------------------------------- retrieval


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


def _require(path: str, what: str) -> str:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing ({what})")
    return path


def _parse_splits(splits: str | Sequence[str] | None) -> list[str] | None:
    if splits is None:
        return None
    names = splits.split(",") if isinstance(splits, str) else list(splits)
    names = [s.strip() for s in names if s.strip()]
    unknown = [s for s in names if s not in SPLITS]
    if unknown or not names:
        raise ValueError(f"splits must be some of {list(SPLITS)}, got {splits!r}")
    return names


class _RetrievalBuilder(_PairsBuilder):
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
            _require(hard_negatives, "the hard negatives file")
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


def _keep(table: dict[str, str], key: str, text: str, role: str, skipped: Counter) -> None:
    """Stores a wanted text: empty ones are counted, a repeated id keeps the first."""
    if not text.strip():
        skipped[f"{role}_empty_text"] += 1
    elif key in table:
        skipped[f"{role}_duplicate_id"] += 1
    else:
        table[key] = text


# ----------------------------------------------------------------------------- BEIR


def beir_layout(data_dir: str, splits: Sequence[str] | None = None) -> Layout:
    """The files of one BEIR dataset directory; `splits` None: every qrels split present."""
    root = os.path.abspath(data_dir)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: no such BEIR dataset directory")
    what = "a BEIR dataset has corpus.jsonl, queries.jsonl and qrels/{train,dev,test}.tsv"
    corpus_path = _require(os.path.join(root, "corpus.jsonl"), what)
    queries_path = _require(os.path.join(root, "queries.jsonl"), what)
    qrels = {s: os.path.join(root, "qrels", f"{s}.tsv") for s in SPLITS}
    if splits is None:
        chosen = [s for s in SPLITS if os.path.isfile(qrels[s])]
        if not chosen:
            raise FileNotFoundError(
                f"{os.path.join(root, 'qrels')}: no train/dev/test.tsv ({what})"
            )
    else:
        chosen = [s for s in SPLITS if s in splits]
        for split in chosen:
            _require(qrels[split], f"the qrels of the requested split {split!r}")
    return Layout(
        dataset=os.path.basename(root),
        root=root,
        corpus=corpus_path,
        queries=(queries_path,),
        qrels=tuple((s, qrels[s]) for s in chosen),
    )


class BeirBuilder(_RetrievalBuilder):
    """BEIR dataset directories (`corpus.jsonl`, `queries.jsonl`, `qrels/*.tsv`), one unit each."""

    name = "beir"
    layout_name = "BEIR (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)"

    def __init__(self, data_dirs: Iterable[str], splits: Sequence[str] | None = None, **kwargs):
        super().__init__([beir_layout(d, splits) for d in data_dirs], **kwargs)

    def _qrels(self, path, skipped):
        return beir_qrels(path, skipped)

    def _queries(self, layout, wanted, skipped):
        return beir_queries(layout.queries[0], wanted, skipped)

    def _documents(self, layout, wanted, skipped):
        return beir_documents(layout.corpus, wanted, skipped)


def beir_qrels(path: str, skipped: Counter) -> Iterator[tuple[int, str, str, int]]:
    """`(line number, query id, document id, grade)` of a BEIR `qrels/<split>.tsv`; its
    header and malformed rows (counted) are left out."""
    first = True
    for line_number, line in text_lines(path, "qrels", skipped):
        fields = [f.strip() for f in line.split("\t")]
        is_first, first = first, False
        try:
            score = int(fields[2]) if len(fields) == 3 else None
        except ValueError:
            if is_first:  # the header (`query-id corpus-id score`): BEIR always writes one
                continue
            score = None
        if score is None or not fields[0] or not fields[1]:
            skipped["qrels_malformed_row"] += 1
            continue
        yield line_number, fields[0], fields[1], score


def beir_queries(path: str, wanted: set[str] | None, skipped: Counter) -> dict[str, str]:
    """Query id -> text of a BEIR `queries.jsonl` (only `wanted` ids; None: all)."""
    queries: dict[str, str] = {}
    for _, line in json_objects(path, "queries", skipped):
        qid, text = _key(line.get("_id")), line.get("text")
        if qid is None or not isinstance(text, str):
            skipped["queries_missing_field"] += 1
        elif wanted is None or qid in wanted:
            _keep(queries, qid, text, "queries", skipped)
    return queries


def beir_documents(path: str, wanted: set[str] | None, skipped: Counter) -> dict[str, str]:
    """Document id -> `title + " " + text` of a BEIR `corpus.jsonl` (only `wanted` ids;
    None: all)."""
    documents: dict[str, str] = {}
    for _, line in json_objects(path, "corpus", skipped):
        doc_id, title, text = _key(line.get("_id")), line.get("title") or "", line.get("text")
        if doc_id is None or not isinstance(text, str) or not isinstance(title, str):
            skipped["corpus_missing_field"] += 1
        elif wanted is None or doc_id in wanted:
            # BEIR's join (its sentence-transformers encoder): title, a space, the text.
            _keep(documents, doc_id, f"{title} {text}".strip(), "corpus", skipped)
    return documents


# ----------------------------------------------------------------------------- MS MARCO


def _first_file(root: str, names: Sequence[str]) -> str | None:
    return next(
        (os.path.join(root, n) for n in names if os.path.isfile(os.path.join(root, n))), None
    )


def msmarco_layout(data_dir: str, splits: Sequence[str] | None = None) -> Layout:
    """The MS MARCO passage files of `data_dir`; `splits` None: every qrels split present.

    Each split uses `qrels.{split}.tsv` (else `qrels.{split}.small.tsv`) and
    `queries.{split}.tsv` (else `queries.{split}.small.tsv`).
    """
    root = os.path.abspath(data_dir)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: no such MS MARCO directory")
    collection = _require(os.path.join(root, "collection.tsv"), "MS MARCO's pid \\t passage file")
    qrels = {s: _first_file(root, [f"qrels.{s}.tsv", f"qrels.{s}.small.tsv"]) for s in SPLITS}
    if splits is None:
        chosen = [s for s in SPLITS if qrels[s]]
        if not chosen:
            raise FileNotFoundError(f"{root}: no qrels.{{train,dev,test}}[.small].tsv")
    else:
        chosen = [s for s in SPLITS if s in splits]
        for split in chosen:
            if qrels[split] is None:
                raise FileNotFoundError(f"{root}/qrels.{split}.tsv: missing (requested split)")
    queries = []
    for split in chosen:
        path = _first_file(root, [f"queries.{split}.tsv", f"queries.{split}.small.tsv"])
        if path is None:
            raise FileNotFoundError(f"{root}/queries.{split}.tsv: missing (qrels.{split} has it)")
        queries.append(path)
    return Layout(
        dataset=os.path.basename(root),
        root=root,
        corpus=collection,
        queries=tuple(queries),
        qrels=tuple((s, qrels[s]) for s in chosen),
    )


def _tsv_texts(path: str, role: str, wanted: set[str], skipped: Counter) -> dict[str, str]:
    """`id \\t text` lines: the texts of the wanted ids (streamed; others are not kept)."""
    texts: dict[str, str] = {}
    for _, line in text_lines(path, role, skipped):
        key, tab, text = line.partition("\t")
        key = key.strip()
        if not tab or not key:
            skipped[f"{role}_malformed_row"] += 1
        elif key in wanted:
            _keep(texts, key, text, role, skipped)
    return texts


class MsMarcoBuilder(_RetrievalBuilder):
    """MS MARCO passage ranking: collection, queries and TREC qrels of one directory."""

    name = "msmarco"
    layout_name = "MS MARCO passage (collection.tsv, queries.<split>.tsv, qrels.<split>.tsv)"

    def __init__(self, data_dir: str, splits: Sequence[str] | None = None, **kwargs):
        super().__init__([msmarco_layout(data_dir, splits)], **kwargs)

    def _qrels(self, path, skipped):
        for line_number, line in text_lines(path, "qrels", skipped):
            fields = line.split()  # TREC: qid iteration pid score (tabs or spaces)
            try:
                score = int(fields[3]) if len(fields) == 4 else None
            except ValueError:
                score = None
            if score is None:
                skipped["qrels_malformed_row"] += 1
                continue
            yield line_number, fields[0], fields[2], score

    def _queries(self, layout, wanted, skipped):
        queries: dict[str, str] = {}
        for path in layout.queries:
            for qid, text in _tsv_texts(path, "queries", wanted, skipped).items():
                queries.setdefault(qid, text)
        return queries

    def _documents(self, layout, wanted, skipped):
        return _tsv_texts(layout.corpus, "corpus", wanted, skipped)


class MsMarcoTriplesBuilder(_PairsBuilder):
    """`query \\t positive \\t negative` text triples (MS MARCO's triples.train.small.tsv),
    one unit per file, all in the train split; the texts carry no ids."""

    name = "msmarco"

    def __init__(self, paths: Iterable[str], num_negatives: int | None = None):
        self.paths = [os.path.abspath(_require(p, "a triples file")) for p in paths]
        self.num_negatives = 1 if num_negatives is None else num_negatives
        if self.num_negatives not in (0, 1):
            raise ValueError(
                f"triples have one negative: num_negatives 0 or 1, not {num_negatives}"
            )

    def units(self) -> list[corpus.Unit]:
        return [
            corpus.Unit(f"{i:02d}-{corpus.safe_unit_name(_stem(p))}", p)
            for i, p in enumerate(self.paths)
        ]

    def extract(self, unit: corpus.Unit, skipped: Counter) -> Iterator[dict]:
        path = unit.payload
        for line_number, line in text_lines(path, "triples", skipped):
            fields = line.split("\t")
            if len(fields) != 3:
                skipped["triples_malformed_row"] += 1
                continue
            if not all(f.strip() for f in fields):
                skipped["triples_empty_text"] += 1
                continue
            record = {
                "query": fields[0],
                "document": fields[1],
                "query_key": "",
                "document_key": "",
                "dataset": _stem(path),
                "split": "train",
                "source": f"{os.path.basename(path)}:{line_number}",
            }
            if self.num_negatives:
                record["negatives"] = [fields[2]]
            yield record

    def _describe(self) -> dict:
        return {
            "format": "MS MARCO triples (query \\t positive \\t negative)",
            "files": [
                {"file": os.path.basename(p), "sha256": files.sha256_of(p)} for p in self.paths
            ],
            "num_negatives": self.num_negatives,
            "dedup": "(query text, positive text, negative texts)",
        }


# ----------------------------------------------------------------------------- NLI


def table_rows(path: str, role: str, skipped: Counter) -> Iterator[tuple[int, dict]]:
    """`(line number, row)` of a jsonl, tsv (`.tsv`, `.txt`) or csv file (optionally .gz).

    A tsv/csv file's first line is its header (tsv fields are split on tabs with no quoting,
    which SNLI's .txt files need); rows with another number of fields are counted as
    `{role}_malformed_row`. Yields `(0, {column: column})` first for a tsv/csv file, so callers
    can check the header before any row.
    """
    name = path[: -len(".gz")] if path.endswith(".gz") else path
    kind = os.path.splitext(name)[1].lower()
    if kind in (".jsonl", ".json"):
        yield from json_objects(path, role, skipped)
        return
    if kind not in (".tsv", ".txt", ".csv"):
        raise ValueError(f"{path}: unknown table format (.jsonl, .tsv, .txt or .csv)")
    lines = text_lines(path, role, skipped)
    if kind == ".csv":
        rows = _csv_rows(lines, role, skipped)
    else:
        rows = ((n, line.split("\t")) for n, line in lines)
    header = next(rows, None)
    if header is None:
        return
    columns = [c.strip() for c in header[1]]
    yield 0, dict(zip(columns, columns))
    for line_number, fields in rows:
        if len(fields) != len(columns):
            skipped[f"{role}_malformed_row"] += 1
            continue
        yield line_number, dict(zip(columns, fields))


def _csv_rows(lines, role: str, skipped: Counter) -> Iterator[tuple[int, list[str]]]:
    """csv rows (a quoted field may span lines), each with its last line's number."""
    current = [0]

    def numbered():
        for line_number, line in lines:
            current[0] = line_number
            yield line + "\n"

    reader = csv.reader(numbered())
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error:  # e.g. a field over csv's size limit; the reader goes on after it
            skipped[f"{role}_malformed_row"] += 1
            continue
        yield current[0], row


def split_of_file(path: str) -> str:
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


class NliBuilder(_PairsBuilder):
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
        self.paths = [os.path.abspath(_require(p, "an NLI file")) for p in paths]
        self.splits = [split or split_of_file(p) for p in self.paths]
        self.file_format = file_format
        self.anchor_column, self.positive_column = anchor_column, positive_column
        self.negative_columns = tuple(negative_columns)
        self.num_negatives = num_negatives

    def units(self) -> list[corpus.Unit]:
        return [
            corpus.Unit(f"{i:02d}-{corpus.safe_unit_name(_stem(p))}", (p, s))
            for i, (p, s) in enumerate(zip(self.paths, self.splits))
        ]

    def extract(self, unit: corpus.Unit, skipped: Counter) -> Iterator[dict]:
        path, split = unit.payload
        rows = table_rows(path, "nli", skipped)
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
        base = {"dataset": _stem(path), "split": split}
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
            premise_key = _key(row.get("captionID", row.get("promptID"))) or ""
            group = premises.setdefault(
                premise, {"key": premise_key, **{k: [] for k in NLI_LABELS}}
            )
            if label == "neutral":
                skipped["nli_neutral"] += 1
                continue
            group[label].append((_key(row.get("pairID")) or "", hypothesis, line_number))
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


# ----------------------------------------------------------------------------- CLI


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


def msmarco_from_args(args: argparse.Namespace) -> _PairsBuilder:
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
