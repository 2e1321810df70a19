"""Neighbouring paragraphs of Python's documentation: the reST sources of Debian's
`python3.11-doc` package (pinned version and sha256), markup stripped (`rest_paragraphs`),
consecutive prose paragraphs of one section (or of one API object's description) as pairs,
filtered like every text-neighbour corpus (`data_pipelines.text`).

CLI: `python -m data_pipelines.build python_docs`
"""

from __future__ import annotations

import argparse
import os
import re
from collections import Counter
from collections.abc import Iterator
from typing import NamedTuple

from cpt_jax import downloads
from data_pipelines import corpus, debian_packages, splits
from data_pipelines.text import (
    DEFAULT_MIN_WORDS,
    NearDuplicateFilter,
    add_filter_arguments,
    filtered_pairs,
    near_duplicate_description,
    normalise_whitespace,
)

# Bump when the extraction's output changes: it fingerprints cached build units.
EXTRACTION_VERSION = 1

# ----------------------------------------------------------------------------- reST


class RestParagraph(NamedTuple):
    """One prose paragraph of a reST document, as plain text."""

    group: int  # paragraphs of one group are neighbours (a section, one API object's body)
    section: str  # the title of the enclosing section ("" before the first title)
    text: str  # inline markup stripped, whitespace-normalised


# Directives describing one API object (`.. function:: name(args)`): the signature is dropped,
# the body is prose and becomes its own group. Any domain directive (`c:function`) counts.
_DESCRIPTION_DIRECTIVES = {
    "abstractmethod", "attribute", "awaitablefunction", "awaitablemethod", "class",
    "classmethod", "cmdoption", "coroutinefunction", "coroutinemethod", "data", "decorator",
    "decoratormethod", "describe", "envvar", "exception", "function", "method", "object",
    "opcode", "option", "pdbcommand", "program", "staticmethod", "2to3fixer",
}  # fmt: skip
# Directives whose body is prose that stays, in the surrounding group; for the first set the
# text after `::` is prose too (`.. note:: Text`), for the second it is a title (dropped).
_PROSE_DIRECTIVES = {
    "attention", "caution", "danger", "error", "hint", "important", "impl-detail", "note",
    "seealso", "tip", "warning", "epigraph", "centered", "glossary",
}  # fmt: skip
_TITLED_PROSE_DIRECTIVES = {"admonition", "topic", "sidebar"}
# Version notes become a sentence, as Sphinx renders them.
_VERSION_DIRECTIVES = {
    "versionadded": "New in version {}.",
    "versionchanged": "Changed in version {}:",
    "deprecated": "Deprecated since version {}:",
    "deprecated-removed": "Deprecated since version {}, will be removed in version {}:",
}
# Dropped with their content and counted as code: what the corpus leaves to the code corpora.
_CODE_DIRECTIVES = {
    "code", "code-block", "sourcecode", "literalinclude", "doctest", "testcode", "testoutput",
    "testsetup", "testcleanup", "productionlist", "parsed-literal",
}  # fmt: skip
# Every other directive (toctree, index, module, highlight, tables, images, only, include,
# audit-event, availability...) is dropped with its content, uncounted: it is not prose.

_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}$")
_DIRECTIVE = re.compile(r"^\.\.\s+([\w:.-]+)::(?:\s+(.*))?$")
_TARGET = re.compile(r"^\.\.\s+_([^:]+):(?:\s|$)")
_OPTION = re.compile(r"^:[\w-]+:")
_TABLE_BORDER = re.compile(r"^(?:\+[-=+]+\+|=+(?:\s+=+)+)$")
_BULLET = re.compile(r"^[-*+•]\s+")
_LINE_BLOCK = re.compile(r"^\|\s")

_LITERAL = re.compile(r"``(.+?)``")
_ROLE = re.compile(r"(?<![\w`]):((?:[\w-]+:)*[\w-]+):`((?:[^`\\]|\\.)+)`")
_EXPLICIT_TITLE = re.compile(r"^(.*?)\s*<([^<>]*)>$", re.DOTALL)
_HYPERLINK = re.compile(r"`([^`]+?)\s*<[^<>`]*>`__?")
_REFERENCE = re.compile(r"`([^`]+)`__?(?!\w)")
_INTERPRETED = re.compile(r"`([^`]+)`")
_FOOTNOTE_REF = re.compile(r"\s?\[(?:#[\w-]*|\*|\d+|[A-Za-z][\w.-]*)\]_")
_STRONG = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_EMPHASIS = re.compile(r"(?<![\w*\\])\*(?=[^\s*])(.+?)(?<=[^\s\\])\*(?![\w*])")
_SUBSTITUTION = re.compile(r"\|([^|\s][^|]*)\|(?:__?)?")


