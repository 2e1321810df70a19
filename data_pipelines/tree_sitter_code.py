"""(doc comment, function) pairs from Go, Java, JavaScript, PHP and Ruby, with tree-sitter.

The CodeSearchNet languages other than Python (see `python_code` for Python). Each grammar
comes compiled in its PyPI wheel (`tree_sitter_go.language()`...): nothing is downloaded at
run time. For every function or method with a documentation comment directly above it:

  - query: the comment's first paragraph, comment markers removed, cut at the first tag line
    (`@param`, `@return`...), inline tags (`{@link X}` -> `X`) and HTML tags removed,
    whitespace-normalised; at least 3 words;
  - document: the function's source without the comment (decorators, annotations,
    modifiers and `export` included), dedented; at least 3 lines;
  - code_no_comments: the document without its comments (what evaluation ranks).

Doc comments, per language: Go and Ruby, the run of `//` (`#`) line comments on the lines
directly above the declaration (Go directives `//go:...` dropped; Ruby's rdoc `call-seq:`
paragraph skipped); Java, JavaScript and PHP, the `/** ... */` block ending on the line
above (or on the declaration's line). Functions: Go functions and methods; Java methods and
constructors; JavaScript function declarations, class and object methods, and function or
arrow expressions that are the value of a one-variable declaration (`const f = () => ...`),
of an assignment statement (`Foo.prototype.bar = function ...`) or of an object property
(`bar: function ...`), at any depth (lodash defines its functions inside a closure); PHP
functions and methods; Ruby `def` and `def self.x`. Names are qualified by the enclosing
classes (`Outer.Inner.method`; Go methods by their receiver type: `Buffer.Write`).

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
import functools
import html
import io
import os
import re
import tarfile
import textwrap
import zipfile
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from cpt_jax import downloads, files
from cpt_jax.downloads import PinnedDeb
from data_pipelines import corpus, debian_packages, splits

# Bump when the extraction's output changes: it fingerprints cached build units.
EXTRACTION_VERSION = 1
MIN_QUERY_WORDS = 3
MIN_DOCUMENT_LINES = 3
MINIFIED_LINE_CHARS = 500  # a JavaScript file with half its bytes in longer lines is minified


class Grammar(NamedTuple):
    """How one language is parsed and where its functions and doc comments are."""

    module: str  # the grammar wheel's module
    function: str  # its function returning the compiled language
    functions: str  # a tree-sitter query capturing every candidate function as @fn
    comment_types: tuple[str, ...]
    doc_style: str  # "line": a run of line comments; "block": one /** */ comment
    line_marker: str  # the line-comment marker ("//", "#"); "" for block doc comments
    scopes: tuple[str, ...]  # node types whose `name` qualifies the functions inside them
    extensions: tuple[str, ...]


GRAMMARS = {
    "go": Grammar(
        "tree_sitter_go",
        "language",
        "[(function_declaration) (method_declaration)] @fn",
        ("comment",),
        "line",
        "//",
        (),
        (".go",),
    ),
    "java": Grammar(
        "tree_sitter_java",
        "language",
        "[(method_declaration) (constructor_declaration) (compact_constructor_declaration)] @fn",
        ("block_comment", "line_comment"),
        "block",
        "",
        (
            "class_declaration",
            "interface_declaration",
            "enum_declaration",
            "record_declaration",
            "annotation_type_declaration",
        ),
        (".java",),
    ),
    "javascript": Grammar(
        "tree_sitter_javascript",
        "language",
        "[(function_declaration) (generator_function_declaration) (method_definition)"
        " (function_expression) (generator_function) (arrow_function)] @fn",
        ("comment",),
        "block",
        "",
        ("class_declaration", "class"),
        (".js", ".mjs", ".cjs"),
    ),
    "php": Grammar(
        "tree_sitter_php",
        "language_php",  # PHP embedded in HTML, as .php files are
        "[(function_definition) (method_declaration)] @fn",
        ("comment",),
        "block",
        "",
        ("class_declaration", "interface_declaration", "trait_declaration", "enum_declaration"),
        (".php",),
    ),
    "ruby": Grammar(
        "tree_sitter_ruby",
        "language",
        "[(method) (singleton_method)] @fn",
        ("comment",),
        "line",
        "#",
        ("class", "module"),
        (".rb",),
    ),
}
LANGUAGES = tuple(GRAMMARS)
_EXTENSION_LANGUAGE = {ext: lang for lang, g in GRAMMARS.items() for ext in g.extensions}

# Directories whose files are never read: tests and their data, vendored third-party code.
TEST_DIRS = {"test", "tests", "testdata", "spec", "specs", "__tests__", "__mocks__", "fixtures"}
VENDORED_DIRS = {"vendor", "node_modules", "third_party", "third-party", "bower_components"}
_TEST_FILE = re.compile(
    r"(_test\.go|^Test\w*\.java|\w(Test|Tests|TestCase)\.java|(^|[._-])(tests?|spec)\.[mc]?js"
    r"|Test\.php|_(spec|test)\.rb|^test_\w*\.rb)$"
)
_GENERATED = re.compile(rb"^// Code generated .* DO NOT EDIT\.$|@generated\b", re.MULTILINE)
_TEST_NAME = re.compile(r"^[Tt]est([A-Z0-9_]|$)")
_GO_DIRECTIVE = re.compile(r"^//(go:|line |export |extern |[a-z0-9]+:[a-z0-9])")
# Ruby comments that are tool directives, not documentation.
_RUBY_DIRECTIVE = re.compile(r"^#\s*(rubocop:|:(no|stop|start)doc:|frozen_string_literal:|-\*-)")
# A Natural Docs heading line (OpenLayers: "APIMethod: getExtent") names, not describes.
_NATURAL_DOCS_HEADING = re.compile(
    r"^(API)?(Method|Function|Constructor|Property|Class|Namespace|Event|Constant):\s*\S*$"
)
_CALL_SEQ = ("call-seq:", ":call-seq:")  # rdoc's signature paragraph
_TODO = re.compile(r"^(TODO|FIXME|XXX|HACK)\b", re.I)
_INLINE_TAG = re.compile(r"\{@(\w+)\s*([^{}]*)\}")  # {@link Foo#bar label}, {@code x}
# A Natural Docs link (`the <OpenLayers.Map>`), not a type argument (`List<String>`).
_NATURAL_DOCS_LINK = re.compile(r"(?<!\w)<([A-Za-z_$][\w.$]*)>")
_INLINE_HTML = re.compile(r"</?(code|tt|b|i|em|strong|var|a|span|sup|sub|kbd)\b[^<>]*>", re.I)
# Only HTML's own tags: `List<String>` or a Natural Docs link `<OpenLayers.Map>` stay.
_HTML_TAG = re.compile(
    r"</?(p|br|hr|pre|blockquote|div|ul|ol|li|dl|dt|dd|table|thead|tbody|tr|td|th|h[1-6]|img"
    r"|code|tt|b|i|em|strong|var|a|span|sup|sub|kbd|u|small|big|cite|font)\b[^<>]*>",
    re.I,
)
# A line that opens a section of parameters or examples ends the description as a tag does.
_SECTION_LINE = re.compile(r"^(Parameters|Params|Returns?|Throws|Examples?|See also|Usage):")
_PARAGRAPH_TAG = re.compile(r"<p\s*/?>|</p>", re.I)


# ----------------------------------------------------------------------------- parsing


@functools.cache
def parser_for(language: str):
    """`(parser, function query, comment query)` of `language`, its grammar loaded from the
    compiled module of its wheel (no download, no compilation)."""
    import importlib

    import tree_sitter

    grammar = GRAMMARS[language]
    compiled = getattr(importlib.import_module(grammar.module), grammar.function)()
    ts_language = tree_sitter.Language(compiled)
    query = tree_sitter.Query(ts_language, grammar.functions)
    comments = tree_sitter.Query(
        ts_language, "[" + " ".join(f"({t})" for t in grammar.comment_types) + "] @c"
    )
    return tree_sitter.Parser(ts_language), query, comments


def _captures(query, node) -> list:
    import tree_sitter

    found = tree_sitter.QueryCursor(query).captures(node)
    return sorted((n for nodes in found.values() for n in nodes), key=lambda n: n.start_byte)


def language_of(path: str) -> str | None:
    """The language of a file by its extension (None: not a source file of ours)."""
    return _EXTENSION_LANGUAGE.get(os.path.splitext(path)[1])


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


# ----------------------------------------------------------------------------- doc comments


def _comment_lines(text: str, grammar: Grammar) -> list[str]:
    """The lines of a doc comment without its markers (`/**`, ` * `, `//`, `#`)."""
    if grammar.doc_style == "block":
        body = text[3:-2] if text.endswith("*/") else text[3:]
        lines = []
        for line in body.splitlines():
            line = line.strip()
            lines.append(line[1:].strip() if line.startswith("*") else line)
        return lines
    lines = []
    for line in text.splitlines():
        if grammar.line_marker == "//" and _GO_DIRECTIVE.match(line):
            continue
        if grammar.line_marker == "#" and _RUBY_DIRECTIVE.match(line):
            continue
        line = line[len(grammar.line_marker) :]
        lines.append((line.lstrip("#") if grammar.line_marker == "#" else line).strip())
    return lines


def _inline_tag_text(match: re.Match) -> str:
    """What an inline tag reads as: `{@link Foo#bar label}` -> `label`, `{@link Foo#bar}` ->
    `Foo.bar`, `{@code x}` -> `x`, `{@inheritDoc}` -> ``."""
    tag, body = match[1], match[2].strip()
    if tag.startswith("link") and len(body.split(None, 1)) == 2:
        return body.split(None, 1)[1]
    return body.replace("#", ".").lstrip(".") if tag.startswith("link") else body


def doc_query(comment: str, language: str) -> str:
    """The query of a doc comment: its first paragraph, without markers, tags or HTML,
    on one line ('' when nothing is left).

    The paragraph ends at a blank line, a `<p>` or a tag line (`@param x`); a leading rdoc
    `call-seq:` paragraph (Ruby) and a Natural Docs heading line (`Method: name`) are
    skipped; `{@link Foo label}` reads `label`, `{@code x}` reads `x`. A `TODO`/`FIXME`
    note gives ''.
    """
    grammar = GRAMMARS[language]
    lines = _comment_lines(comment, grammar)
    paragraphs: list[list[str]] = [[]]
    if lines and _NATURAL_DOCS_HEADING.match(next((x for x in lines if x), "")):
        lines = lines[[bool(x) for x in lines].index(True) + 1 :]
    for line in lines:
        if line.startswith("@") or _SECTION_LINE.match(line):
            break
        if line:
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    paragraphs = [p for p in paragraphs if p]
    if paragraphs and language == "ruby" and paragraphs[0][0].startswith(_CALL_SEQ):
        paragraphs = paragraphs[1:]
    if not paragraphs or _TODO.match(paragraphs[0][0]):
        return ""
    text = " ".join(paragraphs[0])
    text = _INLINE_TAG.sub(_inline_tag_text, text)
    text = next((part for part in _PARAGRAPH_TAG.split(text) if part.strip()), "")
    text = _HTML_TAG.sub(" ", _INLINE_HTML.sub("", text))
    text = _NATURAL_DOCS_LINK.sub(r"\1", text)
    return " ".join(html.unescape(text).split())


def _previous(node, grammar: Grammar):
    """The node before `node`, looking out of a Ruby body: the comments above a class's
    first `def` are children of the class, not of its body."""
    before = node.prev_sibling
    if before is None and node.parent is not None and node.parent.type == "body_statement":
        before = node.parent.prev_sibling
    return before


def _doc_comment(anchor, grammar: Grammar) -> str | None:
    """The text of the doc comment directly above `anchor`, or None."""
    before = _previous(anchor, grammar)
    if grammar.doc_style == "block":
        if before is None or before.type not in grammar.comment_types:
            return None
        text = before.text.decode()
        if not text.startswith("/**") or text.startswith("/**/"):
            return None
        return text if before.end_point.row >= anchor.start_point.row - 1 else None
    lines: list[str] = []
    row = anchor.start_point.row
    while (
        before is not None
        and before.type in grammar.comment_types
        and before.end_point.row == row - 1
        and before.text.decode().startswith(grammar.line_marker)
    ):
        earlier = _previous(before, grammar)
        if earlier is not None and earlier.end_point.row == before.start_point.row:
            break  # a comment trailing code on its line documents that code
        lines.insert(0, before.text.decode())
        row = before.start_point.row
        before = earlier
    return "\n".join(lines) or None


# ----------------------------------------------------------------------------- functions


def _text(node) -> str:
    return node.text.decode() if node is not None else ""


def _js_anchor(node) -> tuple[object, str] | None:
    """The statement a JavaScript function is documented above, and the function's name;
    None for unnamed functions (callbacks, immediately invoked expressions)."""
    parent = node.parent
    if node.type in ("function_declaration", "generator_function_declaration", "method_definition"):
        anchor, name = node, _text(node.child_by_field_name("name"))
    elif parent is None:
        return None
    elif parent.type == "variable_declarator" and parent.child_by_field_name("value") == node:
        declaration = parent.parent
        declarators = [c for c in declaration.named_children if c.type == "variable_declarator"]
        if len(declarators) != 1:
            return None
        anchor, name = declaration, _text(parent.child_by_field_name("name"))
    elif (
        parent.type == "assignment_expression"
        and parent.child_by_field_name("right") == node
        and parent.parent is not None
        and parent.parent.type == "expression_statement"
    ):
        anchor, name = parent.parent, _text(parent.child_by_field_name("left"))
    elif parent.type == "pair" and parent.child_by_field_name("value") == node:
        anchor, name = parent, _text(parent.child_by_field_name("key")).strip("'\"")
    else:
        return None
    if anchor.parent is not None and anchor.parent.type == "export_statement":
        anchor = anchor.parent
    return anchor, "".join(name.split())


def _go_name(node) -> str:
    name = _text(node.child_by_field_name("name"))
    receiver = node.child_by_field_name("receiver")
    if receiver is None:
        return name
    declaration = next(
        (c for c in receiver.named_children if c.type == "parameter_declaration"), None
    )
    kind = _text(declaration.child_by_field_name("type")) if declaration else ""
    kind = kind.lstrip("*").split("[")[0].strip()  # (b *Buffer[T]) -> Buffer
    return f"{kind}.{name}" if kind else name


def _function_anchor(node, language: str) -> tuple[object, str] | None:
    """`(anchor, name)`: the node a doc comment sits above and the unqualified name."""
    if language == "javascript":
        return _js_anchor(node)
    if language == "go":
        return node, _go_name(node)
    if language == "ruby" and node.type == "singleton_method":
        owner = _text(node.child_by_field_name("object"))
        name = _text(node.child_by_field_name("name"))
        return node, name if owner == "self" else f"{owner}.{name}"
    return node, _text(node.child_by_field_name("name"))


def _qualified(anchor, name: str, grammar: Grammar) -> str:
    scopes = []
    node = anchor.parent
    while node is not None:
        if node.type in grammar.scopes and node.child_by_field_name("name") is not None:
            scopes.append(_text(node.child_by_field_name("name")))
        node = node.parent
    return ".".join([*reversed(scopes), name])


def _source_of(source: bytes, start: int, end: int) -> str:
    """`source[start:end]` as text, dedented as if it started at its line's beginning."""
    line_start = source.rfind(b"\n", 0, start) + 1
    indent = source[line_start:start]
    text = (indent if not indent.strip() else b"") + source[start:end]
    return textwrap.dedent(text.decode()).rstrip() + "\n"


