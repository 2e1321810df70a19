"""CodeSearchNet's published jsonl(.gz) files as a cpt-jax pairs corpus.

Users who have the CodeSearchNet data (Husain et al., 2019: `{language}_{partition}_{n}.jsonl.gz`,
one function per line with `docstring`, `code`, `partition`, `language`, `func_name`, ...)
convert it as is:

    python -m data_pipelines.build codesearchnet FILE [FILE ...] [--out_dir data/codesearchnet]

which writes the usual corpus layout (`data_pipelines.corpus`; CodeSearchNet's `valid`
partition becomes `validation`). The query is the docstring's first paragraph, the
same rule as the Python extraction; lines that cannot be used are skipped and counted by
reason in the manifest, never silently dropped: `invalid_json`, `non_utf8`,
`missing_field`, `empty_docstring`, `unknown_partition`, `empty_code`, `duplicate` (the same
code, up to whitespace, seen before).
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator

from cpt_jax import files
from data_pipelines import corpus
from data_pipelines.python_code import first_paragraph

PARTITIONS = {"train": "train", "valid": "validation", "test": "test"}
REQUIRED_FIELDS = ("docstring", "code", "partition")


class CodeSearchNetBuilder(corpus.Builder):
    """CodeSearchNet jsonl(.gz) files, one unit per file, split by their `partition`."""

    name = "codesearchnet"

    def __init__(self, paths: Iterable[str]):
        self.paths = [os.path.abspath(p) for p in paths]
        for path in self.paths:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path}: no such CodeSearchNet file")

    def units(self) -> list[corpus.Unit]:
        return [
            corpus.Unit(f"{i:04d}-{corpus.safe_unit_name(os.path.basename(p))}", p)
            for i, p in enumerate(self.paths)
        ]

    def extract(self, unit: corpus.Unit, skipped: Counter) -> Iterator[dict]:
        path = unit.payload
        for line_number, raw in files.raw_lines(path):
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
            if not record["code"].strip():
                skipped["empty_code"] += 1
                continue
            yield {
                "query": query,
                "document": record["code"],
                "partition": split,
                "language": str(record.get("language", "")),
                "name": str(record.get("func_name", "")),
                "path": str(record.get("path", "")),
                "source": f"{os.path.basename(path)}:{line_number}",
            }

    def split(self, record: dict) -> str:
        return record["partition"]

    def description(self) -> dict:
        return {
            "format": "CodeSearchNet jsonl",
            "files": [
                {"file": os.path.basename(p), "sha256": files.sha256_of(p)} for p in self.paths
            ],
            "split_rule": "CodeSearchNet's own partition field (valid -> validation)",
        }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", help="CodeSearchNet .jsonl or .jsonl.gz files")


def builder_from_args(args: argparse.Namespace) -> CodeSearchNetBuilder:
    return CodeSearchNetBuilder(args.files)
