"""(docstring, code) pairs from Python source with `ast`, CodeSearchNet-style.

For every top-level function and every method of a top-level class that has a docstring:
  - query: the docstring's first paragraph, whitespace-normalised, at least 3 words;
  - document: the function's source (decorators included) with the docstring removed;
  - code_no_comments: the same without comments (what evaluation ranks, as in CodeSearchNet).
Skipped: bodies under 3 lines (docstring excluded), `test*` functions, dunder methods other
than `__init__` (`__repr__`, `__eq__`... have formulaic docstrings; `__init__` documents a
constructor), docstrings sharing a line with code, and nested functions (they stay part of
their parent's code). Private `_helpers` are kept.

Files: `test`/`tests`/`idle_test` directories, `test_*.py`, vendored code (`_bundled`,
`_vendor`, `site-packages`) and `lib2to3` (deprecated, its fixers are mostly test fixtures
and grammar tables) and `turtledemo` are excluded. Files that are not UTF-8 or do not parse
are counted and skipped. De-duplication is global, over whitespace-normalised code: the
first occurrence in unit order (modules sorted by name) wins, whatever its split.

The standard-library corpus splits by top-level module, so whole modules are held out:
`int(sha1(module).hexdigest(), 16) % 100` below 25 -> test, below 35 -> validation, else
train. The test share is large because the CodeSearchNet protocol ranks each query against
1,000 candidates, and the standard library has under 4,000 pairs in all (about 1,350 test;
the simpler `% 10 == 0` test rule gives only about 300 test pairs on Python 3.11).

CLI: `python -m data_pipelines.build stdlib_code` (writes `data/stdlib_code/`)
"""

from __future__ import annotations

import argparse
import ast
import io
import os
import sys
import sysconfig
import textwrap
import tokenize
from collections import Counter
from collections.abc import Iterator

from data_pipelines import corpus, splits

# Bump when the extraction's output changes: it fingerprints cached build units.
EXTRACTION_VERSION = 2
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

    Each record has `query`, `document` (the code), `code_no_comments`, `path`, `module`,
    `name`, `lineno`.
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
                "document": code,
                "code_no_comments": strip_comments(code),
                "path": path,
                "module": module,
                "name": name,
                "lineno": node.lineno,
            }
        )
    return records


def extract_file_pairs(data: bytes, *, path: str, module: str, skipped: Counter) -> list[dict]:
    """`extract_pairs` of a file's raw bytes; a file that is not UTF-8 gives [] (counted)."""
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError:
        skipped["non_utf8_file"] += 1
        return []
    return extract_pairs(source, path=path, module=module, skipped=skipped)


def is_excluded_path(relative: str) -> bool:
    """Whether a file below a source root is never read: not a `.py` file, a test file
    (`test_*.py`, `conftest.py`), or under an `EXCLUDED_DIRS` or hidden directory.

    `relative` is the path below the root, separated by `/` or `os.sep`.
    """
    *directories, name = relative.replace(os.sep, "/").split("/")
    if not name.endswith(".py") or name.startswith("test_") or name == "conftest.py":
        return True
    return any(d in EXCLUDED_DIRS or d.startswith(".") for d in directories)


def stdlib_root() -> str:
    return sysconfig.get_paths()["stdlib"]


def iter_stdlib_sources(root: str | None = None) -> Iterator[tuple[str, str]]:
    """(relative path, top-level module) of every non-test `.py` file, in sorted order."""
    root = root or stdlib_root()
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in EXCLUDED_DIRS and not d.startswith("."))
        for name in sorted(names):
            relative = os.path.relpath(os.path.join(directory, name), root)
            if is_excluded_path(relative):
                continue
            top = relative.split(os.sep)[0]
            module = top[:-3] if top.endswith(".py") else top
            yield relative, module


def split_for_module(module: str) -> str:
    """The split a top-level module belongs to (whole modules are held out)."""
    bucket = splits.hash_bucket(module, 100)
    return "test" if bucket < 25 else "validation" if bucket < 35 else "train"


class StdlibBuilder(corpus.Builder):
    """The installed standard library's pairs, one unit per top-level module."""

    name = "stdlib_code"

    def __init__(self, root: str | None = None):
        self.root = root or stdlib_root()

    def units(self) -> list[corpus.Unit]:
        paths: dict[str, list[str]] = {}
        for relative, module in iter_stdlib_sources(self.root):
            paths.setdefault(module, []).append(relative)
        return [corpus.Unit(module, paths[module]) for module in sorted(paths)]

    def extract(self, unit: corpus.Unit, skipped: Counter) -> Iterator[dict]:
        for relative in unit.payload:
            with open(os.path.join(self.root, relative), "rb") as f:
                data = f.read()
            yield from extract_file_pairs(data, path=relative, module=unit.name, skipped=skipped)

    def split(self, record: dict) -> str:
        return split_for_module(record["module"])

    def description(self) -> dict:
        return {
            "kind": "python_stdlib",
            "root": self.root,
            "python_version": sys.version.split()[0],
            "sys_version": sys.version,
            "split_rule": "int(sha1(module).hexdigest(), 16) % 100: <25 test, <35 validation, "
            "else train",
            "extraction": EXTRACTION_VERSION,
        }


def build_stdlib_corpus(out_dir: str, root: str | None = None, **kwargs) -> dict:
    """Builds the standard-library corpus into `out_dir`; returns its manifest."""
    return corpus.build(StdlibBuilder(root), out_dir, **kwargs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=None, help="stdlib directory (default: this Python's)")


def builder_from_args(args: argparse.Namespace) -> StdlibBuilder:
    return StdlibBuilder(args.root)