def _without_comments(source: bytes, node, comment_query) -> str:
    """The node's source with its comments cut out and the lines left blank removed."""
    pieces, position = [], node.start_byte
    for comment in _captures(comment_query, node):
        if comment.start_byte >= position:
            pieces.append(source[position : comment.start_byte])
            position = comment.end_byte
    pieces.append(source[position : node.end_byte])
    line_start = source.rfind(b"\n", 0, node.start_byte) + 1
    indent = source[line_start : node.start_byte]
    text = (indent if not indent.strip() else b"") + b"".join(pieces)
    lines = [line.rstrip() for line in textwrap.dedent(text.decode()).splitlines()]
    return "\n".join(line for line in lines if line.strip()) + "\n"


class FunctionNode(NamedTuple):
    """A named function of a parsed file (see `functions_of`)."""

    anchor: object  # the statement its doc comment sits above (`export`, `const f = ...`)
    node: object  # the function itself
    short_name: str  # its own name (a Go method's receiver type included)
    name: str  # qualified by the enclosing classes: `Outer.Inner.method`


def parse(source: bytes, language: str):
    """`(source, tree)`: the source with a UTF-8 BOM and CRLF line ends normalised (tree
    byte offsets refer to it), and its tree-sitter tree. Check `tree.root_node.has_error`."""
    parser, _, _ = parser_for(language)
    source = source.removeprefix(b"\xef\xbb\xbf").replace(b"\r\n", b"\n")
    return source, parser.parse(source)


