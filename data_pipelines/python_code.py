"""(docstring, code) pairs from Python source with `ast`, CodeSearchNet-style.

For every top-level function and every method of a top-level class that has a docstring:
  - query: the docstring's first paragraph, whitespace-normalised, at least 3 words;
  - code: the function's source (decorators included) with the docstring removed;
  - code_no_comments: the same without comments (what evaluation ranks, as in CodeSearchNet).
Skipped: bodies under 3 lines (docstring excluded), `test*` functions, dunder methods other
than `__init__` (`__repr__`, `__eq__`... have formulaic docstrings; `__init__` documents a
constructor), docstrings sharing a line with code, and nested functions (they stay part of
their parent's code). Private `_helpers` are kept.

Files: `test`/`tests`/`idle_test` directories, `test_*.py`, vendored code (`_bundled`,
`_vendor`, `site-packages`) and `lib2to3` (deprecated, its fixers are mostly test fixtures
and grammar tables) and `turtledemo` are excluded. Files that are not UTF-8 or do not parse
are counted and skipped. De-duplication is global, over whitespace-normalised code: the
first occurrence in sorted file order wins, whatever its split.

The standard-library corpus splits by top-level module, so whole modules are held out:
`int(sha1(module).hexdigest(), 16) % 100` below 25 -> test, below 35 -> validation, else
train. The test share is large because the CodeSearchNet protocol ranks each query against
1,000 candidates, and the standard library has under 4,000 pairs in all (about 1,350 test;
the simpler `% 10 == 0` test rule gives only about 300 test pairs on Python 3.11).

CLI: `python -m data_pipelines.python_code --out_dir data/stdlib_code`
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import io
import json
import os
import sys
import sysconfig
import textwrap
import tokenize
from collections import Counter
from collections.abc import Iterator

from cpt_jax import files
from cpt_jax.tokenization import text_id

SPLITS = ("train", "validation", "test")
MIN_QUERY_WORDS = 3
MIN_BODY_LINES = 3
# Never training data: tests, vendored third-party code, and tooling that is mostly tests.
EXCLUDED_DIRS = {
    "test",
    "tests",
    "idle_test",
    "__pycache__",
    "site-packages",
    "_bundled",
    "_vendor",
    "lib2to3",
    "turtledemo",
}


def first_paragraph(docstring: str) -> str:
    """The docstring up to its first blank line, on one line."""
    paragraph = []
    for line in docstring.strip().splitlines():
        if not line.strip():
            break
        paragraph.append(line.strip())
    return " ".join(" ".join(paragraph).split())


def strip_comments(code: str) -> str:
    """Removes `#` comments (and lines left empty by that); strings are untouched."""
    try:
        tokens = [
            t
            for t in tokenize.generate_tokens(io.StringIO(code).readline)
            if t.type != tokenize.COMMENT
        ]
        stripped = tokenize.untokenize(tokens)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return code
    lines = [line.rstrip() for line in stripped.splitlines()]
    return "\n".join(line for line in lines if line.strip())


def _function_source(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """Source of `node` (decorators included) with its docstring's lines removed, dedented."""
    start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
    doc = node.body[0]
    kept = lines[start : doc.lineno - 1] + lines[doc.end_lineno : node.end_lineno]
    return textwrap.dedent("".join(kept)).rstrip() + "\n"


def _candidate_functions(tree: ast.Module):
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node.name, node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    yield f"{node.name}.{item.name}", item


def _shares_lines(lines: list[str], doc: ast.stmt) -> bool:
    """Whether the docstring shares a line with other code (`def f(): "doc"; x = 1`)."""
    before = lines[doc.lineno - 1].encode()[: doc.col_offset]
    after = lines[doc.end_lineno - 1].encode()[doc.end_col_offset :].strip()
    return bool(before.strip()) or bool(after and not after.startswith(b"#"))


def _skip_reason(name: str, node, query: str, lines: list[str]) -> str | None:
    short = name.rsplit(".", 1)[-1]
    if short.startswith("test"):
        return "test_function"
    if short.startswith("__") and short.endswith("__") and short != "__init__":
        return "dunder_method"
    if len(query.split()) < MIN_QUERY_WORDS:
        return "short_docstring"
    body_lines = node.end_lineno - node.body[0].end_lineno
    if len(node.body) < 2 or body_lines < MIN_BODY_LINES:
        return "short_body"
    if _shares_lines(lines, node.body[0]):
        return "inline_docstring"  # removing its lines would remove code too (none in stdlib)
    return None


