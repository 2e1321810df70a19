"""The `beir` corpus: BEIR dataset directories (`corpus.jsonl`, `queries.jsonl`,
`qrels/{train,dev,test}.tsv`), and their readers (which `cpt_jax.evaluate` shares)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

from data_pipelines.supervised import readers, retrieval


def beir_layout(data_dir: str, splits: Sequence[str] | None = None) -> retrieval.Layout:
    """The files of one BEIR dataset directory; `splits` None: every qrels split present."""
    root = os.path.abspath(data_dir)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: no such BEIR dataset directory")
    what = "a BEIR dataset has corpus.jsonl, queries.jsonl and qrels/{train,dev,test}.tsv"
    corpus_path = readers.require(os.path.join(root, "corpus.jsonl"), what)
    queries_path = readers.require(os.path.join(root, "queries.jsonl"), what)
    qrels = {s: os.path.join(root, "qrels", f"{s}.tsv") for s in retrieval.SPLITS}
    if splits is None:
        chosen = [s for s in retrieval.SPLITS if os.path.isfile(qrels[s])]
        if not chosen:
            raise FileNotFoundError(
                f"{os.path.join(root, 'qrels')}: no train/dev/test.tsv ({what})"
            )
    else:
        chosen = [s for s in retrieval.SPLITS if s in splits]
        for split in chosen:
            readers.require(qrels[split], f"the qrels of the requested split {split!r}")
    return retrieval.Layout(
        dataset=os.path.basename(root),
        root=root,
        corpus=corpus_path,
        queries=(queries_path,),
        qrels=tuple((s, qrels[s]) for s in chosen),
    )


class BeirBuilder(retrieval.RetrievalBuilder):
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
    for line_number, line in readers.text_lines(path, "qrels", skipped):
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
    for _, line in readers.json_objects(path, "queries", skipped):
        qid, text = readers.key(line.get("_id")), line.get("text")
        if qid is None or not isinstance(text, str):
            skipped["queries_missing_field"] += 1
        elif wanted is None or qid in wanted:
            retrieval.keep_text(queries, qid, text, "queries", skipped)
    return queries


def beir_documents(path: str, wanted: set[str] | None, skipped: Counter) -> dict[str, str]:
    """Document id -> `title + " " + text` of a BEIR `corpus.jsonl` (only `wanted` ids;
    None: all)."""
    documents: dict[str, str] = {}
    for _, line in readers.json_objects(path, "corpus", skipped):
        doc_id, title, text = (
            readers.key(line.get("_id")),
            line.get("title") or "",
            line.get("text"),
        )
        if doc_id is None or not isinstance(text, str) or not isinstance(title, str):
            skipped["corpus_missing_field"] += 1
        elif wanted is None or doc_id in wanted:
            # BEIR's join (its sentence-transformers encoder): title, a space, the text.
            retrieval.keep_text(documents, doc_id, f"{title} {text}".strip(), "corpus", skipped)
    return documents
