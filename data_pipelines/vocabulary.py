"""One SentencePiece vocabulary for text and code, with the pair delimiters built in.

seqio conventions: pad 0, eos 1, unk 2, no bos. The four side delimiters of
`cpt_jax.tokenization.DELIMITERS` are control symbols (never produced from text). Byte
fallback means code never maps to `<unk>`; whitespace is kept as is (indentation matters in
Python), with identity normalisation.

CLI: `python -m data_pipelines.vocabulary --corpus_dir data/stdlib_code --vocab_size 8000`
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from collections.abc import Iterable

import sentencepiece as spm

from cpt_jax import files
from cpt_jax.tokenization import DELIMITERS

CONTROL_SYMBOLS = [piece for pair in DELIMITERS.values() for piece in pair]
SEED = 0
# pad, eos, unk, the 4 delimiters and the 256 byte pieces come before any learned piece.
MIN_VOCAB_SIZE = 3 + len(CONTROL_SYMBOLS) + 256


def train_sentencepiece(
    texts: Iterable[str],
    model_prefix: str,
    *,
    vocab_size: int = 8000,
    max_sentence_length: int = 16384,
    input_sentence_size: int = 200_000,
) -> str:
    """Trains a unigram SentencePiece model on `texts`; returns the `.model` path.

    Deterministic for the same input (a test checks byte-identical models):
    SentencePiece's global random generator is seeded (unseeded, it draws a seed from
    `std::random_device`, used by the `input_sentence_size` reservoir sample) and
    training uses one thread (EM sums split over threads are not reproducible). One thread
    trains an 8k vocabulary on the stdlib corpus in seconds.

    `vocab_size` must exceed the 263 reserved pieces (specials, delimiters, 256 byte pieces)
    plus the corpus' distinct characters (at `character_coverage`).
    """
    if vocab_size <= MIN_VOCAB_SIZE:
        raise ValueError(
            f"vocab_size {vocab_size} is too small: {MIN_VOCAB_SIZE} pieces are reserved "
            "(pad/eos/unk, 4 delimiters, 256 byte-fallback pieces)"
        )
    spm.set_random_generator_seed(SEED)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=model,
            model_type="unigram",
            vocab_size=vocab_size,
            pad_id=0,
            eos_id=1,
            unk_id=2,
            bos_id=-1,
            control_symbols=CONTROL_SYMBOLS,
            byte_fallback=True,
            split_digits=True,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            allow_whitespace_only_pieces=True,
            max_sentence_length=max_sentence_length,
            input_sentence_size=input_sentence_size,
            shuffle_input_sentence=True,
            character_coverage=0.9999,
            num_threads=1,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise ValueError(f"SentencePiece training failed for vocab_size={vocab_size}: {e}") from e
    path = model_prefix + ".model"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    files.write_bytes_atomic(path, model.getvalue())
    return path


def corpus_texts(corpus_dir: str, split: str = "train") -> Iterable[str]:
    """The queries and code of a pairs corpus split, for vocabulary training."""
    with open(os.path.join(corpus_dir, f"{split}.jsonl"), encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            yield record["query"]
            yield record["code"]


def train_from_corpus(corpus_dir: str, model_prefix: str, *, vocab_size: int = 8000) -> str:
    """Trains the vocabulary on a corpus' training split (never on held-out splits)."""
    return train_sentencepiece(corpus_texts(corpus_dir), model_prefix, vocab_size=vocab_size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus_dir", default="data/stdlib_code")
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--output", default=None, help="model prefix (default CORPUS_DIR/spm)")
    args = parser.parse_args(argv)
    path = train_from_corpus(
        args.corpus_dir,
        args.output or os.path.join(args.corpus_dir, "spm"),
        vocab_size=args.vocab_size,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