def extract_pairs(
    source: str, *, path: str, module: str, skipped: Counter | None = None
) -> list[dict]:
    """(docstring, code) records of one source file; unparsable files give [] (counted).

    Each record has `query`, `code`, `code_no_comments`, `path`, `module`, `name`, `lineno`.
    `skipped` (if given) counts the reasons functions or files were left out.
    """
    skipped = Counter() if skipped is None else skipped
    try:
        tree = ast.parse(source, filename=path)
    except (SyntaxError, ValueError):
        skipped["unparsable_file"] += 1
        return []
    lines = source.splitlines(keepends=True)
    records = []
    for name, node in _candidate_functions(tree):
        docstring = ast.get_docstring(node)
        if not docstring:
            skipped["no_docstring"] += 1
            continue
        query = first_paragraph(docstring)
        reason = _skip_reason(name, node, query, lines)
        if reason:
            skipped[reason] += 1
            continue
        code = _function_source(lines, node)
        records.append(
            {
                "query": query,
                "code": code,
                "code_no_comments": strip_comments(code),
                "path": path,
                "module": module,
                "name": name,
                "lineno": node.lineno,
            }
        )
    return records


def stdlib_root() -> str:
    return sysconfig.get_paths()["stdlib"]


def iter_stdlib_sources(root: str | None = None) -> Iterator[tuple[str, str]]:
    """(relative path, top-level module) of every non-test `.py` file, in sorted order."""
    root = root or stdlib_root()
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in EXCLUDED_DIRS and not d.startswith("."))
        for name in sorted(names):
            if not name.endswith(".py") or name.startswith("test_") or name == "conftest.py":
                continue
            relative = os.path.relpath(os.path.join(directory, name), root)
            top = relative.split(os.sep)[0]
            module = top[:-3] if top.endswith(".py") else top
            yield relative, module


def split_for_module(module: str) -> str:
    """The split a top-level module belongs to (whole modules are held out)."""
    bucket = int(hashlib.sha1(module.encode()).hexdigest(), 16) % 100
    return "test" if bucket < 25 else "validation" if bucket < 35 else "train"


def code_key(code: str) -> str:
    return hashlib.sha1(" ".join(code.split()).encode()).hexdigest()


def write_jsonl_atomic(path: str, records: list[dict]) -> str:
    digest = hashlib.sha256()
    with files.atomic_open(path) as f:
        for record in records:
            line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
            f.write(line)
            digest.update(line.encode())
    return digest.hexdigest()


def build_corpus(
    sources: Iterator[tuple[str, str]], read, out_dir: str, *, source_description: dict
) -> dict:
    """Extracts, de-duplicates, splits and writes `{train,validation,test}.jsonl` + manifest.

    Args:
      sources: (relative path, top-level module) pairs, in a deterministic order.
      read: `read(relative_path) -> bytes`.
      out_dir: output directory.
      source_description: recorded in the manifest (where the sources came from).
    """
    skipped: Counter = Counter()
    seen: set[str] = set()
    splits: dict[str, list[dict]] = {s: [] for s in SPLITS}
    files_read = 0
    for relative, module in sources:
        try:
            source = read(relative).decode("utf-8")
        except UnicodeDecodeError:
            skipped["non_utf8_file"] += 1
            continue
        files_read += 1
        for record in extract_pairs(source, path=relative, module=module, skipped=skipped):
            key = code_key(record["code"])
            if key in seen:
                skipped["duplicate"] += 1
                continue
            seen.add(key)
            record["query_id"] = text_id(record["query"])
            record["code_id"] = text_id(record["code"])
            splits[split_for_module(module)].append(record)
    return write_corpus(
        out_dir,
        splits,
        skipped,
        modules={
            split: sorted({r["module"] for r in records}) for split, records in splits.items()
        },
        files_read=files_read,
        split_rule="int(sha1(module).hexdigest(), 16) % 100: <25 test, <35 validation, else train",
        source=source_description,
    )


def write_corpus(out_dir: str, splits: dict[str, list[dict]], skipped: Counter, **fields) -> dict:
    """Writes `{split}.jsonl` for every split and `manifest.json`; returns the manifest.

    The manifest holds each split's `counts` and `sha256`, the `skipped` counts by reason,
    and `fields` (what the corpus was built from and how it was split).
    """
    os.makedirs(out_dir, exist_ok=True)
    hashes = {
        split: write_jsonl_atomic(os.path.join(out_dir, f"{split}.jsonl"), records)
        for split, records in splits.items()
    }
    manifest = {
        "counts": {split: len(records) for split, records in splits.items()},
        "skipped": dict(sorted(skipped.items())),
        "sha256": hashes,
        **fields,
    }
    files.write_json_atomic(os.path.join(out_dir, "manifest.json"), manifest)
    return manifest


def build_stdlib_corpus(out_dir: str, root: str | None = None) -> dict:
    """Builds the corpus from the installed standard library (see `build_corpus`)."""
    root = root or stdlib_root()

    def read(relative):
        with open(os.path.join(root, relative), "rb") as f:
            return f.read()

    return build_corpus(
        iter_stdlib_sources(root),
        read,
        out_dir,
        source_description={
            "kind": "python_stdlib",
            "root": root,
            "python_version": sys.version.split()[0],
            "sys_version": sys.version,
        },
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out_dir", default="data/stdlib_code")
    args = parser.parse_args(argv)
    manifest = build_stdlib_corpus(args.out_dir)
    print(json.dumps({k: manifest[k] for k in ("counts", "files_read", "skipped")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
