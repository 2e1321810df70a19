"""Text-neighbour pairs: consecutive chunks of a document as (query, document) positives.

A document is split into chunks (paragraphs, or windows of words); chunks that are boilerplate
or near-duplicates of an earlier chunk are dropped; every two consecutive surviving chunks of
one document make a pair: the earlier chunk is the query, the later one the document (the
cpt-text paper's "neighbouring pieces of text" positives).

The building blocks (chunking, filters, the pairs of one document) are in `data_pipelines.text`,
shared with the other text corpora; the split is `splits.split_by_hash`. The generic corpus:

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
import json
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence

from cpt_jax import files
from data_pipelines import corpus, splits
from data_pipelines.text import (
    DEFAULT_MIN_WORDS,
    NearDuplicateFilter,
    add_filter_arguments,
    filtered_pairs,
    near_duplicate_description,
    split_paragraphs,
    token_windows,
)

# Bump when the chunking or the filters change: it fingerprints cached build units.
EXTRACTION_VERSION = 1

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
    for line_number, raw in files.raw_lines(path):
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
        return splits.split_by_hash(record["doc_id"])

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
            "split_rule": splits.rule_text("doc_id"),
        }


# ----------------------------------------------------------------------------- CLI


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