def _role_text(role: str, content: str, labels: dict[str, str]) -> str:
    """What a role renders as: its explicit title, a reference's section title, `PEP 8`..."""
    content = re.sub(r"\\(.)", r"\1", content)
    titled = _EXPLICIT_TITLE.match(content)
    if titled and titled.group(1):
        return titled.group(1)
    role = role.split(":")[-1]
    if role == "ref":
        return labels.get(content.lower(), content)
    if role in ("pep", "rfc"):
        return f"{role.upper()} {content.split('#')[0]}"
    if role == "issue":
        return f"bpo-{content}"
    if role == "gh":
        return f"gh-{content}"
    if content.startswith("!"):
        return content[1:]
    if content.startswith("~"):  # `~a.b.c` renders as `c` (a `()` suffix kept)
        return content[1:].split(".")[-1]
    return content


def strip_rest_inline(text: str, labels: dict[str, str] | None = None) -> str:
    """Plain text of reST inline markup, as Sphinx would render its words.

    Roles keep their text (`:func:\\`os.path.join\\`` -> `os.path.join`, `~a.b` -> `b`,
    an explicit title `:ref:\\`text <label>\\`` -> `text`, a bare `:ref:\\`label\\`` -> the
    section title in `labels` when known, `:pep:\\`8\\`` -> `PEP 8`, `:issue:\\`1\\`` ->
    `bpo-1`); inline literals, emphasis, strong text, interpreted text, hyperlinks
    (`\\`text <url>\\`_` -> `text`) and substitutions keep their text; footnote and citation
    references are removed; backslash escapes are resolved. Whitespace is normalised.
    """
    labels = labels or {}
    literals: list[str] = []

    def protect(value: str) -> str:  # literal text must not be read as markup
        literals.append(value)
        return f"\0{len(literals) - 1}\0"

    text = _LITERAL.sub(lambda m: protect(m.group(1)), text)
    text = _ROLE.sub(lambda m: protect(_role_text(m.group(1), m.group(2), labels)), text)
    text = _HYPERLINK.sub(r"\1", text)
    text = _REFERENCE.sub(r"\1", text)
    text = _INTERPRETED.sub(r"\1", text)
    text = _FOOTNOTE_REF.sub("", text)
    text = _STRONG.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\1", text)
    text = _SUBSTITUTION.sub(r"\1", text)
    text = re.sub(r"\\ ", "", text)
    text = re.sub(r"\\(.)", r"\1", text)
    text = re.sub(r"\0(\d+)\0", lambda m: literals[int(m.group(1))], text)
    return normalise_whitespace(text)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _title_at(lines: list[str], i: int) -> tuple[str, int] | None:
    """`(title, lines used)` when a section title starts at line `i` (under- or overlined)."""
    line = lines[i].strip()
    nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
    if line and not _ADORNMENT.match(line) and _ADORNMENT.match(nxt) and len(nxt) >= len(line):
        return line, 2
    if _ADORNMENT.match(line) and nxt and i + 2 < len(lines):
        under = lines[i + 2].strip()
        if under == line and not _ADORNMENT.match(nxt):
            return nxt, 3
    return None


def rest_labels(text: str) -> dict[str, str]:
    """`{label: section title}` of the targets (`.. _label:`) placed right before a title.

    Labels are lower-cased (Sphinx matches them case-insensitively); titles are plain text.
    Used to render a bare `:ref:\\`label\\`` as the title it points to.
    """
    lines = text.expandtabs(8).splitlines()
    labels, pending = {}, []
    for i, line in enumerate(lines):
        target = _TARGET.match(line.strip())
        if target:
            pending.append(target.group(1).strip().lower())
        elif not line.strip() or (pending and (line.startswith("..") or line[0].isspace())):
            continue  # blank, or directives in between (`.. index::`, `.. program::`)
        else:
            title = _title_at(lines, i)
            if title and pending:
                plain = strip_rest_inline(title[0])
                labels.update((label, plain) for label in pending)
            pending = []
    return labels


