"""Tokenising pairs for the encoders: SentencePiece plus the paper's side delimiters.

The two sides of a pair get distinct delimiters (the paper's `[SOS]_x ... [EOS]_x` and
`[SOS]_y ... [EOS]_y`); they are SentencePiece *control* symbols, so no text can produce
them. A row is `[SOS] + pieces[:max_length - 2] + [EOS]`, right-padded with 0: truncation
keeps the head of the text, and the causal encoder pools the `[EOS]` position.

This module is what inference uses (no tensorflow); the SeqIO feature converter in
`data_pipelines` produces the same tokens for training, which a test checks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import sentencepiece as spm

PAD_ID = 0
DELIMITERS = {"query": ("<sos_x>", "<eos_x>"), "document": ("<sos_y>", "<eos_y>")}
"""Control symbols of each side: queries (natural language, x) and documents (code/text, y)."""


def text_id(text: str) -> int:
    """A stable non-negative 31-bit id of the exact text, for false-negative masking."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:4], "big") & 0x7FFFFFFF


class PairTokenizer:
    """A SentencePiece model with the pair delimiters.

    Example:
      tok = PairTokenizer.from_file("data/stdlib_code/spm.model")
      tok.encode(["sort a list"], "query", max_length=8)
      # -> int32 [1, 8]: <sos_x> ▁sort ▁a ▁list <eos_x> 0 0 0
    """

    def __init__(self, serialized_model: bytes):
        self._serialized = bytes(serialized_model)
        self._sp = spm.SentencePieceProcessor(model_proto=self._serialized)
        self._delimiter_ids = {}
        for kind, pieces in DELIMITERS.items():
            ids = tuple(self._sp.piece_to_id(p) for p in pieces)
            if any(self._sp.id_to_piece(i) != p for i, p in zip(ids, pieces)):
                raise ValueError(
                    f"the SentencePiece model lacks the delimiters {pieces}; train it with "
                    "data_pipelines.vocabulary"
                )
            self._delimiter_ids[kind] = ids
        if self._sp.pad_id() != PAD_ID:
            raise ValueError(f"the SentencePiece model's pad id is {self._sp.pad_id()}, not 0")

    @classmethod
    def from_file(cls, path: str) -> PairTokenizer:
        try:
            with open(path, "rb") as f:
                return cls(f.read())
        except OSError as e:
            raise OSError(f"{path}: cannot read the SentencePiece model ({e.strerror})") from e

    @property
    def serialized_model(self) -> bytes:
        """The model proto, to save beside checkpoints."""
        return self._serialized

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def processor(self) -> spm.SentencePieceProcessor:
        return self._sp

    def delimiter_ids(self, kind: str) -> tuple[int, int]:
        """(SOS id, EOS id) of a side, `kind` in {'query', 'document'}."""
        if kind not in self._delimiter_ids:
            raise ValueError(f"kind must be one of {tuple(DELIMITERS)}, got {kind!r}")
        return self._delimiter_ids[kind]

    def encode(self, texts: Sequence[str], kind: str, max_length: int) -> np.ndarray:
        """Texts -> int32 `[len(texts), max_length]` delimited, truncated, right-padded rows."""
        sos, eos = self.delimiter_ids(kind)
        if max_length < 3:
            raise ValueError(f"max_length must be at least 3 (two delimiters), got {max_length}")
        out = np.full((len(texts), max_length), PAD_ID, np.int32)
        for row, pieces in enumerate(self._sp.encode(list(texts))):
            pieces = pieces[: max_length - 2]
            out[row, 0] = sos
            out[row, 1 : 1 + len(pieces)] = pieces
            out[row, 1 + len(pieces)] = eos
        return out