def functions_of(tree, language: str) -> Iterator[FunctionNode]:
    """Every named function or method of a tree, in source order (unnamed function
    expressions, callbacks for instance, are not units and are left out)."""
    grammar = GRAMMARS[language]
    _, function_query, _ = parser_for(language)
    for node in _captures(function_query, tree.root_node):
        found = _function_anchor(node, language)
        if found is not None:
            anchor, short_name = found
            yield FunctionNode(anchor, node, short_name, _qualified(anchor, short_name, grammar))


def doc_comment(function: FunctionNode, language: str) -> str | None:
    """The raw text of the doc comment directly above a function, or None."""
    return _doc_comment(function.anchor, GRAMMARS[language])


def function_source(source: bytes, function: FunctionNode) -> str:
    """A function's source from its anchor to its end (without the doc comment), dedented."""
    return _source_of(
        source, function.anchor.start_byte, max(function.anchor.end_byte, function.node.end_byte)
    )


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
                "code_no_comments": _without_comments(source, function.anchor, comment_query),
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


def iter_tree(path: str, prefixes: Sequence[str] = ("",)) -> Iterator[tuple[str, bytes]]:
    """`(relative path, contents)` of the files of a directory, `.deb`, zip or tar archive,
    whose relative paths start with one of `prefixes`, in sorted (archive) order.

    In a `.deb`, a prefix `ARCHIVE!/BELOW` reads the members below `BELOW` of the zip or tar
    archive `ARCHIVE` that the package ships (`usr/lib/jvm/openjdk-17/lib/src.zip!/java.base/`).
    """
    prefixes = tuple(prefixes) or ("",)
    if os.path.isdir(path):
        for directory, subdirs, names in os.walk(path):
            subdirs.sort()
            for name in sorted(names):
                full = os.path.join(directory, name)
                relative = os.path.relpath(full, path).replace(os.sep, "/")
                if relative.startswith(prefixes) and os.path.isfile(full):
                    with open(full, "rb") as f:
                        yield relative, f.read()
    elif path.endswith(".deb"):
        inner = {}
        for prefix in prefixes:
            if "!/" in prefix:
                archive, below = prefix.split("!/", 1)
                inner.setdefault(archive, []).append(below)
        outer = tuple(p for p in prefixes if "!/" not in p)
        for name, data in debian_packages.iter_deb_files(path):
            if name in inner:
                yield from _iter_archive(io.BytesIO(data), tuple(inner[name]), f"{name}!/")
            elif outer and name.startswith(outer):
                yield name, data
    elif zipfile.is_zipfile(path) or tarfile.is_tarfile(path):
        with open(path, "rb") as f:
            yield from _iter_archive(f, prefixes, "")
    else:
        raise ValueError(f"{path}: not a directory, .deb, zip or tar archive")


