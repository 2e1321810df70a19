"""Reading JSON-lines files with errors that name the file, the line and the field."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence


def iter_records(path: str, required: Sequence[str] = ()) -> Iterator[tuple[int, dict]]:
    """Yields `(line_number, record)` for every non-blank line of a JSONL file.

    Raises:
      OSError: the file cannot be opened (the message names it).
      ValueError: `path:line: invalid JSON`, `path:line: missing field 'x'` (also for a line
        that is not a JSON object), or `path: not valid UTF-8`.
    """
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115 (closed by the with below)
    except OSError as e:
        raise OSError(f"{path}: cannot read input file ({e.strerror or e})") from e
    with f:
        try:
            for line_number, line in enumerate(f, start=1):
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
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from e
