"""PairTokenizer and the SentencePiece vocabulary trainer."""

import os
import subprocess
import sys
import sysconfig
import time

import numpy as np
import pytest

from cpt_jax.tokenization import DELIMITERS, PairTokenizer, text_id
from data_pipelines import vocabulary

VOCAB_SIZE = 1000


def stdlib_texts():
    """A small real slice: the blank-line separated chunks of a few stdlib modules."""
    root = sysconfig.get_paths()["stdlib"]
    texts = []
    for name in ("textwrap.py", "string.py", "json/decoder.py", "json/encoder.py", "shlex.py"):
        with open(os.path.join(root, name), encoding="utf-8") as f:
            texts += [chunk for chunk in f.read().split("\n\n") if chunk.strip()]
    return texts


TEXTS = stdlib_texts()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("spm") / "spm")
    return PairTokenizer.from_file(
        vocabulary.train_sentencepiece(TEXTS, prefix, vocab_size=VOCAB_SIZE)
    )


def test_delimiters_are_control_symbols_never_produced_by_text(tokenizer):
    ids = {kind: tokenizer.delimiter_ids(kind) for kind in DELIMITERS}
    assert len({i for pair in ids.values() for i in pair}) == 4
    literal = tokenizer.encode(["<sos_x> <eos_y>"], "query", 32)[0]
    assert list(literal).count(ids["query"][0]) == 1  # only the real delimiter
    assert ids["document"][1] not in literal


def test_rows_are_delimited_truncated_and_padded(tokenizer):
    sos, eos = tokenizer.delimiter_ids("document")
    rows = tokenizer.encode(["", "def f(x):", "x" * 500], "document", 10)
    assert rows[2, -1] == eos  # truncated: the EOS is still last
    assert rows.dtype == np.int32 and rows.shape == (3, 10)
    np.testing.assert_array_equal(rows[0], [sos, eos] + [0] * 8)
    short = tokenizer.processor.encode("def f(x):")
    assert len(short) <= 7
    np.testing.assert_array_equal(rows[1], [sos, *short, eos] + [0] * (8 - len(short)))
    pieces = tokenizer.processor.encode("x" * 500)
    np.testing.assert_array_equal(rows[2], [sos, *pieces[:8], eos])  # head kept


def test_byte_fallback_never_gives_unk_and_whitespace_is_kept(tokenizer):
    text = "def f():\n\tréturn '日本語' \U0001f600\n"
    pieces = tokenizer.processor.encode(text)
    assert tokenizer.processor.unk_id() not in pieces
    assert tokenizer.processor.decode(pieces) == text


def test_errors(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="kind must be one of"):
        tokenizer.encode(["a"], "code", 8)
    with pytest.raises(ValueError, match="at least 3"):
        tokenizer.encode(["a"], "query", 2)
    with pytest.raises(OSError, match="missing.model: cannot read"):
        PairTokenizer.from_file(str(tmp_path / "missing.model"))


def test_vocabulary_training_is_deterministic(tokenizer, tmp_path):
    again = vocabulary.train_sentencepiece(TEXTS, str(tmp_path / "again"), vocab_size=VOCAB_SIZE)
    with open(again, "rb") as f:
        assert f.read() == tokenizer.serialized_model
    assert PairTokenizer(tokenizer.serialized_model).vocab_size == VOCAB_SIZE


def test_vocabulary_conventions(tokenizer):
    sp = tokenizer.processor
    assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
    assert [sp.id_to_piece(i) for i in range(3, 7)] == vocabulary.CONTROL_SYMBOLS
    assert all(sp.is_control(i) for i in range(3, 7))
    # split_digits: every digit is its own piece.
    digits = [p.strip("\u2581") for p in sp.encode("x = 12345", out_type=str)]
    assert [d for d in digits if d.isdigit()] == list("12345")
    # Indentation survives: four spaces and a tab round-trip exactly.
    assert sp.decode(sp.encode("    if x:\n\tpass")) == "    if x:\n\tpass"


def test_vocab_size_too_small_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="too small"):
        vocabulary.train_sentencepiece(TEXTS, str(tmp_path / "small"), vocab_size=120)


def test_tokenizer_from_bytes_equals_from_file(tokenizer):
    again = PairTokenizer(tokenizer.serialized_model)
    texts = TEXTS[:50]
    np.testing.assert_array_equal(
        again.encode(texts, "document", 64), tokenizer.encode(texts, "document", 64)
    )


def test_encode_is_fast_for_ten_thousand_texts(tokenizer):
    texts = (TEXTS * (10_000 // len(TEXTS) + 1))[:10_000]
    start = time.perf_counter()
    rows = tokenizer.encode(texts, "document", 256)
    assert rows.shape == (10_000, 256)
    assert time.perf_counter() - start < 10.0


def test_text_id_is_stable_and_31_bit():
    assert text_id("hello") == text_id("hello") != text_id("hello ")
    assert 0 <= text_id("x" * 1000) < 2**31
    # Stable across processes (no hash randomisation).
    code = "from cpt_jax.tokenization import text_id; print(text_id('hello'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == text_id("hello")


def test_tokenization_does_not_import_tensorflow():
    code = "import sys, cpt_jax.tokenization; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
