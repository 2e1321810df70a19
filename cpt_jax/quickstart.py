"""The main job: build stdlib code pairs, train a small cpt-code model, evaluate code search.

  python -m cpt_jax.quickstart [--model_dir runs/quickstart] [--gin.KEY=VALUE ...]

Stages (each skipped when its output already exists, so a killed run picks up where it was):
  1. data: (docstring, code) pairs from the installed Python standard library, split by module
     (`data_pipelines.python_code`), written to `data/stdlib_code/`.
  2. vocabulary: a SentencePiece model trained on the training split.
  3. training: `gin_configs/runs/quickstart.gin` (or `--gin_file`) through the same code as
     `python -m cpt_jax.train` (resumes from the model directory's latest checkpoint).
  4. evaluation: CodeSearchNet protocol on the held-out modules (each query ranked against
     1,000 candidates, MRR), with BM25 beside it; printed and written to `eval.json`.
"""

from __future__ import annotations

import os

# A command-line entry point: keep TensorFlow's C++ start-up chatter (it only reads data
# here, and some dependencies import it) off the console. Set before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse
import json
import logging
import sys
import time

import gin

from cpt_jax import files
from cpt_jax import train as train_lib

QUICKSTART_GIN = "runs/quickstart.gin"


def build_data(data_dir: str, vocab_size: int) -> str:
    """Builds the corpus and vocabulary unless present; returns the vocabulary path."""
    from data_pipelines import python_code, vocabulary

    # Builds, resumes an interrupted build, or finds the corpus finished (seconds).
    manifest = python_code.build_stdlib_corpus(data_dir, log=lambda *_: None)
    print(f"[data] stdlib pairs: {manifest['counts']}", flush=True)
    model_prefix = os.path.join(data_dir, "spm")
    if not os.path.exists(model_prefix + ".model"):
        vocabulary.train_from_corpus(data_dir, model_prefix, vocab_size=vocab_size)
        print(f"[vocab] trained {model_prefix}.model ({vocab_size} pieces)", flush=True)
    return model_prefix + ".model"


def evaluate(model_dir: str, data_dir: str, num_candidates: int = 1000) -> dict:
    """Code search MRR of the trained model and of BM25 on the test split."""
    import bm25s  # noqa: F401 (imported first: it sets its logger's level on import)

    from cpt_jax.embed import Embedder
    from cpt_jax.evaluation import bm25_code_search, evaluate_code_search
    from data_pipelines.pipeline import load_pairs

    logging.getLogger("bm25s").setLevel(logging.WARNING)

    pairs = load_pairs(data_dir, "test")
    embedder = Embedder.from_checkpoint(model_dir)
    model = evaluate_code_search(
        lambda texts, kind: embedder.encode(texts, kind=kind, batch_size=128),
        pairs,
        num_candidates=num_candidates,
    )
    bm25 = bm25_code_search(pairs, num_candidates=num_candidates)
    return {"cpt_jax": model, "bm25": bm25}


def format_table(results: dict) -> str:
    rows = [("method", "MRR", "R@1", "R@10", "queries", "candidates")]
    names = {"cpt_jax": "cpt-jax quickstart", "bm25": "BM25 (bm25s)"}
    for key, name in names.items():
        r = results[key]
        rows.append(
            (
                name,
                f"{r['mrr']:.3f}",
                f"{r['recall@1']:.3f}",
                f"{r['recall@10']:.3f}",
                str(r["num_queries"]),
                str(r["num_candidates"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m cpt_jax.quickstart",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--gin_file", default=QUICKSTART_GIN, help="the run config")
    parser.add_argument("--model_dir", default="runs/quickstart")
    parser.add_argument("--data_dir", default="data/stdlib_code")
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--num_candidates", type=int, default=1000)
    args, extra = parser.parse_known_args([a for a in argv if not a.startswith("--gin.")])
    if extra:
        parser.error(f"unrecognised arguments: {extra}")
    overrides = [a for a in argv if a.startswith("--gin.")]

    start = time.perf_counter()
    vocabulary_path = build_data(args.data_dir, args.vocab_size)
    data_seconds = time.perf_counter() - start

    bindings = train_lib.parse_args(["--gin_file", args.gin_file, *overrides]).gin_bindings
    bindings = [
        f"MODEL_DIR = {args.model_dir!r}",
        f"DATA_DIR = {args.data_dir!r}",
        f"VOCABULARY = {vocabulary_path!r}",
        f"VOCAB_SIZE = {args.vocab_size}",
        *bindings,
    ]
    train_lib.parse_gin([args.gin_file], bindings)
    train_start = time.perf_counter()
    train_lib.train()
    train_seconds = time.perf_counter() - train_start
    gin.clear_config()

    eval_start = time.perf_counter()
    results = evaluate(args.model_dir, args.data_dir, args.num_candidates)
    eval_seconds = time.perf_counter() - eval_start
    results["seconds"] = {
        "data_and_vocabulary": round(data_seconds, 1),
        "training": round(train_seconds, 1),
        "evaluation": round(eval_seconds, 1),
        "total": round(time.perf_counter() - start, 1),
    }
    files.write_json_atomic(os.path.join(args.model_dir, "eval.json"), results)

    print("\nCode search on held-out stdlib modules (CodeSearchNet protocol):")
    print(format_table(results))
    verdict = "beats" if results["cpt_jax"]["mrr"] > results["bm25"]["mrr"] else "does NOT beat"
    print(f"\nThe quickstart model {verdict} BM25.")
    print(f"Wall time: {json.dumps(results['seconds'])}")
    print(f"Results written to {os.path.join(args.model_dir, 'eval.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
