"""Every function and method of a source file, as units to search: Python by `ast`; Go, Java,
JavaScript, PHP and Ruby by the tree-sitter grammars of `tree_sitter_code`.

Unlike the corpus builders (`python_code`, `tree_sitter_code`), which keep only documented
functions and split each into a (docstring, code) pair, this keeps every named function,
documented or not, nested or not, with its documentation in its text: what a search over a
code base should find.

Example:
  with open("pkg/mod.py", "rb") as f:
      for function in functions_in_file(f.read(), "pkg/mod.py"):
          print(function.line, function.name)   # 12 Parser.parse

A file that is not UTF-8, contains NUL bytes or does not parse raises `UnreadableSource`
naming the reason (`non_utf8`, `binary`, `syntax_error`); callers skip and count it.
"""

from __future__ import annotations

import ast
import os
import textwrap
from collections.abc import Iterator
from typing import NamedTuple

from data_pipelines import code_grammars

PYTHON_EXTENSIONS = (".py",)


class SourceFunction(NamedTuple):
    """One function or method of a file."""

    name: str  # qualified by enclosing classes and functions: `Parser.parse`, `main.helper`
    line: int  # 1-based line of the `def` (or of the declaration a function is assigned in)
    end_line: int  # 1-based last line
    language: str  # `python`, or a key of `code_grammars.GRAMMARS`
    text: str  # its source, documentation included (docstring, or the doc comment above)


class UnreadableSource(ValueError):
    """A file that cannot be read as source code; `reason` names why (a summary key)."""

    def __init__(self, path: str, reason: str, detail: str = ""):
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))
        self.reason = reason


def language_of(path: str) -> str | None:
    """The language of a source file by its extension; None for other files."""
    if os.path.splitext(path)[1] in PYTHON_EXTENSIONS:
        return "python"
    return code_grammars.language_of(path)


def functions_in_file(data: bytes, path: str) -> list[SourceFunction]:
    """The functions of one file's bytes, in source order ([] for a file of no language).

    Raises:
      UnreadableSource: the file is binary, not UTF-8, or does not parse.
    """
    language = language_of(path)
    if language is None:
        return []
    if b"\0" in data:
        raise UnreadableSource(path, "binary")
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UnreadableSource(path, "non_utf8", str(e)) from None
    if language == "python":
        return _python_functions(source, path)
    return _tree_sitter_functions(data, language, path)


def _python_functions(source: str, path: str) -> list[SourceFunction]:
    try:
        tree = ast.parse(source, filename=path)
    except (SyntaxError, ValueError) as e:
        raise UnreadableSource(path, "syntax_error", str(e)) from None
    lines = source.splitlines(keepends=True)
    found = []
    for name, node in _python_defs(tree, ()):
        start = min([node.lineno] + [d.lineno for d in node.decorator_list])
        text = textwrap.dedent("".join(lines[start - 1 : node.end_lineno]))
        found.append(SourceFunction(name, node.lineno, node.end_lineno, "python", text))
    return sorted(found, key=lambda f: (f.line, f.name))


def _python_defs(node: ast.AST, scope: tuple[str, ...]) -> Iterator[tuple[str, ast.AST]]:
    """`(qualified name, node)` of every def below `node`, at any depth: methods, nested
    functions, and defs inside `if`, `try` or `with` blocks (`if TYPE_CHECKING:` ...)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            yield ".".join([*scope, child.name]), child
            yield from _python_defs(child, (*scope, child.name))
        elif isinstance(child, ast.ClassDef):
            yield from _python_defs(child, (*scope, child.name))
        else:
            yield from _python_defs(child, scope)


def _tree_sitter_functions(data: bytes, language: str, path: str) -> list[SourceFunction]:
    source, tree = code_grammars.parse(data, language)
    if tree.root_node.has_error:
        # tree-sitter recovers from errors, but the recovered tree may misplace functions.
        raise UnreadableSource(path, "syntax_error")
    found = []
    for function in code_grammars.functions_of(tree, language):
        text = code_grammars.function_source(source, function)
        comment = code_grammars.doc_comment(function, language)
        if comment:
            text = textwrap.dedent(comment).rstrip() + "\n" + text
        found.append(
            SourceFunction(
                function.name,
                function.anchor.start_point.row + 1,
                function.node.end_point.row + 1,
                language,
                text,
            )
        )
    return found
