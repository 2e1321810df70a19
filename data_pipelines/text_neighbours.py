"""Text-neighbour pairs: consecutive chunks of a document as (query, document) positives.

A document is split into chunks (paragraphs, or windows of words); chunks that are boilerplate
or near-duplicates of an earlier chunk are dropped; every two consecutive surviving chunks of
one document make a pair: the earlier chunk is the query, the later one the document (the
cpt-text paper's "neighbouring pieces of text" positives).

The building blocks are pure functions, reused by the other text corpora (Debian
descriptions): `split_paragraphs`, `token_windows`, `neighbour_pairs`, `boilerplate_reason` /
`is_boilerplate`, `NearDuplicateFilter`, `filtered_pairs` (all of them on one document),
`normalise_whitespace`, `split_for_id`; and for reST, `rest_paragraphs`, `strip_rest_inline`.

The generic corpus `text_neighbours` is built here (`python_docs` and `debian_text` reuse
the pieces):

* `text_neighbours`: any document collection, `--input PATH` (repeated): a plain text file
  (one file = one document), a directory of them (read recursively, hidden files skipped), or
  a JSONL file (`.jsonl`, `.jsonl.gz`: one document per line, `--text_field`, `--id_field`);
  or `--tfds NAME:SPLIT` (a TFDS dataset that is already prepared locally; never downloaded).
  `--mode paragraphs|windows`.
Splits are by document: `int(sha1(doc_id).hexdigest(), 16) % 10` is 0 -> test,
1 -> validation, else train, so both chunks of a pair, and all pairs of a document, land in
the same split. Near-duplicate filtering works within one unit of the build (one input, one
package): units are cached independently, so a filter shared across units would make a
resumed build differ from a fresh one. Exact duplicates are removed globally by
`corpus.build`.

CLI:
  python -m data_pipelines.build text_neighbours --input docs/ --input more.jsonl
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np

from cpt_jax import files
from data_pipelines import corpus

# Bump when the chunking or the filters change: it fingerprints cached build units.
EXTRACTION_VERSION = 1

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


def split_for_id(doc_id: str) -> str:
    """The split of a document: `sha1(doc_id) % 10` is 0 -> test, 1 -> validation, else train."""
    bucket = int(hashlib.sha1(doc_id.encode("utf-8")).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


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


# ----------------------------------------------------------------------------- document collections

MODES = ("paragraphs", "windows")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")


def _read_text_file(path: str, skipped: Counter) -> str | None:
    with open(path, "rb") as f:
        raw = f.read()
    if b"\0" in raw:
        skipped["binary_file"] += 1
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        skipped["non_utf8_file"] += 1
        return None


def _iter_jsonl(
    path: str, text_field: str, id_field: str | None, skipped: Counter
) -> Iterator[tuple[str, str]]:
    """`(doc_id, text)` of each usable line; bad lines are counted by reason."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        for line_number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                skipped["non_utf8_line"] += 1
                continue
            except json.JSONDecodeError:
                skipped["invalid_json"] += 1
                continue
            if not isinstance(record, dict) or text_field not in record:
                skipped["missing_text_field"] += 1
                continue
            if not isinstance(record[text_field], str):
                skipped["non_string_text"] += 1
                continue
            if id_field is None:
                doc_id = f"{os.path.basename(path)}:{line_number}"
            elif isinstance(record.get(id_field), str | int) and not isinstance(
                record.get(id_field), bool
            ):
                doc_id = str(record[id_field])
            else:
                skipped["missing_id_field"] += 1
                continue
            yield doc_id, record[text_field]


def _files_under(directory: str) -> list[str]:
    """Regular files under `directory`, recursively, sorted; hidden files and dirs skipped."""
    found = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(root, n) for n in sorted(names) if not n.startswith("."))
    return found


def _parse_tfds(spec: str) -> tuple[str, str]:
    """`NAME[:VERSION]:SPLIT` -> (name with its version, split); the split may be a slice."""
    match = re.match(r"^([^:]+(?::\d+\.\d+\.\d+)?):(.+)$", spec)
    if match is None:
        raise ValueError(
            f"--tfds {spec!r}: expected NAME:SPLIT, e.g. imdb_reviews:train or "
            "glue/cola:2.0.0:validation[:50%]"
        )
    return match.group(1), match.group(2)


