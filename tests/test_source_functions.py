"""Every function of a source file, for the search index (`data_pipelines.source_functions`)."""

import os
import re

import pytest

from data_pipelines import source_functions as sf

FIXTURES = os.path.join(os.path.dirname(__file__), "data", "tree_sitter")

PYTHON = '''\
"""A module."""
import functools


def plain(a, b):
    """Adds two numbers."""
    return a + b


@functools.cache
def decorated(n):
    return n * 2


class Outer:
    """A class."""

    def method(self):
        def helper():
            return 1
        return helper()

    class Inner:
        async def fetch(self):
            return None


if True:
    def conditional():
        pass

try:
    import missing
except ImportError:
    def fallback():
        pass

lambda_value = lambda: 1  # not a def: not a unit
'''


def test_python_functions_at_any_depth_with_their_text():
    found = sf.functions_in_file(PYTHON.encode(), "pkg/mod.py")
    names = [(f.name, f.line) for f in found]
    assert names == [
        ("plain", 5),
        ("decorated", 11),  # the def line, not the decorator's
        ("Outer.method", 18),
        ("Outer.method.helper", 19),
        ("Outer.Inner.fetch", 24),
        ("conditional", 29),
        ("fallback", 35),
    ]
    by_name = {f.name: f for f in found}
    assert by_name["plain"].text == (
        'def plain(a, b):\n    """Adds two numbers."""\n    return a + b\n'
    )  # the docstring stays: it is what a search should read
    assert by_name["decorated"].text.startswith("@functools.cache\ndef decorated(n):")
    assert by_name["Outer.method"].end_line == 21
    assert by_name["Outer.Inner.fetch"].text.startswith("async def fetch(self):")
    assert {f.language for f in found} == {"python"}


def test_go_and_javascript_functions_with_their_doc_comments():
    with open(os.path.join(FIXTURES, "ring.go"), "rb") as f:
        data = f.read()
    found = sf.functions_in_file(data, "ring/ring.go")
    lines = data.decode().splitlines()
    # Every `func` line of the file, read independently of the parser.
    func_lines = [i + 1 for i, line in enumerate(lines) if line.startswith("func ")]
    assert [f.line for f in found] == func_lines
    assert [f.name for f in found] == [
        "New",
        "Buffer.Push",
        "Buffer.Pop",
        "Buffer.Len",
        "Buffer.Cap",
        "Buffer.reset",  # undocumented: still a unit to search
        "detached",
        "TestLooksLikeATest",
    ]
    new = found[0]
    assert new.language == "go"
    assert new.text.startswith("// New returns an empty buffer")
    assert "func New(capacity int) *Buffer {" in new.text
    assert found[5].text.startswith("func (b *Buffer) reset() {")

    with open(os.path.join(FIXTURES, "cart.js"), "rb") as f:
        js = sf.functions_in_file(f.read(), "cart.js")
    assert {"total", "formatPrice", "Cart.add", "Cart.prototype.clear"} <= {f.name for f in js}
    assert all(f.language == "javascript" for f in js)


@pytest.mark.parametrize(
    "path, data, reason",
    [
        ("broken.py", b"def f(:\n    pass\n", "syntax_error"),
        ("image.py", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "binary"),
        ("latin1.py", "def f():\n    return 'caf\u00e9'\n".encode("latin-1"), "non_utf8"),
        ("broken.go", b"package x\nfunc (\n", "syntax_error"),
    ],
)
def test_unreadable_files_raise_with_a_reason(path, data, reason):
    with pytest.raises(sf.UnreadableSource, match=re.escape(path)) as e:
        sf.functions_in_file(data, path)
    assert e.value.reason == reason


def test_other_files_have_no_functions():
    assert sf.language_of("README.md") is None
    assert sf.functions_in_file(b"\0binary", "data.bin") == []
    assert sf.language_of("a/b.py") == "python" and sf.language_of("x.rb") == "ruby"
