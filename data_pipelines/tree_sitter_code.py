"""(doc comment, function) pairs from Go, Java, JavaScript, PHP and Ruby, with tree-sitter.

The CodeSearchNet languages other than Python (see `python_code` for Python), parsed by
`code_grammars` (which says what a doc comment and a function are in each language). For
every function or method with a documentation comment directly above it:

  - query: the comment's first paragraph, comment markers removed, cut at the first tag line
    (`@param`, `@return`...), inline tags (`{@link X}` -> `X`) and HTML tags removed,
    whitespace-normalised; at least 3 words;
  - document: the function's source without the comment (decorators, annotations,
    modifiers and `export` included), dedented; at least 3 lines;
  - code_no_comments: the document without its comments (what evaluation ranks).

Skipped and counted by reason: files under test, spec or vendored directories or named like
tests (`foo_test.go`, `FooTest.java`, `foo.spec.js`...), generated files (`Code generated ...
DO NOT EDIT`, `@generated` near the top), minified JavaScript (`.min.js`, or half of its
bytes in lines over 500 characters), files that are not UTF-8, and files that do not parse:
tree-sitter recovers from syntax errors, and rather than trusting the recovered tree (a
comment may then attach to the wrong function) a file whose tree has an error is skipped
whole (`parse_error_file`). Functions: no doc comment, a doc comment under 3 words, under 3
lines, or named like a test (`testFoo`, `TestFoo`).

The default corpus is real code from pinned Debian packages (`DEFAULT_PACKAGES`: each
`.deb`'s version and sha256 are pinned and verified after download; nothing is installed),
several source packages per language. Split by Debian *source* package, so a package's
code is in one split: `int(sha1(source).hexdigest(), 16) % 10` is 0 -> test, 1 ->
validation, else train. Bucket 0 is reserved for held-out evaluation (docs/design.md): those
packages only ever go to test.

CLI:
  python -m data_pipelines.build tree_sitter_code                # the default corpus
  python -m data_pipelines.build tree_sitter_code --language go  # its Go packages only
  python -m data_pipelines.build tree_sitter_code --source DIR_OR_ARCHIVE [--language go]
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from cpt_jax import downloads, files
from cpt_jax.downloads import PinnedDeb
from data_pipelines import archives, corpus, splits
from data_pipelines.code_grammars import (
    GRAMMARS,
    LANGUAGES,
    doc_comment,
    doc_query,
    function_source,
    functions_of,
    language_of,
    parse,
    parser_for,
    without_comments,
)

# Bump when the extraction's output changes: it fingerprints cached build units.
EXTRACTION_VERSION = 1
MIN_QUERY_WORDS = 3
MIN_DOCUMENT_LINES = 3
MINIFIED_LINE_CHARS = 500  # a JavaScript file with half its bytes in longer lines is minified


# Directories whose files are never read: tests and their data, vendored third-party code.
TEST_DIRS = {"test", "tests", "testdata", "spec", "specs", "__tests__", "__mocks__", "fixtures"}
VENDORED_DIRS = {"vendor", "node_modules", "third_party", "third-party", "bower_components"}
_TEST_FILE = re.compile(
    r"(_test\.go|^Test\w*\.java|\w(Test|Tests|TestCase)\.java|(^|[._-])(tests?|spec)\.[mc]?js"
    r"|Test\.php|_(spec|test)\.rb|^test_\w*\.rb)$"
)
_GENERATED = re.compile(rb"^// Code generated .* DO NOT EDIT\.$|@generated\b", re.MULTILINE)
_TEST_NAME = re.compile(r"^[Tt]est([A-Z0-9_]|$)")
# ----------------------------------------------------------------------------- parsing


def excluded_reason(path: str) -> str | None:
    """Why a source file is never read (`test_file`, `vendored_file`), or None.

    `path` is relative to the tree or archive, `/`-separated.
    """
    *directories, name = path.replace(os.sep, "/").split("/")
    if any(d in VENDORED_DIRS for d in directories):
        return "vendored_file"
    if any(d in TEST_DIRS for d in directories) or _TEST_FILE.search(name):
        return "test_file"
    return None


def is_minified(data: bytes) -> bool:
    """Whether JavaScript source looks minified: `.min.js`-like bundles put most bytes into
    a few very long lines (half the bytes in lines over `MINIFIED_LINE_CHARS`)."""
    long_bytes = sum(len(line) for line in data.split(b"\n") if len(line) > MINIFIED_LINE_CHARS)
    return long_bytes * 2 >= max(len(data), 1)


def extract_pairs(
    source: bytes, language: str, *, path: str, skipped: Counter | None = None
) -> list[dict]:
    """(doc comment, function) records of one source file (see the module docstring).

    Each record has `query`, `document`, `code_no_comments`, `language`, `path`, `name`,
    `lineno` (1-based, of the function's first line). A file whose tree has a syntax error
    gives [] (`skipped["parse_error_file"]`); `skipped` counts the functions left out.
    """
    skipped = Counter() if skipped is None else skipped
    _, _, comment_query = parser_for(language)
    source, tree = parse(source, language)
    if tree.root_node.has_error:
        skipped["parse_error_file"] += 1
        return []
    records = []
    for function in functions_of(tree, language):
        comment = doc_comment(function, language)
        if comment is None:
            skipped["no_doc_comment"] += 1
            continue
        query = doc_query(comment, language)
        document = function_source(source, function)
        if _TEST_NAME.match(function.short_name.rsplit(".", 1)[-1]):
            reason = "test_function"
        elif len(query.split()) < MIN_QUERY_WORDS:
            reason = "short_doc_comment"
        elif len(document.splitlines()) < MIN_DOCUMENT_LINES:
            reason = "short_function"
        else:
            reason = None
        if reason:
            skipped[reason] += 1
            continue
        records.append(
            {
                "query": query,
                "document": document,
                "code_no_comments": without_comments(source, function.anchor, comment_query),
                "language": language,
                "path": path,
                "name": function.name,
                "lineno": function.anchor.start_point.row + 1,
            }
        )
    return records


def extract_file(
    data: bytes, path: str, skipped: Counter, languages: Sequence[str] = LANGUAGES
) -> list[dict]:
    """The records of one file of a tree or archive, after the file filters (counted).

    Files that are not source files of `languages` give [] without being counted.
    """
    language = language_of(path)
    if language is None or language not in languages:
        return []
    reason = excluded_reason(path)
    if reason is None and language == "javascript":
        name = os.path.basename(path)
        if re.search(r"[.-]min\.[mc]?js$", name) or is_minified(data):
            reason = "minified_file"
    if reason is None and _GENERATED.search(data[:2000]):
        reason = "generated_file"
    if reason is None:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            reason = "non_utf8_file"
    if reason:
        skipped[reason] += 1
        return []
    return extract_pairs(data, language, path=path, skipped=skipped)


# ----------------------------------------------------------------------------- sources


class DebianSource(NamedTuple):
    """A pinned `.deb` of real source code: which files of it to read, in which language."""

    deb: PinnedDeb
    source_package: str  # the Debian source package: the split key
    language: str
    prefixes: tuple[str, ...]  # installed paths to read (see `archives.open_files` for zips inside)

    @property
    def unit_name(self) -> str:
        return corpus.safe_unit_name(f"{self.deb.package}-{self.deb.version}")

    def describe(self) -> dict:
        """The source as a manifest entry."""
        return {
            **self.deb.describe(),
            "source_package": self.source_package,
            "language": self.language,
            "prefixes": list(self.prefixes),
        }


class LocalSource(NamedTuple):
    """A local directory or archive; its `name` is the split key (`source_package`)."""

    path: str
    name: str
    languages: tuple[str, ...]

    @property
    def unit_name(self) -> str:
        return corpus.safe_unit_name(self.name)

    def describe(self) -> dict:
        """The source as a manifest entry (archives with their sha256)."""
        entry = {"path": os.path.abspath(self.path), "name": self.name}
        entry["languages"] = list(self.languages)
        if os.path.isfile(self.path):
            entry["sha256"] = files.sha256_of(self.path)
        else:  # an edited tree is a different corpus (not "already built")
            entry["tree_sha256"] = files.tree_sha256(self.path)
        return entry


# The pinned .debs of the default corpus and what to read of each:
# data_pipelines/pins/tree_sitter_code.json (its "about" says how they were chosen).
PINS_FILE = os.path.join(os.path.dirname(__file__), "pins", "tree_sitter_code.json")


def _read_pins(path: str) -> tuple[DebianSource, ...]:
    with open(path, encoding="utf-8") as f:
        pins = json.load(f)["debs"]
    return tuple(
        DebianSource(
            PinnedDeb(pin["package"], pin["version"], pin["sha256"]),
            pin["source_package"],
            pin["language"],
            tuple(pin["prefixes"]),
        )
        for pin in pins
    )


DEFAULT_PACKAGES = _read_pins(PINS_FILE)


def split_for_package(source_package: str) -> str:
    """The split of a source package: `int(sha1(name).hexdigest(), 16) % 10` is 0 -> test,
    1 -> validation, anything else -> train."""
    return splits.split_by_hash(source_package)


# ----------------------------------------------------------------------------- builder


class TreeSitterCodeBuilder(corpus.Builder):
    """Pairs from Debian packages (the default) or local trees/archives, one unit each."""

    name = "tree_sitter_code"

    def __init__(
        self,
        sources: Sequence[DebianSource | LocalSource] = DEFAULT_PACKAGES,
        cache_dir: str = os.path.join("data", "tree_sitter_code", "downloads"),
        log=print,
    ):
        self.sources, self.cache_dir, self.log = tuple(sources), cache_dir, log

    def units(self) -> list[corpus.Unit]:
        return [corpus.Unit(source.unit_name, source) for source in self.sources]

    def extract(self, unit: corpus.Unit, skipped: Counter) -> Iterator[dict]:
        source = unit.payload
        if isinstance(source, DebianSource):
            path = downloads.download_deb(source.deb, self.cache_dir, log=self.log)
            files = archives.iter_files(path, source.prefixes)
            languages, package = (source.language,), source.source_package
        else:
            files, languages, package = (
                archives.iter_files(source.path),
                source.languages,
                source.name,
            )
        for relative, data in files:
            for record in extract_file(data, relative, skipped, languages):
                yield {**record, "source_package": package}

    def split(self, record: dict) -> str:
        return split_for_package(record["source_package"])

    def description(self) -> dict:
        return {
            "kind": "tree_sitter_code",
            "sources": [source.describe() for source in self.sources],
            "grammars": _grammar_versions(),
            "split_rule": "by source package: int(sha1(source_package).hexdigest(), 16) % 10: "
            "0 test, 1 validation, else train",
            "extraction": EXTRACTION_VERSION,
        }


def _grammar_versions() -> dict[str, str]:
    from importlib import metadata

    names = ["tree-sitter"] + [GRAMMARS[lang].module.replace("_", "-") for lang in LANGUAGES]
    return {name: metadata.version(name) for name in names}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The corpus's flags: defaults build the pinned Debian corpus."""
    parser.add_argument(
        "--source",
        action="append",
        default=None,
        help="a directory, .deb, zip or tar archive to read instead of the Debian packages "
        "(repeatable; its base name is its split key)",
    )
    parser.add_argument(
        "--language",
        choices=LANGUAGES,
        default=None,
        help="only this language (of the Debian packages, or of the --source files)",
    )
    parser.add_argument(
        "--cache_dir", default=None, help="where .debs are downloaded (default OUT_DIR/downloads)"
    )


def builder_from_args(args: argparse.Namespace) -> TreeSitterCodeBuilder:
    """The builder the flags describe."""
    cache_dir = args.cache_dir or os.path.join(args.out_dir, "downloads")
    languages = (args.language,) if args.language else LANGUAGES
    if not args.source:
        packages = [p for p in DEFAULT_PACKAGES if p.language in languages]
        return TreeSitterCodeBuilder(packages, cache_dir)
    sources = [
        LocalSource(path, os.path.basename(os.path.normpath(path)), languages)
        for path in args.source
    ]
    return TreeSitterCodeBuilder(sources, cache_dir)