def _iter_tfds(
    spec: str, data_dir: str | None, text_field: str, id_field: str | None, skipped: Counter
) -> Iterator[tuple[str, str]]:
    """`(doc_id, text)` of a locally prepared TFDS split; never downloads.

    Raises:
      ValueError: unknown dataset, or no feature `text_field`.
      FileNotFoundError: the dataset is not prepared under `data_dir`.
    """
    import tensorflow_datasets as tfds

    name, split = _parse_tfds(spec)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # unknown name, bad version: tfds raises several kinds
        raise ValueError(f"--tfds {spec!r}: no such TFDS dataset ({e})") from e
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"--tfds {spec!r}: the dataset is not prepared under {builder.data_dir}; "
            "prepare it first (e.g. `tfds build` on a machine with access, then copy the "
            "directory, and pass --tfds_data_dir); this builder never downloads"
        )
    features = builder.info.features
    if text_field not in features:
        raise ValueError(
            f"--tfds {spec!r}: no feature {text_field!r} (it has {sorted(features.keys())}); "
            "set --text_field"
        )
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    for index, example in enumerate(dataset.as_numpy_iterator()):
        text = example[text_field]
        try:
            text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
        except UnicodeDecodeError:
            skipped["non_utf8_text"] += 1
            continue
        doc_id = f"{name}:{split}:{index}"
        if id_field is not None:
            value = example[id_field]
            doc_id = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        yield doc_id, text


