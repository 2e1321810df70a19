"""Worker: pairs/s that the data pipeline delivers, to compare with a train step's needs.

Builds (once, idempotently) the standard-library code corpus and an 8,000-piece vocabulary
under `benchmarks/out/data/`, registers the SeqIO task and reads training batches with
`data_pipelines.pipeline.pair_batches`, exactly as the launcher does. Reports

  tokenize_s          reading the shards and tokenising the whole split, uncached (what a
                      run pays once; later runs load it from the cache beside the corpus);
  tokenize_pairs_per_s  split size / tokenize_s;
  setup_s             from the `pair_batches` call to its first batch (the cache read);
  serve_pairs_per_s   batches after the first, timed (the step-indexed gather);
  epoch_pairs_per_s   split size / (tokenize_s + one epoch of serving): the rate if every
                      epoch paid for tokenisation again (a lower bound).

Settings (JSON): batch, query_length, document_length, batches (timed), vocab_size.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import time  # noqa: E402

import common  # noqa: E402

from data_pipelines import corpus, pipeline, python_code, tasks, vocabulary  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "data", "stdlib_code")


def main() -> None:
    settings = common.settings()
    manifest = python_code.build_stdlib_corpus(DATA, log=lambda *_: None)
    spm_prefix = os.path.join(DATA, f"spm{settings['vocab_size']}")
    if not os.path.exists(spm_prefix + ".model"):
        vocabulary.train_from_corpus(DATA, spm_prefix, vocab_size=settings["vocab_size"])
    tasks.register_pairs_task("bench_pairs", DATA, spm_prefix + ".model")
    num_examples = manifest["counts"]["train"]
    batch = settings["batch"]

    lengths = {"inputs": settings["query_length"], "targets": settings["document_length"]}
    start = time.perf_counter()
    pipeline.tokenized_split("bench_pairs", "train", lengths, cache=False)
    tokenize_s = time.perf_counter() - start
    common.log(f"tokenise {num_examples} pairs: {tokenize_s:.2f} s")

    start = time.perf_counter()
    batches = pipeline.pair_batches(
        "bench_pairs", "train", batch_size=batch, sequence_lengths=lengths
    )
    next(batches)
    setup_s = time.perf_counter() - start

    start = time.perf_counter()
    for _ in range(settings["batches"]):
        next(batches)
    serve_s = time.perf_counter() - start
    serve_rate = settings["batches"] * batch / serve_s
    common.emit(
        {
            "num_examples": num_examples,
            "corpus_fingerprint": corpus.read_manifest(DATA)["fingerprint"],
            "tokenize_s": tokenize_s,
            "tokenize_pairs_per_s": num_examples / tokenize_s,
            "setup_s": setup_s,
            "serve_pairs_per_s": serve_rate,
            "epoch_pairs_per_s": num_examples / (tokenize_s + num_examples / serve_rate),
        }
    )


if __name__ == "__main__":
    main()