def rest_paragraphs(
    text: str, labels: dict[str, str] | None = None, skipped: Counter | None = None
) -> list[RestParagraph]:
    """The prose paragraphs of a reST document, in order, markup stripped.

    Kept: ordinary paragraphs (bullet markers and line-block bars removed, a definition
    list's term joined to its definition), the bodies of API descriptions (`.. function::`,
    `.. class::`, `.. c:function::`..., their signatures dropped), of admonitions (`note`,
    `warning`, `seealso`, `impl-detail`...) and version notes (rendered as Sphinx does:
    "Changed in version 3.3: ..."). A paragraph ending in `::` keeps one colon ("Example:").

    Dropped: section titles (each starts a new group and names its `section`); code, which
    is left to the code corpora: literal blocks after `::`, doctest blocks (`>>>`),
    `code-block`, `doctest`, `testcode`, `productionlist`... (each counted in
    `skipped["code_block"]`); grid and simple tables (`skipped["table"]`); comments,
    targets, footnotes, substitution definitions and every other directive with its content
    (`toctree`, `index`, `module`, `image`, `only`, `list-table`, `audit-event`...).

    Groups: paragraphs of one group are neighbours. A section title, a transition (`----`),
    a `rubric`, and the start and the end of each API description start a new group (the
    body of `.. function:: f` is about `f` alone). Text on both sides of a dropped code block
    stays in one group: both are about the same thing.
    """
    labels = labels or {}
    skipped = Counter() if skipped is None else skipped
    lines = text.expandtabs(8).splitlines()
    result: list[RestParagraph] = []
    group, section = 0, ""
    paragraph: list[str] = []
    skip_deeper_than: int | None = None  # drop the lines indented deeper than this, and blanks
    literal_after: int | None = None  # the indent of a paragraph that ended with "::"
    descriptions: list[int] = []  # the indents of the API descriptions we are inside

    def flush() -> None:
        nonlocal paragraph, literal_after
        if not paragraph:
            return
        block, paragraph = paragraph, []
        first = block[0].strip()
        if first.startswith(">>>"):
            skipped["code_block"] += 1
            return
        if _TABLE_BORDER.match(first):
            skipped["table"] += 1
            return
        joined = " ".join(_LINE_BLOCK.sub("", _BULLET.sub("", b.strip())) for b in block)
        if joined.endswith("::"):  # a literal block follows
            literal_after = _indent(block[0])
            body = joined[:-2]
            if not body.strip():
                return
            joined = body.rstrip() if body[-1].isspace() else body + ":"
        plain = strip_rest_inline(joined, labels)
        if plain:
            result.append(RestParagraph(group, section, plain))

    i = 0
    while i < len(lines):
        line = lines[i]
        stripped, indent = line.strip(), _indent(line)
        if skip_deeper_than is not None:
            if not stripped or indent > skip_deeper_than:
                i += 1
                continue
            skip_deeper_than = None
        if not stripped:
            flush()
            i += 1
            continue
        if literal_after is not None:
            base, literal_after = literal_after, None
            if indent > base:
                skipped["code_block"] += 1
                skip_deeper_than = base
                continue
        if paragraph and indent < _indent(paragraph[0]):
            flush()
        while descriptions and indent <= descriptions[-1]:
            descriptions.pop()
            group += 1
        if not paragraph:
            title = _title_at(lines, i)
            if title:
                section = strip_rest_inline(title[0], labels)
                group += 1
                i += title[1]
                continue
            if _ADORNMENT.match(stripped):  # a transition
                group += 1
                i += 1
                continue
        if stripped == ".." or stripped.startswith(".. "):
            flush()
            i += 1
            directive = _DIRECTIVE.match(stripped)
            if directive is None:  # a comment, target, footnote or substitution definition
                skip_deeper_than = indent
                continue
            name, argument = directive.group(1).lower(), (directive.group(2) or "").strip()
            if name in _DESCRIPTION_DIRECTIVES or ":" in name:
                group += 1
                descriptions.append(indent)
                while i < len(lines) and lines[i].strip():  # signature lines and options
                    i += 1
            elif name in _PROSE_DIRECTIVES | _TITLED_PROSE_DIRECTIVES | set(_VERSION_DIRECTIVES):
                while i < len(lines) and _OPTION.match(lines[i].strip()):
                    i += 1
                if name in _VERSION_DIRECTIVES:
                    template = _VERSION_DIRECTIVES[name]
                    words = argument.split()
                    count = template.count("{}")
                    versions = (words + ["?"] * count)[:count]
                    argument = " ".join([template.format(*versions), *words[count:]])
                if argument and name not in _TITLED_PROSE_DIRECTIVES:
                    paragraph = [" " * indent + argument]
            else:
                if name in _CODE_DIRECTIVES:
                    skipped["code_block"] += 1
                elif name == "rubric":
                    group += 1
                skip_deeper_than = indent
            continue
        paragraph.append(line)
        i += 1
    flush()
    return result


# ----------------------------------------------------------------------------- python_docs

PYTHON_DOCS = downloads.PinnedDeb(
    "python3.11-doc",
    "3.11.2-6+deb12u8",
    "50eb63e7f636c4281e9ce1b8f10386f1def42159eddce34fc1f41c46261df71b",
)
PYTHON_DOCS_SOURCES = "usr/share/doc/python3.11/html/_sources/"
# Files that are not prose neighbours: the changelog is thousands of unrelated one-line
# entries; the licence texts are boilerplate.
PYTHON_DOCS_EXCLUDED = ("whatsnew/changelog.rst", "license.rst", "copyright.rst")


