"""One SentencePiece vocabulary for text and code, with the pair delimiters built in.

seqio conventions: pad 0, eos 1, unk 2, no bos. The four side delimiters of
`cpt_jax.tokenization.DELIMITERS` are control symbols (never produced from text). Byte
fallback means code never maps to `<unk>`; whitespace is kept as is (indentation matters in
Python), with identity normalisation.

CLI, over one corpus or a mixture (texts drawn in proportion to the mixture rates):

    python -m data_pipelines.vocabulary --corpus_dir data/stdlib_code --vocab_size 8000
    python -m data_pipelines.vocabulary --corpus_dir data/pypi_code --corpus_dir \
        data/debian_text --vocab_size 32000 --output data/vocab/code_text
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import sentencepiece as spm

from cpt_jax import files
from cpt_jax.tokenization import DELIMITERS
from data_pipelines import corpus

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


def corpus_texts(corpus_dir: str, split: str = "train") -> Iterator[str]:
    """The queries and documents of a corpus split, for vocabulary training."""
    for record in corpus.read_split(corpus_dir, split):
        yield record["query"]
        yield record["document"]


def mixture_texts(
    corpus_dirs: Sequence[str],
    rates: Sequence[float] | None = None,
    *,
    max_texts: int = 2_000_000,
    temperature: float = 1.0,
    seed: int = SEED,
) -> tuple[list[str], list[dict]]:
    """Texts from several corpora's training splits in proportion to the mixture rates.

    Rates default to the mixture's (`tasks.mixture_rates` at `temperature`: use the
    temperature the model will be trained with). Each corpus contributes
    `rate * max_texts` texts (all of them if it has fewer), drawn by a seeded permutation
    of its queries and documents, so a large corpus cannot crowd the pieces of a small one
    out of the vocabulary beyond its share in training.

    Returns the texts and, per corpus, what was used (for the vocabulary's description).
    """
    from data_pipelines import tasks

    if rates is None:
        rates = tasks.mixture_rates(corpus_dirs, temperature=temperature)
    rates = list(rates)
    if len(rates) != len(corpus_dirs):
        raise ValueError(f"{len(rates)} rates for {len(corpus_dirs)} corpora")
    total = sum(rates)
    texts, used = [], []
    for corpus_dir, rate in zip(corpus_dirs, rates):
        available = list(corpus_texts(corpus_dir))
        take = min(len(available), round(rate / total * max_texts))
        picked = np.random.default_rng([seed, len(used)]).permutation(len(available))[:take]
        texts.extend(available[i] for i in sorted(picked))
        manifest = corpus.read_manifest(corpus_dir)
        used.append(
            {
                "corpus_dir": corpus_dir,
                "fingerprint": manifest["fingerprint"],
                "train_records": manifest["counts"].get("train", 0),
                "rate": rate / total,
                "texts": take,
            }
        )
    return texts, used


def train_from_corpus(corpus_dir: str, model_prefix: str, *, vocab_size: int = 8000) -> str:
    """Trains the vocabulary on a corpus' training split (never on held-out splits)."""
    return train_sentencepiece(corpus_texts(corpus_dir), model_prefix, vocab_size=vocab_size)


def train_from_mixture(
    corpus_dirs: Sequence[str],
    model_prefix: str,
    *,
    vocab_size: int = 32000,
    rates: Sequence[float] | None = None,
    max_texts: int = 2_000_000,
    temperature: float = 1.0,
) -> str:
    """One vocabulary for a mixture's corpora (training splits only); writes the model and
    `<model_prefix>.json` saying which corpora (fingerprints) and how many texts of each."""
    texts, used = mixture_texts(corpus_dirs, rates, max_texts=max_texts, temperature=temperature)
    path = train_sentencepiece(
        texts, model_prefix, vocab_size=vocab_size, input_sentence_size=len(texts)
    )
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    files.write_json_atomic(
        model_prefix + ".json",
        {"vocab_size": vocab_size, "corpora": used, "sha256": digest, "seed": SEED},
    )
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--corpus_dir",
        action="append",
        help="a built corpus; repeat for a mixture (default: data/stdlib_code)",
    )
    parser.add_argument("--rates", type=float, nargs="+", help="mixture rates (default: sizes)")
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="mixture temperature of the default rates (the training run's)",
    )
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--max_texts", type=int, default=2_000_000)
    parser.add_argument(
        "--output", default=None, help="model prefix (default: CORPUS_DIR/spm for one corpus)"
    )
    args = parser.parse_args(argv)
    corpus_dirs = args.corpus_dir or ["data/stdlib_code"]
    if len(corpus_dirs) > 1 and not args.output:
        parser.error("--output is required for a mixture (e.g. data/vocab/code_text)")
    output = args.output or os.path.join(corpus_dirs[0], "spm")
    path = train_from_mixture(
        corpus_dirs,
        output,
        vocab_size=args.vocab_size,
        rates=args.rates,
        max_texts=args.max_texts,
        temperature=args.temperature,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
