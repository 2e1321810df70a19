"""The `msmarco` corpus: MS MARCO passage ranking, from its collection, queries and TREC
qrels (passages used as they are), or from `query \\t positive \\t negative` text triples."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

from cpt_jax import files
from data_pipelines import corpus
from data_pipelines.supervised import readers, retrieval
from data_pipelines.supervised.pairs import PairsBuilder


def _first_file(root: str, names: Sequence[str]) -> str | None:
    return next(
        (os.path.join(root, n) for n in names if os.path.isfile(os.path.join(root, n))), None
    )


def msmarco_layout(data_dir: str, splits: Sequence[str] | None = None) -> retrieval.Layout:
    """The MS MARCO passage files of `data_dir`; `splits` None: every qrels split present.

    Each split uses `qrels.{split}.tsv` (else `qrels.{split}.small.tsv`) and
    `queries.{split}.tsv` (else `queries.{split}.small.tsv`).
    """
    root = os.path.abspath(data_dir)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: no such MS MARCO directory")
    collection = readers.require(
        os.path.join(root, "collection.tsv"), "MS MARCO's pid \\t passage file"
    )
    qrels = {
        s: _first_file(root, [f"qrels.{s}.tsv", f"qrels.{s}.small.tsv"]) for s in retrieval.SPLITS
    }
    if splits is None:
        chosen = [s for s in retrieval.SPLITS if qrels[s]]
        if not chosen:
            raise FileNotFoundError(f"{root}: no qrels.{{train,dev,test}}[.small].tsv")
    else:
        chosen = [s for s in retrieval.SPLITS if s in splits]
        for split in chosen:
            if qrels[split] is None:
                raise FileNotFoundError(f"{root}/qrels.{split}.tsv: missing (requested split)")
    queries = []
    for split in chosen:
        path = _first_file(root, [f"queries.{split}.tsv", f"queries.{split}.small.tsv"])
        if path is None:
            raise FileNotFoundError(f"{root}/queries.{split}.tsv: missing (qrels.{split} has it)")
        queries.append(path)
    return retrieval.Layout(
        dataset=os.path.basename(root),
        root=root,
        corpus=collection,
        queries=tuple(queries),
        qrels=tuple((s, qrels[s]) for s in chosen),
    )


def _tsv_texts(path: str, role: str, wanted: set[str], skipped: Counter) -> dict[str, str]:
    """`id \\t text` lines: the texts of the wanted ids (streamed; others are not kept)."""
    texts: dict[str, str] = {}
    for _, line in readers.text_lines(path, role, skipped):
        key, tab, text = line.partition("\t")
        key = key.strip()
        if not tab or not key:
            skipped[f"{role}_malformed_row"] += 1
        elif key in wanted:
            retrieval.keep_text(texts, key, text, role, skipped)
    return texts


class MsMarcoBuilder(retrieval.RetrievalBuilder):
    """MS MARCO passage ranking: collection, queries and TREC qrels of one directory."""

    name = "msmarco"
    layout_name = "MS MARCO passage (collection.tsv, queries.<split>.tsv, qrels.<split>.tsv)"

    def __init__(self, data_dir: str, splits: Sequence[str] | None = None, **kwargs):
        super().__init__([msmarco_layout(data_dir, splits)], **kwargs)

    def _qrels(self, path, skipped):
        for line_number, line in readers.text_lines(path, "qrels", skipped):
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


class MsMarcoTriplesBuilder(PairsBuilder):
    """`query \\t positive \\t negative` text triples (MS MARCO's triples.train.small.tsv),
    one unit per file, all in the train split; the texts carry no ids."""

    name = "msmarco"

    def __init__(self, paths: Iterable[str], num_negatives: int | None = None):
        self.paths = [os.path.abspath(readers.require(p, "a triples file")) for p in paths]
        self.num_negatives = 1 if num_negatives is None else num_negatives
        if self.num_negatives not in (0, 1):
            raise ValueError(
                f"triples have one negative: num_negatives 0 or 1, not {num_negatives}"
            )

    def units(self) -> list[corpus.Unit]:
        return [
            corpus.Unit(f"{i:02d}-{corpus.safe_unit_name(readers.stem(p))}", p)
            for i, p in enumerate(self.paths)
        ]

    def extract(self, unit: corpus.Unit, skipped: Counter) -> Iterator[dict]:
        path = unit.payload
        for line_number, line in readers.text_lines(path, "triples", skipped):
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
                "dataset": readers.stem(path),
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
