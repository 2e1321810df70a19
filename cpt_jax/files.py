"""Small file helpers: atomic writes, and JSON-lines reading with errors that name the file,
the line and the field. Standard library only (no tensorflow, no orbax)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import secrets
import socket
import zlib
from collections.abc import Iterator, Sequence
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w") -> Iterator[IO]:
    """Opens a temporary file beside `path` and renames it over `path` on success.

    Readers never see a half-written file, and a crash leaves the old one in place. The
    temporary name is unique per host, process and call (`temporary_name`), so that hosts
    writing beside each other on a shared file system never share one.
    """
    tmp = temporary_name(path)
    encoding = None if "b" in mode else "utf-8"
    try:
        with open(tmp, mode, encoding=encoding) as f:
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


TEMPORARY_MARK = ".tmp."


def temporary_name(path: str) -> str:
    """`path.tmp.<host>.<pid>.<random>`: a name beside `path` that no other writer uses
    (two containers on two hosts may have the same pid)."""
    host = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:64]
    return f"{path}{TEMPORARY_MARK}{host}.{os.getpid()}.{secrets.token_hex(4)}"


def write_bytes_atomic(path: str, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_json_atomic(path: str, obj: Any) -> None:
    """Writes `obj` as indented, key-sorted JSON, atomically."""
    with atomic_open(path) as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def iter_records(path: str, required: Sequence[str] = ()) -> Iterator[tuple[int, dict]]:
    """Yields `(line_number, record)` for every non-blank line of a JSONL file (plain or
    `.gz`).

    Raises:
      OSError: the file cannot be opened (the message names it).
      ValueError: `path:line: invalid JSON`, `path:line: missing field 'x'` (also for a line
        that is not a JSON object), `path:line: not valid UTF-8`, or damaged gzip data.
    """
    for line_number, raw in raw_lines(path):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(
                f"{path}:{line_number}: not valid UTF-8 ({e.reason} at byte {e.start})"
            ) from e
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{line_number}: invalid JSON ({e.msg})") from e
        for field in required:
            if not isinstance(record, dict) or field not in record:
                raise ValueError(f"{path}:{line_number}: missing field {field!r}")
        yield line_number, record


def raw_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """`(line_number, line as bytes)` of a plain or gzipped (`.gz`) file, streamed.

    Raises:
      OSError: the file cannot be opened (the message names it).
      ValueError: a damaged or truncated gzip stream, naming the file and the line it
        stopped at (gzip and zlib raise EOFError or their own errors, which name nothing).
    """
    opener = gzip.open if path.endswith(".gz") else open
    try:
        f = opener(path, "rb")
    except OSError as e:
        raise OSError(f"{path}: cannot read input file ({e.strerror or e})") from e
    line_number = 0
    with f:
        try:
            for line_number, line in enumerate(f, start=1):
                yield line_number, line
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise ValueError(
                f"{path}: damaged or truncated gzip data after line {line_number} ({e})"
            ) from e


def sha256_of(path: str) -> str:
    """The hex sha256 of a file's contents."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_sha256(root: str, suffixes: tuple[str, ...] = ()) -> str:
    """One sha256 over the files below `root` (relative paths and contents, sorted; only
    names ending in `suffixes` when given): fingerprints a source tree."""
    digest = hashlib.sha256()
    for directory, subdirs, names in os.walk(root):
        subdirs.sort()
        for name in sorted(names):
            if suffixes and not name.endswith(suffixes):
                continue
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, root).replace(os.sep, "/")
            digest.update(relative.encode() + b"\0" + bytes.fromhex(sha256_of(path)))
    return digest.hexdigest()
