"""Text helpers of the text corpora: chunking, boilerplate and near-duplicate filters, and the
neighbour pairs of one document.

Pure functions on one document, shared by `text_neighbours`, `python_docs`, `debian_text`,
`wordnet`, `supervised` and `mined_negatives`: `normalise_whitespace`, `split_paragraphs`,
`token_windows`, `neighbour_pairs`, `boilerplate_reason` / `is_boilerplate`,
`NearDuplicateFilter` (MinHash LSH), `filtered_pairs`; and the filters' builder description
and command-line flags.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np

# ----------------------------------------------------------------------------- chunking


def normalise_whitespace(text: str) -> str:
    """`text` with every run of whitespace (newlines included) replaced by one space, stripped."""
    return " ".join(text.split())


def split_paragraphs(text: str) -> list[str]:
    """The paragraphs of `text`: maximal runs of non-blank lines, in order.

    Lines are right-stripped and each paragraph is dedented (common leading whitespace
    removed), so the line structure stays visible to `boilerplate_reason` (tables of contents,
    menus, reST directives); `normalise_whitespace` flattens a paragraph for a record.
    Windows and old Mac line ends are accepted; a line of only whitespace counts as blank.
    """
    paragraphs, current = [], []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = line.rstrip().expandtabs(8)
        if line:
            current.append(line)
        elif current:
            paragraphs.append(current)
            current = []
    if current:
        paragraphs.append(current)
    result = []
    for lines in paragraphs:
        indent = min(len(line) - len(line.lstrip()) for line in lines)
        result.append("\n".join(line[indent:] for line in lines))
    return result


def token_windows(text: str, window_words: int, stride: int | None = None) -> list[str]:
    """Windows of `window_words` whitespace-separated words of `text`, `stride` words apart.

    "Tokens" here are whitespace words (not model tokens: a window's length in subword
    tokens depends on the vocabulary). Windows start at word 0, `stride`, `2 * stride`, ...
    and stop after the first window that reaches the last word, which may be shorter than
    `window_words`. `stride` defaults to `window_words` (non-overlapping windows: overlapping
    neighbours would share words, which makes the pair trivial). Each window is returned as
    its words joined by single spaces; empty text gives no windows.
    """
    if window_words < 1:
        raise ValueError(f"window_words must be positive, got {window_words}")
    stride = window_words if stride is None else stride
    if stride < 1:
        raise ValueError(f"stride must be positive, got {stride}")
    words = text.split()
    windows = []
    for start in range(0, len(words), stride):
        windows.append(" ".join(words[start : start + window_words]))
        if start + window_words >= len(words):
            break
    return windows


def neighbour_pairs(chunks: Sequence[str]) -> list[tuple[str, str]]:
    """Consecutive pairs `(chunks[i], chunks[i + 1])`: the earlier chunk is the query."""
    return [(chunks[i], chunks[i + 1]) for i in range(len(chunks) - 1)]


# ----------------------------------------------------------------------------- boilerplate

DEFAULT_MIN_WORDS = 5
# A chunk is "mostly non-alphabetic" when letters are under this share of its non-space
# characters (tables of numbers, ASCII art, separators, code-heavy lines).
MIN_LETTER_SHARE = 0.5
_URL = re.compile(r"(?:https?://|ftp://|www\.)\S+|\b[\w.+-]+@[\w-]+\.[\w.-]+\b", re.IGNORECASE)
_LICENCE = re.compile(
    r"copyright\b|\(c\)\s*(?:19|20)\d\d|©|all rights reserved|licen[cs]ed under|"
    r"gnu (?:lesser |library |affero )?general public licen[cs]e|permission is hereby granted|"
    r"without (?:any )?warranty|spdx-license-identifier|apache licen[cs]e,? version|"
    r"redistribution and use in source and binary forms",
    re.IGNORECASE,
)
# A whole line that is a navigation or table-of-contents heading or link.
_NAVIGATION_LINE = re.compile(
    r"^(?:table of contents|contents|index|navigation|menu|search|skip to (?:main )?content|"
    r"back to top|go to top|(?:next|previous|prev) (?:topic|page|chapter|section)|"
    r"(?:next|previous|prev|home|up)\s*[:»›>|]?|this page|show source|report a bug|"
    r"quick search)\s*[:.]?$",
    re.IGNORECASE,
)
# "Introduction ........ 3" (dotted leaders or a trailing page number after a gap).
_TOC_ENTRY = re.compile(r"^.{1,80}?(?:\.{3,}|\s{3,}|\t)\s*\d{1,4}$")
_MENU_SEPARATORS = re.compile(r"\s[|»›·•]\s")
# reST explicit markup: directives, comments, targets, footnotes, substitutions; options.
_REST_MARKUP_LINE = re.compile(r"^(?:\.\.(?:\s|$)|:[\w-]+:(?:\s|$))")


def boilerplate_reason(chunk: str, min_words: int = DEFAULT_MIN_WORDS) -> str | None:
    """Why `chunk` is boilerplate (a short reason, used as a skip counter), or None.

    Rules, checked in this order:
      - `too_short`: fewer than `min_words` whitespace words;
      - `non_alphabetic`: letters are under half of the non-space characters (numbers,
        tables, separators, ASCII art, symbol-heavy code);
      - `url`: URLs and e-mail addresses make up half of the words or more;
      - `licence`: copyright or licence wording ("Copyright", "(c) 2019", "All rights
        reserved", "Licensed under", "GNU General Public License", "WITHOUT ANY WARRANTY",
        "Permission is hereby granted", SPDX identifiers...);
      - `navigation`: a line is a navigation or contents heading ("Table of Contents",
        "Next topic", "Skip to content", "Back to top"...), or the chunk is a menu (three or
        more items separated by `|`, `»`, `›`, `·` or `•`);
      - `table_of_contents`: half of the lines or more are entries with a page number
        ("Introduction ..... 3");
      - `list_of_short_lines`: three lines or more, at least 80% of them of three words or
        fewer (menus, tables of contents without page numbers, lists of names);
      - `rest_markup`: the first line is reST explicit markup (`.. directive::`, a comment,
        a target `.. _x:`, a footnote) and every line is markup or indented under it.
    """
    words = chunk.split()
    if len(words) < min_words:
        return "too_short"
    visible = [c for c in chunk if not c.isspace()]
    if sum(c.isalpha() for c in visible) < MIN_LETTER_SHARE * len(visible):
        return "non_alphabetic"
    if 2 * len(_URL.findall(chunk)) >= len(words):
        return "url"
    if _LICENCE.search(chunk):
        return "licence"
    lines = [line.strip() for line in chunk.split("\n") if line.strip()]
    if any(_NAVIGATION_LINE.match(line) for line in lines) or (
        len(_MENU_SEPARATORS.findall(chunk)) >= 2
    ):
        return "navigation"
    if 2 * sum(bool(_TOC_ENTRY.match(line)) for line in lines) >= len(lines):
        return "table_of_contents"
    if len(lines) >= 3 and sum(len(line.split()) <= 3 for line in lines) >= 0.8 * len(lines):
        return "list_of_short_lines"
    raw_lines = [line for line in chunk.split("\n") if line.strip()]
    if _REST_MARKUP_LINE.match(raw_lines[0]) and all(
        _REST_MARKUP_LINE.match(line) or line[:1].isspace() for line in raw_lines
    ):
        return "rest_markup"
    return None


def is_boilerplate(chunk: str, min_words: int = DEFAULT_MIN_WORDS) -> bool:
    """True when `boilerplate_reason(chunk, min_words)` finds a reason to drop `chunk`."""
    return boilerplate_reason(chunk, min_words) is not None


# ----------------------------------------------------------------------------- near-duplicates

_WORD = re.compile(r"\w+")
_MASK64 = (1 << 64) - 1


def shingles(text: str, n: int = 3) -> set[str]:
    """The set of word `n`-grams of `text` (lower-cased `\\w+` words, punctuation ignored).

    A text of fewer than `n` words (but at least one) is one shingle of all its words.
    """
    words = _WORD.findall(text.lower())
    if len(words) <= n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


class NearDuplicateFilter:
    """Remembers texts and tells whether a new one is a near-duplicate of one seen before.

    Near-duplicate means an estimated Jaccard similarity of word `n`-gram shingle sets
    (`shingles`) of at least `threshold`. The estimate is MinHash: `num_perm` hash functions
    `h_i(x) = (a_i * x + b_i) mod 2^64 >> 32` (multiply-shift, odd `a_i`) over a 64-bit
    blake2b hash of each shingle; the share of equal signature entries estimates the
    Jaccard similarity. Candidates are found by locality-sensitive hashing with
    `num_perm / rows` bands of `rows` entries (two texts are compared when a band matches),
    so a lookup costs about the same however many texts were added. Everything is derived
    from `seed`: the same texts in the same order give the same decisions in any process.

    With the defaults (3-grams, 128 hashes, bands of 4, threshold 0.7), a paragraph of 80
    words with three words changed (Jaccard about 0.79) is caught, and unrelated paragraphs
    (Jaccard near 0) are not. Texts with no word at all are never called duplicates.
    Memory: one 128 x uint32 signature (512 bytes) per text kept.

    Example:
      seen = NearDuplicateFilter()
      kept = [p for p in paragraphs if seen.add_if_new(p)]
    """

    def __init__(
        self,
        threshold: float = 0.7,
        n: int = 3,
        num_perm: int = 128,
        rows: int = 4,
        seed: int = 0,
    ):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if num_perm % rows:
            raise ValueError(f"num_perm ({num_perm}) must be a multiple of rows ({rows})")
        self.threshold, self.n, self.num_perm, self.rows = threshold, n, num_perm, rows
        rng = np.random.default_rng(seed)
        self._a = rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64) * np.uint64(2) + (
            np.uint64(1)
        )
        self._b = rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64)
        self._bands: list[dict[bytes, list[int]]] = [{} for _ in range(num_perm // rows)]
        self._signatures: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._signatures)

    def signature(self, text: str) -> np.ndarray | None:
        """The MinHash signature of `text` (`num_perm` uint32), or None when it has no words."""
        grams = shingles(text, self.n)
        if not grams:
            return None
        x = np.array(
            [
                int.from_bytes(hashlib.blake2b(g.encode(), digest_size=8).digest(), "little")
                for g in sorted(grams)
            ],
            dtype=np.uint64,
        )
        # uint64 arithmetic wraps modulo 2^64, which is what multiply-shift hashing wants.
        hashed = (self._a[:, None] * x[None, :] + self._b[:, None]) >> np.uint64(32)
        return hashed.min(axis=1).astype(np.uint32)

    def similarity(self, text_a: str, text_b: str) -> float:
        """The MinHash estimate of the Jaccard similarity of the two texts' shingle sets."""
        sig_a, sig_b = self.signature(text_a), self.signature(text_b)
        if sig_a is None or sig_b is None:
            return 0.0
        return float(np.mean(sig_a == sig_b))

    def add_if_new(self, text: str) -> bool:
        """Adds `text` and returns True, unless it is a near-duplicate of an added text."""
        sig = self.signature(text)
        if sig is None:
            return True
        keys = [sig[i : i + self.rows].tobytes() for i in range(0, self.num_perm, self.rows)]
        candidates = set()
        for band, key in zip(self._bands, keys):
            candidates.update(band.get(key, ()))
        for index in candidates:
            if np.mean(self._signatures[index] == sig) >= self.threshold:
                return False
        index = len(self._signatures)
        self._signatures.append(sig)
        for band, key in zip(self._bands, keys):
            band.setdefault(key, []).append(index)
        return True