class PythonDocsBuilder(corpus.Builder):
    """Neighbouring paragraphs of the Python 3.11 documentation (reST sources in a `.deb`).

    One unit: the pinned `python3.11-doc` package, downloaded into `cache_dir` and read
    without installing it. Each `_sources/**/*.rst.txt` file is a document
    (`doc_id` = its path, e.g. `library/json.rst`); `rest_paragraphs` gives its prose
    paragraphs and groups; pairs are consecutive paragraphs of one group, after the
    boilerplate and near-duplicate filters (one filter over the whole package). Records:
    `query`, `document`, `source` (`python3.11-doc`), `doc_id`, `position` (the query's
    paragraph number in the file), `section` (its section title). Skipped: `excluded_file`,
    `non_utf8_file`, `code_block`, `table`, `chunk_<reason>`, `section_under_two_chunks`.
    """

    name = "python_docs"

    def __init__(
        self,
        cache_dir: str = os.path.join("data", "python_docs", "downloads"),
        *,
        pin: downloads.PinnedDeb = PYTHON_DOCS,
        min_words: int = DEFAULT_MIN_WORDS,
        near_duplicate_threshold: float | None = 0.7,
    ):
        self.cache_dir, self.pin, self.min_words = cache_dir, pin, min_words
        self.near_duplicate_threshold = near_duplicate_threshold

    def units(self) -> list[corpus.Unit]:
        return [
            corpus.Unit(corpus.safe_unit_name(f"{self.pin.package}_{self.pin.version}"), self.pin)
        ]

    def sources(self, skipped: Counter) -> list[tuple[str, str]]:
        """`(doc_id, reST text)` of every documentation source file, sorted by `doc_id`."""
        deb = downloads.download_deb(self.pin, self.cache_dir)
        found = []
        for path, data in debian_packages.iter_deb_files(deb, PYTHON_DOCS_SOURCES):
            if not path.endswith(".rst.txt"):
                continue
            doc_id = path[len(PYTHON_DOCS_SOURCES) : -len(".txt")]
            if doc_id in PYTHON_DOCS_EXCLUDED:
                skipped["excluded_file"] += 1
                continue
            try:
                found.append((doc_id, data.decode("utf-8")))
            except UnicodeDecodeError:
                skipped["non_utf8_file"] += 1
        if not found:
            raise ValueError(f"{deb}: no reST sources under {PYTHON_DOCS_SOURCES}")
        return sorted(found)

    def extract(self, unit: corpus.Unit, skipped: Counter) -> Iterator[dict]:
        sources = self.sources(skipped)
        labels: dict[str, str] = {}  # `:ref:` targets across files: labels are global
        for _, text in sources:
            labels.update(rest_labels(text))
        seen = (
            None
            if self.near_duplicate_threshold is None
            else NearDuplicateFilter(self.near_duplicate_threshold)
        )
        for doc_id, text in sources:
            paragraphs = rest_paragraphs(text, labels, skipped)
            start = 0
            while start < len(paragraphs):
                end = start
                while end < len(paragraphs) and paragraphs[end].group == paragraphs[start].group:
                    end += 1
                group = paragraphs[start:end]
                for position, query, document in filtered_pairs(
                    [p.text for p in group],
                    skipped,
                    seen,
                    self.min_words,
                    positions=range(start, end),
                    what="section",
                ):
                    yield {
                        "query": query,
                        "document": document,
                        "source": self.pin.package,
                        "doc_id": doc_id,
                        "position": position,
                        "section": group[0].section,
                    }
                start = end

    def split(self, record: dict) -> str:
        return splits.split_by_hash(record["doc_id"])

    def description(self) -> dict:
        return {
            "package": self.pin.describe(),
            "extraction": EXTRACTION_VERSION,
            "files": f"{PYTHON_DOCS_SOURCES}**/*.rst.txt",
            "excluded": list(PYTHON_DOCS_EXCLUDED),
            "markup": "rest_paragraphs: prose kept, code blocks and tables dropped",
            "min_words": self.min_words,
            "near_duplicate": near_duplicate_description(self.near_duplicate_threshold),
            "split_rule": splits.rule_text("doc_id"),
        }


# ----------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the `python_docs` corpus."""
    parser.add_argument(
        "--cache_dir", default=None, help="where the .deb is kept (default: OUT_DIR/downloads)"
    )
    add_filter_arguments(parser)


def builder_from_args(args: argparse.Namespace) -> PythonDocsBuilder:
    """The `python_docs` builder of parsed flags (`add_arguments`)."""
    return PythonDocsBuilder(
        args.cache_dir or os.path.join(args.out_dir, "downloads"),
        min_words=args.min_words,
        near_duplicate_threshold=args.near_duplicate_threshold or None,
    )
