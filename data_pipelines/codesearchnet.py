"""CodeSearchNet's published jsonl(.gz) files as a cpt-jax pairs corpus.

Users who have the CodeSearchNet data (Husain et al., 2019: `{language}_{partition}_{n}.jsonl.gz`,
one function per line with `docstring`, `code`, `partition`, `language`, `func_name`, ...)
convert it as is:

    python -m data_pipelines.codesearchnet OUT_DIR FILE [FILE ...]

which writes `OUT_DIR/{train,validation,test}.jsonl` (CodeSearchNet's `valid` partition
becomes `validation`) and `manifest.json`. The query is the docstring's first paragraph, the
same rule as the Python extraction; lines that cannot be used are skipped and counted by
reason in the manifest, never silently dropped: `invalid_json`, `non_utf8`,
`missing_field`, `empty_docstring`, `unknown_partition`, `duplicate` (the same code, up to
whitespace, seen before).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
from collections import Counter
from collections.abc import Iterable

from cpt_jax.tokenization import text_id
from data_pipelines.python_code import SPLITS, code_key, first_paragraph, write_corpus

PARTITIONS = {"train": "train", "valid": "validation", "test": "test"}
REQUIRED_FIELDS = ("docstring", "code", "partition")


def _lines(path: str) -> Iterable[tuple[int, bytes]]:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        f = opener(path, "rb")
    except OSError as e:
        raise OSError(f"{path}: cannot read input file ({e.strerror or e})") from e
    with f:
        yield from enumerate(f, start=1)


def convert(paths: Iterable[str], out_dir: str) -> dict:
    """Reads CodeSearchNet jsonl(.gz) files and writes a pairs corpus; returns the manifest."""
    skipped: Counter = Counter()
    seen: set[str] = set()
    splits: dict[str, list[dict]] = {s: [] for s in SPLITS}
    inputs = []
    for path in paths:
        inputs.append(os.path.basename(path))
        for line_number, raw in _lines(path):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                skipped["non_utf8"] += 1
                continue
            except json.JSONDecodeError:
                skipped["invalid_json"] += 1
                continue
            if not isinstance(record, dict) or any(
                not isinstance(record.get(f), str) for f in REQUIRED_FIELDS
            ):
                skipped["missing_field"] += 1
                continue
            query = first_paragraph(record["docstring"])
            if not query:
                skipped["empty_docstring"] += 1
                continue
            split = PARTITIONS.get(record["partition"])
            if split is None:
                skipped["unknown_partition"] += 1
                continue
            key = code_key(record["code"])
            if key in seen:
                skipped["duplicate"] += 1
                continue
            seen.add(key)
            splits[split].append(
                {
                    "query": query,
                    "code": record["code"],
                    "query_id": text_id(query),
                    "code_id": text_id(record["code"]),
                    "language": record.get("language", ""),
                    "name": record.get("func_name", ""),
                    "path": record.get("path", ""),
                    "source": f"{os.path.basename(path)}:{line_number}",
                }
            )
    languages = Counter(r["language"] for records in splits.values() for r in records)
    return write_corpus(
        out_dir,
        splits,
        skipped,
        languages=dict(sorted(languages.items())),
        split_rule="CodeSearchNet's own partition field (valid -> validation)",
        source={"format": "CodeSearchNet jsonl", "files": inputs},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("files", nargs="+", help="CodeSearchNet .jsonl or .jsonl.gz files")
    args = parser.parse_args(argv)
    manifest = convert(args.files, args.out_dir)
    print(json.dumps({k: manifest[k] for k in ("counts", "skipped")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
