"""Reading the files users bring: streamed lines, JSON lines, jsonl/tsv/csv tables, ids.

Every reader streams its file (plain or .gz) and skips bad input, counting it in `skipped`
as `{role}_{reason}` (`non_utf8`, `invalid_json`, `missing_field`, `malformed_row`); what
cannot be skipped (a missing or unreadable file, an unknown table format) is an error naming
the file.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Iterator

from cpt_jax import files


def require(path: str, what: str) -> str:
    """`path`, checked to be a file; else FileNotFoundError naming it and `what` it is."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing ({what})")
    return path


def text_lines(path: str, role: str, skipped: Counter) -> Iterator[tuple[int, str]]:
    """`(line number, line without its line break)` for each non-blank line of a file.

    Streams the file (plain or .gz). A line that is not UTF-8 is counted as
    `{role}_non_utf8` and left out.
    """
    for line_number, raw in files.raw_lines(path):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            skipped[f"{role}_non_utf8"] += 1
            continue
        line = line.rstrip("\r\n")
        if line.strip():
            yield line_number, line


def json_objects(path: str, role: str, skipped: Counter) -> Iterator[tuple[int, dict]]:
    """`(line number, object)` for each JSON-object line; others are counted by reason."""
    for line_number, line in text_lines(path, role, skipped):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            skipped[f"{role}_invalid_json"] += 1
            continue
        if not isinstance(value, dict):
            skipped[f"{role}_missing_field"] += 1
            continue
        yield line_number, value


def table_rows(path: str, role: str, skipped: Counter) -> Iterator[tuple[int, dict]]:
    """`(line number, row)` of a jsonl, tsv (`.tsv`, `.txt`) or csv file (optionally .gz).

    A tsv/csv file's first line is its header (tsv fields are split on tabs with no quoting,
    which SNLI's .txt files need); rows with another number of fields are counted as
    `{role}_malformed_row`. Yields `(0, {column: column})` first for a tsv/csv file, so callers
    can check the header before any row.
    """
    name = path[: -len(".gz")] if path.endswith(".gz") else path
    kind = os.path.splitext(name)[1].lower()
    if kind in (".jsonl", ".json"):
        yield from json_objects(path, role, skipped)
        return
    if kind not in (".tsv", ".txt", ".csv"):
        raise ValueError(f"{path}: unknown table format (.jsonl, .tsv, .txt or .csv)")
    lines = text_lines(path, role, skipped)
    if kind == ".csv":
        rows = _csv_rows(lines, role, skipped)
    else:
        rows = ((n, line.split("\t")) for n, line in lines)
    header = next(rows, None)
    if header is None:
        return
    columns = [c.strip() for c in header[1]]
    yield 0, dict(zip(columns, columns))
    for line_number, fields in rows:
        if len(fields) != len(columns):
            skipped[f"{role}_malformed_row"] += 1
            continue
        yield line_number, dict(zip(columns, fields))


def _csv_rows(lines, role: str, skipped: Counter) -> Iterator[tuple[int, list[str]]]:
    """csv rows (a quoted field may span lines), each with its last line's number."""
    current = [0]

    def numbered():
        for line_number, line in lines:
            current[0] = line_number
            yield line + "\n"

    reader = csv.reader(numbered())
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error:  # e.g. a field over csv's size limit; the reader goes on after it
            skipped[f"{role}_malformed_row"] += 1
            continue
        yield current[0], row


def key(value) -> str | None:
    """An id as a string (ids are strings or integers in the wild); None if it is neither."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value).strip() or None


def stem(path: str) -> str:
    """The file name without its extensions (`snli_1.0_dev.jsonl.gz` -> `snli_1.0_dev`)."""
    name = os.path.basename(path)
    if name.endswith(".gz"):
        name = name[: -len(".gz")]
    return os.path.splitext(name)[0]
