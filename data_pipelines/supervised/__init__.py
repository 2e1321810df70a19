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

Hard negatives (`--hard_negatives FILE`: their format, how a query's are chosen, what is
skipped) and the memory a retrieval build needs: see `retrieval`. How NLI files become
triplets: see `nli`.

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

Modules: `readers` (streamed lines, JSON lines, tables, ids), `pairs` (the base of every
builder: split, pair dedup key, description), `retrieval` (qrels joined with texts, hard
negatives), `beir`, `msmarco`, `nli` (the corpora), `cli` (their flags, and `CORPORA` for
`data_pipelines.build`).
"""

from data_pipelines.supervised.beir import (
    BeirBuilder,
    beir_documents,
    beir_layout,
    beir_qrels,
    beir_queries,
)
from data_pipelines.supervised.cli import (
    CORPORA,
    add_beir_arguments,
    add_msmarco_arguments,
    add_nli_arguments,
    beir_from_args,
    msmarco_from_args,
    nli_from_args,
)
from data_pipelines.supervised.msmarco import MsMarcoBuilder, MsMarcoTriplesBuilder, msmarco_layout
from data_pipelines.supervised.nli import NLI_LABELS, NliBuilder, split_for_file
from data_pipelines.supervised.readers import json_objects, table_rows, text_lines
from data_pipelines.supervised.retrieval import SPLITS, Layout, read_hard_negatives

__all__ = [
    "CORPORA",
    "NLI_LABELS",
    "SPLITS",
    "BeirBuilder",
    "Layout",
    "MsMarcoBuilder",
    "MsMarcoTriplesBuilder",
    "NliBuilder",
    "add_beir_arguments",
    "add_msmarco_arguments",
    "add_nli_arguments",
    "beir_documents",
    "beir_from_args",
    "beir_layout",
    "beir_qrels",
    "beir_queries",
    "json_objects",
    "msmarco_from_args",
    "msmarco_layout",
    "nli_from_args",
    "read_hard_negatives",
    "split_for_file",
    "table_rows",
    "text_lines",
]