def _iter_archive(file, prefixes: tuple[str, ...], shown_prefix: str):
    """The members of a zip or tar archive (an open binary file) below `prefixes`."""
    if zipfile.is_zipfile(file):
        with zipfile.ZipFile(file) as archive:
            for info in sorted(archive.infolist(), key=lambda i: i.filename):
                if not info.is_dir() and info.filename.startswith(prefixes):
                    yield shown_prefix + info.filename, archive.read(info)
        return
    file.seek(0)
    with tarfile.open(fileobj=file) as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            name = member.name.removeprefix("./")
            if member.isfile() and name.startswith(prefixes):
                yield shown_prefix + name, archive.extractfile(member).read()


class DebianSource(NamedTuple):
    """A pinned `.deb` of real source code: which files of it to read, in which language."""

    deb: PinnedDeb
    source_package: str  # the Debian source package: the split key
    language: str
    prefixes: tuple[str, ...]  # installed paths to read (see `iter_tree` for zips inside)

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


def _pin(package, version, sha256, source, language, *prefixes) -> DebianSource:
    return DebianSource(PinnedDeb(package, version, sha256), source, language, prefixes)


# The default corpus: a few source packages per language, in one of the three splits each
# (the comment after each pin is the source package's bucket: 0 test, 1 validation, else
# train). Java has no test package: Debian ships little Java source (most `lib*-java`
# packages hold compiled jars), and OpenJDK (bucket 1) contributes java.util only, to keep
# validation from outgrowing train. Prefixes keep to each package's own source tree.
GO = "usr/share/gocode/src/"
DEFAULT_PACKAGES = (
    _pin("golang-1.19-src", "1.19.8-2",  # 4
         "2dfa82fe4f08f4e0193c532e561af4c91871f5235608f04f2bb8d57bb288df5a",
         "golang-1.19", "go", "usr/share/go-1.19/src/"),
    _pin("golang-github-cilium-ebpf-dev", "0.9.1-1",  # 1
         "5b02de14302bd2790f0ca35a9e499c35caa48df1b262e1f70f6d1246ce70fe01",
         "golang-github-cilium-ebpf", "go", GO),
    _pin("golang-gocloud-dev", "0.23.0-1",  # 1
         "65735f8c1f43a4cea48420afb6af91ce8935cf48de33088148933f0bb6c942fc",
         "golang-gocloud", "go", GO),
    _pin("golang-github-xanzy-go-gitlab-dev", "0.73.1-2",  # 0
         "609c6948d50bd42a9f979a032d71e7ce1ff8510e456871e2a2a943fcd6ba4fa5",
         "golang-github-xanzy-go-gitlab", "go", GO),
    _pin("golang-google-protobuf-dev", "1.28.1-3",  # 0
         "8421baafafb4eb08d191fa1a09449bae40eda04aee82a55f827c52226c7abfc0",
         "golang-google-protobuf", "go", GO),
    _pin("bazel-bootstrap-source", "4.2.3+ds-9",  # 9
         "5267689b1cb59438997f063b05420748131774ae51a514f12ca7f18722248b00",
         "bazel-bootstrap", "java", "usr/src/bazel-bootstrap/src/main/"),
    _pin("bsh-src", "2.0b4-20",  # 8
         "8bc67e9514560ef9e15beff101ed1ffb54a448588c2403987f407cd11547c00d",
         "bsh", "java", "usr/src/bsh-src/bsh.tar.gz!/"),
    _pin("openjdk-17-source", "17.0.21.1+2-1~deb12u1",  # 1
         "5106aa3881e3b49568823ebdfc3755d4043f6f53bbfc996d0efee03172dc0a9b",
         "openjdk-17", "java", "usr/lib/jvm/openjdk-17/lib/src.zip!/java.base/java/util/"),
    _pin("libjs-openlayers", "2.13.1+ds2-10",  # 2
         "595e2b2ccd89d33ffc046d1f3d9a8a5bac466629166aa3a67f2fa5a0f682fa03",
         "openlayers", "javascript", "usr/share/javascript/openlayers/"),
    _pin("eslint", "6.4.0~dfsg+~6.1.9-7",  # 3
         "828bc72bd508a3a1ca830d210f786fe0c3a49bba6793f57b444f804eeb836339",
         "eslint", "javascript", "usr/share/nodejs/eslint/"),
    _pin("webpack", "5.75.0+dfsg+~cs17.16.14-1+deb12u1",  # 4
         "a1deae5e5884939189a0eb196072c707e41a0e49049ff325b89ced21aede5703",
         "node-webpack", "javascript", "usr/share/nodejs/webpack/"),
    _pin("libjs-three", "111+dfsg1-3",  # 5
         "1d04680b4ed560b851c63e7691ffe3a37307ad0858ea4e50e92b6147e575df84",
         "three.js", "javascript", "usr/share/javascript/three/"),
    _pin("node-rx", "4.1.0+dfsg1-3",  # 1
         "031d9ffc618e5e6c0e46fdb234ea23acec1b3022a866924824d7a77ec66dac83",
         "node-rx", "javascript", "usr/share/nodejs/rx/"),
    _pin("node-lib0", "0.2.58-1",  # 1
         "e2cad5823aec7c05540e41810364e652a28ed4ef2cae852a9c785a849d6ad536",
         "node-lib0", "javascript", "usr/share/nodejs/lib0/"),
    _pin("node-lodash", "4.17.21+dfsg+~cs8.31.198.20210220-9+deb12u1",  # 0
         "fc4ec366e6d88f86afb2ca4f5a9a31031899e9d4524e8041ca17ff0057d62a66",
         "node-lodash", "javascript", "usr/share/nodejs/lodash/"),
    _pin("php-doctrine-orm", "2.14.1+dfsg-1",  # 4
         "3546996a38cf87c87e3651c4365de0d1356003b3e7931191d00d816d92658115",
         "doctrine", "php", "usr/share/php/"),
    _pin("php-phpseclib3", "3.0.19-1+deb12u6",  # 2
         "0bb8c9a03ac30f90230d71cce6d5dd26fa0049cdc59f907a94ece2fe415417d6",
         "php-phpseclib3", "php", "usr/share/php/"),
    _pin("php-nesbot-carbon", "2.65.0-1+deb12u1",  # 5
         "5c2ba06fd1f168c8432027eeb65cd99975dccba298c86a533d3a24901d16f086",
         "php-nesbot-carbon", "php", "usr/share/php/"),
    _pin("php-htmlpurifier", "4.11.0-1",  # 3
         "662f40cab5796c5bc43411e6620fa9de1271a02d4f1b97109990a6f33616ac6e",
         "php-htmlpurifier", "php", "usr/share/php/"),
    _pin("php-symfony-console", "5.4.53+dfsg-0+deb12u1",  # 1
         "64bd4cbdd9556ee3fd212e444a8df4aa0af00e09c81abb8634eff819a7bab62b",
         "symfony", "php", "usr/share/php/"),
    _pin("php-symfony-validator", "5.4.53+dfsg-0+deb12u1",  # 1
         "c589469410b680affeab02407aa5d31c1f35131a09b95ea53b6dd5069bbf6c1b",
         "symfony", "php", "usr/share/php/"),
    _pin("php-doctrine-dbal", "3.6.1+dfsg-1",  # 0
         "735ec7daf33658e7defecced1b4bb76eb2bf6883283747366f743ada25f5dd7f",
         "php-doctrine-dbal", "php", "usr/share/php/"),
    _pin("libruby3.1", "3.1.7+really3.1.2-0+deb12u1",  # 8
         "16f896fdaba2eeb238171f2914f9a81a7e947e13f8ce77fcb107da4ba24c9533",
         "ruby3.1", "ruby", "usr/lib/ruby/3.1.0/"),
    _pin("ruby-activesupport", "2:6.1.7.10+dfsg-1~deb12u4",  # 9
         "6c13af0c24c451d46fe6f898d5803a637d1ab5daba655a6c298c2300c1aea3a9",
         "rails", "ruby", "usr/share/rubygems-integration/all/gems/"),
    _pin("ruby-activerecord", "2:6.1.7.10+dfsg-1~deb12u4",  # 9
         "26b3d6f69815ba47be52f15a00f34c575a3f1f9851adc931373e41344434571f",
         "rails", "ruby", "usr/share/rubygems-integration/all/gems/"),
    _pin("ruby-sequel", "5.63.0-1",  # 1
         "2aa39e0a84fd91a802f28223e8146d5d43d9f742e5d6e33c13381edc28a42d85",
         "ruby-sequel", "ruby", "usr/lib/ruby/vendor_ruby/"),
    _pin("ruby-mail", "2.7.1+dfsg1-2",  # 0
         "3c146bdbd9d9b1cea3e2cb11ac5e1ac1e1deacee0994dee492b74912013e8075",
         "ruby-mail", "ruby", "usr/lib/ruby/vendor_ruby/"),
)  # fmt: skip


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
            files = iter_tree(path, source.prefixes)
            languages, package = (source.language,), source.source_package
        else:
            files, languages, package = iter_tree(source.path), source.languages, source.name
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
