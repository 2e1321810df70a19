"""Go, Java, JavaScript, PHP and Ruby parsed with tree-sitter: the grammars, the doc comment
above a function and what it says, and the named functions of a file.

Each grammar comes compiled in its PyPI wheel (`tree_sitter_go.language()`...): nothing is
downloaded at run time. Shared by the corpus of (doc comment, function) pairs
(`tree_sitter_code`) and the search index's function extraction (`source_functions`).

    source, tree = parse(data, "go")
    for function in functions_of(tree, "go"):
        print(function.name, doc_query(doc_comment(function, "go") or "", "go"))

Doc comments, per language: Go and Ruby, the run of `//` (`#`) line comments on the lines
directly above the declaration (Go directives `//go:...` dropped; Ruby's rdoc `call-seq:`
paragraph skipped); Java, JavaScript and PHP, the `/** ... */` block ending on the line
above (or on the declaration's line). Functions: Go functions and methods; Java methods and
constructors; JavaScript function declarations, class and object methods, and function or
arrow expressions that are the value of a one-variable declaration (`const f = () => ...`),
of an assignment statement (`Foo.prototype.bar = function ...`) or of an object property
(`bar: function ...`), at any depth; PHP functions and methods; Ruby `def` and `def self.x`.
Names are qualified by the enclosing classes (`Outer.Inner.method`; Go methods by their
receiver type: `Buffer.Write`).
"""

from __future__ import annotations

import functools
import html
import os
import re
import textwrap
from collections.abc import Iterator
from typing import NamedTuple


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


def without_comments(source: bytes, node, comment_query) -> str:
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
