"""Encoding throughput: cpt-jax's Embedder against sentence-transformers' `encode`, one run.

The same model (all-MiniLM-L6-v2 from its pinned wheel, exported by `cpt_jax.export` for
sentence-transformers, so no hub), the same batch (64) and texts of exactly 128 and 512
tokens, each side warmed up first; then short texts (about 12 tokens) with the sequence
length at 512, to show that short texts do not pay for the longest possible ones. Prints a
table and writes `benchmarks/results_encode.json`.

    .venv/bin/python benchmarks/encode_throughput.py      (the test extra has torch and ST)
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import functools  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

from cpt_jax import export, pretrained  # noqa: E402
from cpt_jax.embed import Embedder  # noqa: E402

BATCH = 64
HERE = os.path.dirname(os.path.abspath(__file__))
WORDS = ["read", "parse", "sort", "write", "file", "list", "string", "date", "open", "value"]


def texts_of_tokens(tokenizer, tokens: int, count: int, seed: int) -> list[str]:
    """`count` texts each of at least `tokens - 2` word pieces (cut to `tokens` with the
    delimiters by either tokenizer)."""
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, tokens)) for _ in range(count)]
    assert min(len(p) for p in tokenizer.pieces(texts)) >= tokens - 2
    return texts


def rate(encode, texts, repeats: int = 3) -> float:
    """Texts per second: the best of `repeats` timed passes after one warm-up pass."""
    encode(texts[:BATCH])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        encode(texts)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def main() -> None:
    minilm = pretrained.load_minilm(log=lambda *_: None)
    rows, results = [], {"batch": BATCH, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        for length, count in ((128, 512), (512, 128), ("short@512", 1024)):
            max_length = 512 if length == "short@512" else length
            model_dir, out = os.path.join(tmp, f"m{max_length}"), os.path.join(tmp, f"st{length}")
            if not os.path.exists(model_dir):
                pretrained.write_model_dir(
                    minilm, model_dir, {"queries": max_length, "documents": max_length}
                )
            export.export(model_dir, out)
            embedder = Embedder.from_checkpoint(model_dir)
            st = SentenceTransformer(out, device="cpu", local_files_only=True)
            if length == "short@512":
                texts = [" ".join(np.random.default_rng(i).choice(WORDS, 10)) for i in range(count)]
            else:
                texts = texts_of_tokens(minilm.tokenizer, length, count, seed=length)
            ours = rate(
                functools.partial(embedder.encode, kind="document", batch_size=BATCH), texts
            )
            theirs = rate(functools.partial(st.encode, batch_size=BATCH), texts)
            diff = float(
                np.abs(embedder.encode(texts[:8], kind="document") - st.encode(texts[:8])).max()
            )
            results[str(length)] = {
                "cpt_jax": ours,
                "sentence_transformers": theirs,
                "ratio": ours / theirs,
                "max_abs_diff": diff,
            }
            rows.append(
                f"| {length} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f}x | {diff:.1e} |"
            )
    print("| tokens | cpt-jax texts/s | sentence-transformers texts/s | ratio | max abs diff |")
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    with open(os.path.join(HERE, "results_encode.json"), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