class TextNeighboursBuilder(corpus.Builder):
    """Neighbouring chunks of any document collection; one unit per input (or TFDS split).

    Records: `query`, `document` (whitespace-normalised chunks), `source` (the input's base
    name, or `tfds:NAME:SPLIT`), `doc_id` (a file's path under its input directory, the
    JSONL `--id_field` or `file:line`, or `NAME:SPLIT:index`), `position` (the query chunk's
    index in its document). Skipped: see `filtered_pairs`, plus `binary_file`,
    `non_utf8_file`, `invalid_json`, `non_utf8_line`, `missing_text_field`,
    `non_string_text`, `missing_id_field`, `non_utf8_text` (TFDS).
    """

    name = "text_neighbours"

    def __init__(
        self,
        inputs: Sequence[str] = (),
        tfds: Sequence[str] = (),
        *,
        text_field: str = "text",
        id_field: str | None = None,
        mode: str = "paragraphs",
        window_words: int = 128,
        stride: int | None = None,
        min_words: int = DEFAULT_MIN_WORDS,
        near_duplicate_threshold: float | None = 0.7,
        tfds_data_dir: str | None = None,
        name: str | None = None,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not inputs and not tfds:
            raise ValueError("no documents: give at least one --input PATH or --tfds NAME:SPLIT")
        self.inputs = [os.path.abspath(p) for p in inputs]
        for path in self.inputs:
            if not os.path.exists(path):
                raise FileNotFoundError(f"--input {path}: no such file or directory")
        for spec in tfds:
            _parse_tfds(spec)
        self.tfds = list(tfds)
        self.text_field, self.id_field, self.mode = text_field, id_field, mode
        self.window_words, self.stride, self.min_words = window_words, stride, min_words
        self.near_duplicate_threshold = near_duplicate_threshold
        self.tfds_data_dir = tfds_data_dir
        self._description: dict | None = None
        if name is not None:
            self.name = name
        if mode == "windows":
            token_windows("", window_words, stride)  # validates the sizes now, not mid-build

    def units(self) -> list[corpus.Unit]:
        units = [
            corpus.Unit(f"{i:04d}-{corpus.safe_unit_name(os.path.basename(p))}", ("path", p))
            for i, p in enumerate(self.inputs)
        ]
        offset = len(units)
        units += [
            corpus.Unit(f"{offset + i:04d}-tfds-{corpus.safe_unit_name(s)}", ("tfds", s))
            for i, s in enumerate(self.tfds)
        ]
        return units

    def chunks(self, text: str) -> list[str]:
        """The chunks of one document's text in this builder's mode."""
        if self.mode == "paragraphs":
            return split_paragraphs(text)
        return token_windows(text, self.window_words, self.stride)

    def _documents(self, unit: corpus.Unit, skipped: Counter) -> Iterator[tuple[str, str]]:
        kind, spec = unit.payload
        if kind == "tfds":
            yield from _iter_tfds(spec, self.tfds_data_dir, self.text_field, self.id_field, skipped)
            return
        base = os.path.basename(spec.rstrip(os.sep))
        paths = _files_under(spec) if os.path.isdir(spec) else [spec]
        for path in paths:
            if path.endswith(JSONL_SUFFIXES):
                yield from _iter_jsonl(path, self.text_field, self.id_field, skipped)
                continue
            text = _read_text_file(path, skipped)
            if text is not None:
                rel = os.path.relpath(path, spec) if os.path.isdir(spec) else ""
                yield (f"{base}/{rel}" if rel else base), text

    def extract(self, unit: corpus.Unit, skipped: Counter) -> Iterator[dict]:
        kind, spec = unit.payload
        source = f"tfds:{spec}" if kind == "tfds" else os.path.basename(spec.rstrip(os.sep))
        seen = (
            None
            if self.near_duplicate_threshold is None
            else NearDuplicateFilter(self.near_duplicate_threshold)
        )
        for doc_id, text in self._documents(unit, skipped):
            for position, query, document in filtered_pairs(
                self.chunks(text), skipped, seen, self.min_words
            ):
                yield {
                    "query": query,
                    "document": document,
                    "source": source,
                    "doc_id": doc_id,
                    "position": position,
                }

    def split(self, record: dict) -> str:
        return split_for_id(record["doc_id"])

    def description(self) -> dict:
        if self._description is None:  # hashing the inputs once, not at every call
            self._description = self._describe()
        return self._description

    def _describe(self) -> dict:
        inputs = []
        for path in self.inputs:
            paths = _files_under(path) if os.path.isdir(path) else [path]
            digest = files.tree_sha256(path) if os.path.isdir(path) else files.sha256_of(path)
            inputs.append({"input": path, "files": len(paths), "sha256": digest})
        return {
            "extraction": EXTRACTION_VERSION,
            "inputs": inputs,
            "tfds": self.tfds,
            "tfds_data_dir": self.tfds_data_dir,
            "text_field": self.text_field,
            "id_field": self.id_field,
            "mode": self.mode,
            "window_words": self.window_words if self.mode == "windows" else None,
            "stride": self.stride if self.mode == "windows" else None,
            "min_words": self.min_words,
            "near_duplicate": near_duplicate_description(self.near_duplicate_threshold),
            "split_rule": "int(sha1(doc_id).hexdigest(), 16) % 10: 0 test, 1 validation",
        }


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


# ----------------------------------------------------------------------------- CLI


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the generic `text_neighbours` corpus."""
    parser.add_argument(
        "--input",
        action="append",
        default=[],
        help="a text file, a directory of them (one file = one document) or a .jsonl(.gz) "
        "file; repeat for several",
    )
    parser.add_argument(
        "--tfds", action="append", default=[], help="NAME:SPLIT of a locally prepared dataset"
    )
    parser.add_argument("--tfds_data_dir", default=None, help="TFDS data directory")
    parser.add_argument("--text_field", default="text", help="JSONL field / TFDS feature")
    parser.add_argument("--id_field", default=None, help="document id field (default: line)")
    parser.add_argument("--mode", choices=MODES, default="paragraphs")
    parser.add_argument("--window_words", type=int, default=128, help="words per window")
    parser.add_argument("--stride", type=int, default=None, help="default: --window_words")
    add_filter_arguments(parser)


def builder_from_args(args: argparse.Namespace) -> TextNeighboursBuilder:
    """The `text_neighbours` builder of parsed flags (`add_arguments`)."""
    return TextNeighboursBuilder(
        args.input,
        args.tfds,
        text_field=args.text_field,
        id_field=args.id_field,
        mode=args.mode,
        window_words=args.window_words,
        stride=args.stride,
        min_words=args.min_words,
        near_duplicate_threshold=args.near_duplicate_threshold or None,
        tfds_data_dir=args.tfds_data_dir,
    )