# ----------------------------------------------------------------------------- pairs of a document


def filtered_pairs(
    chunks: Sequence[str],
    skipped: Counter,
    near_duplicates: NearDuplicateFilter | None = None,
    min_words: int = DEFAULT_MIN_WORDS,
    positions: Sequence[int] | None = None,
    what: str = "document",
) -> Iterator[tuple[int, str, str]]:
    """`(position, query, document)` neighbour pairs of one document's chunks, filtered.

    Chunks are whitespace-normalised; a boilerplate chunk is counted as
    `skipped["chunk_<reason>"]` and a near-duplicate of an earlier chunk (of this or an
    earlier document given to the same filter) as `skipped["chunk_near_duplicate"]`; both
    are dropped, and the chunks on either side of a dropped one become neighbours.
    `position` is the index of the query chunk in `chunks`, or its entry in `positions` when
    given (e.g. paragraph numbers within a whole file when `chunks` is one section). A
    document left with fewer than two chunks is counted as
    `skipped[f"{what}_under_two_chunks"]`.
    """
    positions = range(len(chunks)) if positions is None else positions
    kept: list[tuple[int, str]] = []
    for position, chunk in zip(positions, chunks, strict=True):
        reason = boilerplate_reason(chunk, min_words)
        if reason is not None:
            skipped[f"chunk_{reason}"] += 1
            continue
        text = normalise_whitespace(chunk)
        if near_duplicates is not None and not near_duplicates.add_if_new(text):
            skipped["chunk_near_duplicate"] += 1
            continue
        kept.append((position, text))
    if len(kept) < 2:
        skipped[f"{what}_under_two_chunks"] += 1
        return
    for (position, query), (_, document) in neighbour_pairs(kept):
        yield position, query, document


def near_duplicate_description(threshold: float | None) -> dict | None:
    """The near-duplicate filter's settings, for a builder's description."""
    if threshold is None:
        return None
    f = NearDuplicateFilter(threshold)
    return {
        "method": "MinHash LSH over word n-gram shingles, within one unit",
        "threshold": f.threshold,
        "n": f.n,
        "num_perm": f.num_perm,
        "rows": f.rows,
    }


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """The chunk filters' flags (`--min_words`, `--near_duplicate_threshold`)."""
    parser.add_argument(
        "--min_words",
        type=int,
        default=DEFAULT_MIN_WORDS,
        help="chunks with fewer whitespace words are dropped as too short",
    )
    parser.add_argument(
        "--near_duplicate_threshold",
        type=float,
        default=0.7,
        help="estimated Jaccard of word 3-grams at which a chunk is a near-duplicate; "
        "0 turns the filter off",
    )
