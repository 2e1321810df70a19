"""PairTokenizer and the SentencePiece vocabulary trainer."""

import subprocess
import sys

import numpy as np
import pytest

from cpt_jax.tokenization import DELIMITERS, PairTokenizer, text_id
from data_pipelines import vocabulary

TEXTS = [
    "Return the sum of two numbers.",
    "def add(a, b):\n    return a + b\n",
    "class Stack:\n    def push(self, item):\n        self.items.append(item)\n",
] * 20


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("spm") / "spm")
    return PairTokenizer.from_file(vocabulary.train_sentencepiece(TEXTS, prefix, vocab_size=120))


def test_delimiters_are_control_symbols_never_produced_by_text(tokenizer):
    ids = {kind: tokenizer.delimiter_ids(kind) for kind in DELIMITERS}
    assert len({i for pair in ids.values() for i in pair}) == 4
    literal = tokenizer.encode(["<sos_x> <eos_y>"], "query", 32)[0]
    assert list(literal).count(ids["query"][0]) == 1  # only the real delimiter
    assert ids["document"][1] not in literal


def test_rows_are_delimited_truncated_and_padded(tokenizer):
    sos, eos = tokenizer.delimiter_ids("document")
    rows = tokenizer.encode(["", "def add(a, b):", "x" * 500], "document", 10)
    assert rows.dtype == np.int32 and rows.shape == (3, 10)
    np.testing.assert_array_equal(rows[0], [sos, eos] + [0] * 8)
    assert rows[1, 0] == sos and eos in rows[1] and rows[1, -1] == 0
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
    again = vocabulary.train_sentencepiece(TEXTS, str(tmp_path / "again"), vocab_size=120)
    with open(again, "rb") as f:
        assert f.read() == tokenizer.serialized_model
    assert PairTokenizer(tokenizer.serialized_model).vocab_size == 120


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
