"""Tokenising pairs for the encoders: a vocabulary plus each side's delimiters.

Two kinds of vocabulary, one interface (`encode(texts, kind, max_length)`):
- `PairTokenizer`: a SentencePiece model trained by `data_pipelines.vocabulary`, for models
  trained from scratch.
- `HuggingFaceTokenizer`: the `tokenizer.json` of a pretrained checkpoint (all-MiniLM-L6-v2's
  WordPiece), for models started from pretrained weights (`INIT_FROM`). Both sides use the
  checkpoint's own `[CLS] ... [SEP]`, the delimiters it was pretrained with.
`load_tokenizer(path)` reads either.

SentencePiece: the two sides of a pair get distinct delimiters (the paper's
`[SOS]_x ... [EOS]_x` and `[SOS]_y ... [EOS]_y`); they are SentencePiece *control* symbols,
so no text can produce them. A row is `[SOS] + pieces[:max_length - 2] + [EOS]`,
right-padded with 0: truncation keeps the head of the text, and the causal encoder pools the
`[EOS]` position.

This module is what inference uses (no tensorflow); the SeqIO feature converter in
`data_pipelines` produces the same tokens for training, which a test checks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np
import sentencepiece as spm

PAD_ID = 0
DELIMITERS = {"query": ("<sos_x>", "<eos_x>"), "document": ("<sos_y>", "<eos_y>")}
"""Control symbols of each side: queries (natural language, x) and documents (code/text, y)."""


def text_id(text: str) -> int:
    """A stable non-negative 31-bit id of the exact text, for false-negative masking."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:4], "big") & 0x7FFFFFFF


def delimited_rows(
    pieces: Sequence[Sequence[int]], sos: int, eos: int, max_length: int
) -> np.ndarray:
    """Ids of each text -> int32 `[len(pieces), max_length]` rows `[SOS] + ids[:max_length - 2]
    + [EOS]`, right-padded with `PAD_ID` (the head of a long text is kept)."""
    if max_length < 3:
        raise ValueError(f"max_length must be at least 3 (two delimiters), got {max_length}")
    out = np.full((len(pieces), max_length), PAD_ID, np.int32)
    for row, ids in enumerate(pieces):
        ids = ids[: max_length - 2]
        out[row, 0] = sos
        out[row, 1 : 1 + len(ids)] = ids
        out[row, 1 + len(ids)] = eos
    return out


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

    def pieces(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's ids without delimiters."""
        return self._sp.encode(list(texts))

    def delimiter_ids(self, kind: str) -> tuple[int, int]:
        """(SOS id, EOS id) of a side, `kind` in {'query', 'document'}."""
        if kind not in self._delimiter_ids:
            raise ValueError(f"kind must be one of {tuple(DELIMITERS)}, got {kind!r}")
        return self._delimiter_ids[kind]

    def encode(self, texts: Sequence[str], kind: str, max_length: int) -> np.ndarray:
        """Texts -> int32 `[len(texts), max_length]` delimited, truncated, right-padded rows."""
        return delimited_rows(self.pieces(texts), *self.delimiter_ids(kind), max_length)


class HuggingFaceTokenizer:
    """A Hugging Face `tokenizer.json` (e.g. BERT WordPiece) with the `PairTokenizer` interface.

    Rows are `[SOS] + pieces[:max_length - 2] + [EOS]`, right-padded with 0, where SOS/EOS are
    the first and last special tokens of the tokenizer's single-sequence template (`[CLS]`
    and `[SEP]` for BERT): the same ids the checkpoint's own tokenizer gives with truncation.
    Both kinds share them (the checkpoint knows no other delimiters).

    Example:
      tok = HuggingFaceTokenizer.from_file("runs/cpt_code/tokenizer.json")
      tok.encode(["sort a list"], "query", max_length=6)
      # -> int32 [1, 6]: [CLS] sort a list [SEP] [PAD]
    """

    def __init__(self, tokenizer_json: str | bytes, source: str = "tokenizer.json"):
        import tokenizers

        text = tokenizer_json
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        self._serialized = text.encode("utf-8")
        try:
            spec = json.loads(text)
            self._tok = tokenizers.Tokenizer.from_str(text)
        except Exception as e:  # json and tokenizers raise different types for the same fault
            raise ValueError(f"{source}: not a Hugging Face tokenizer.json ({e})") from e
        self._tok.no_padding()
        self._tok.no_truncation()
        template = (spec.get("post_processor") or {}).get("single") or []
        specials = [item["SpecialToken"]["id"] for item in template if "SpecialToken" in item]
        if len(specials) < 2:
            raise ValueError(
                f"{source}: its post-processor has no [SOS] ... [EOS] template (such as BERT's "
                "[CLS] ... [SEP]) to delimit the sides"
            )
        self.delimiters = (specials[0], specials[-1])
        self._delimiter_ids = tuple(self._tok.token_to_id(t) for t in self.delimiters)
        padding = spec.get("padding") or {}
        pad_id = padding.get("pad_id", self._tok.token_to_id("[PAD]"))
        if pad_id != PAD_ID:
            raise ValueError(
                f"{source}: the padding id is {pad_id}, not {PAD_ID} (the encoders treat id 0 "
                "as padding)"
            )

    @classmethod
    def from_file(cls, path: str) -> HuggingFaceTokenizer:
        try:
            with open(path, encoding="utf-8") as f:
                return cls(f.read(), source=path)
        except OSError as e:
            raise OSError(f"{path}: cannot read the tokenizer ({e.strerror})") from e

    @property
    def serialized_model(self) -> bytes:
        """The `tokenizer.json` bytes, to save beside checkpoints."""
        return self._serialized

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def unk_id(self) -> int | None:
        return self._tok.token_to_id("[UNK]")

    def pieces(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's ids without delimiters."""
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids))

    def delimiter_ids(self, kind: str) -> tuple[int, int]:
        """(SOS id, EOS id) of a side: the same for both kinds."""
        if kind not in DELIMITERS:
            raise ValueError(f"kind must be one of {tuple(DELIMITERS)}, got {kind!r}")
        return self._delimiter_ids

    def encode(self, texts: Sequence[str], kind: str, max_length: int) -> np.ndarray:
        """Texts -> int32 `[len(texts), max_length]` delimited, truncated, right-padded rows."""
        return delimited_rows(self.pieces(texts), *self.delimiter_ids(kind), max_length)


Tokenizer = PairTokenizer | HuggingFaceTokenizer
VOCABULARY_FILES = {PairTokenizer: "spm.model", HuggingFaceTokenizer: "tokenizer.json"}
"""The file name each kind of vocabulary is saved under in a model directory."""


def load_tokenizer(path: str) -> Tokenizer:
    """A SentencePiece `.model` or a Hugging Face `tokenizer.json`, told apart by content."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise OSError(f"{path}: cannot read the vocabulary ({e.strerror})") from e
    if data.lstrip()[:1] == b"{":
        return HuggingFaceTokenizer(data, source=path)
    try:
        return PairTokenizer(data)
    except RuntimeError as e:  # sentencepiece's parse error says nothing of the file
        raise ValueError(f"{path}: neither a SentencePiece model nor a tokenizer.json ({e})") from e


def delimiter_names(tokenizer: Tokenizer) -> dict[str, tuple[str, str]]:
    """Each side's delimiter tokens, for `model.json`."""
    if isinstance(tokenizer, HuggingFaceTokenizer):
        return {kind: tokenizer.delimiters for kind in DELIMITERS}
    return dict(DELIMITERS)
