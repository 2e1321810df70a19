"""Go/Java/JavaScript/PHP/Ruby (doc comment, function) pairs with tree-sitter."""

import argparse
import collections
import hashlib
import io
import os
import shutil
import socket
import tarfile
import zipfile

import pytest

from cpt_jax import downloads
from cpt_jax.files import sha256_of
from data_pipelines import archives, code_grammars, corpus, debian_packages
from data_pipelines import tree_sitter_code as tsc

FIXTURES = os.path.join(os.path.dirname(__file__), "data", "tree_sitter")
QUIET = {"log": lambda *_: None}

# The (name, query) pairs of each fixture, in source order, known from reading the files.
EXPECTED = {
    "ring.go": [
        ("New", "New returns an empty buffer that holds at most capacity values."),
        ("Buffer.Push", "Push appends v, overwriting the oldest value when the buffer is full."),
        ("Buffer.Pop", "Pop removes and returns the oldest value."),
        ("Buffer.Cap", "Cap is short."),
    ],
    "Inventory.java": [
        ("Inventory.Inventory", "Creates an empty inventory."),
        ("Inventory.add", "Adds amount units of an item, creating it if needed."),
        ("Inventory.count", "Returns the number of units of item, or zero."),
        ("Inventory.Comparison.same", "Whether the two inventories hold the same items."),
    ],
    "cart.js": [
        ("total", "Adds up the prices of the items in a cart."),
        ("formatPrice", "Formats a price in cents as a string with two decimals."),
        ("Cart.constructor", "Creates an empty cart for one customer."),
        ("Cart.add", "Puts an item into the cart and returns the cart."),
        ("Cart.prototype.clear", "Removes every item from the cart at once."),
        ("isEmpty", "Tells whether a cart has no items at all."),
    ],
    "Money.php": [
        ("convert", "Converts an amount between two currencies at a fixed rate."),
        ("Money.__construct", "Creates an amount from a number of cents and a currency code."),
        ("Money.add", "Adds another amount of the same currency and returns the sum."),
    ],
    "stack.rb": [
        ("Collections.Stack.initialize", "Creates an empty stack; +items+ are pushed in order."),
        ("Collections.Stack.push", "Puts +item+ on top of the stack and returns the stack."),
        (
            "Collections.Stack.pop",
            "Removes and returns the top item. Raises an error when the stack is empty.",
        ),
        ("Collections.Stack.from", "Builds a stack from the elements of any enumerable."),
    ],
}
# What each fixture leaves out, by reason (also known from the files).
EXPECTED_SKIPPED = {
    "ring.go": {"no_doc_comment": 2, "short_function": 1, "test_function": 1},
    "Inventory.java": {"short_doc_comment": 1, "short_function": 1},
    "cart.js": {"no_doc_comment": 1, "short_function": 1},
    "Money.php": {"short_doc_comment": 1},
    "stack.rb": {"no_doc_comment": 1, "short_doc_comment": 1},
}


def _read(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


def _extract(name, path=None):
    skipped = collections.Counter()
    records = tsc.extract_file(_read(name), path or name, skipped)
    return records, skipped


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_pairs(name):
    records, skipped = _extract(name)
    assert [(r["name"], r["query"]) for r in records] == EXPECTED[name]
    assert dict(skipped) == EXPECTED_SKIPPED[name]
    for record in records:
        assert record["language"] == code_grammars.language_of(name)
        assert record["path"] == name
        assert set(record) == {
            "query", "document", "code_no_comments", "language", "path", "name", "lineno"
        }  # fmt: skip


def test_documents_are_the_functions_without_their_doc_comments():
    go = {r["name"]: r for r in _extract("ring.go")[0]}
    push = go["Buffer.Push"]
    assert push["lineno"] == 29
    assert push["document"].startswith("func (b *Buffer) Push(v int) {\n")
    assert push["document"].endswith("\t}\n}\n")
    assert "// wrap around" in push["document"]
    assert "wrap around" not in push["code_no_comments"]
    assert "go:noinline" not in push["document"] and "Push appends" not in push["document"]

    java = {r["name"]: r for r in _extract("Inventory.java")[0]}
    add = java["Inventory.add"]
    # Annotations belong to the method; the method is dedented to column 0.
    assert add["document"].startswith("@Deprecated\npublic void add(String item, int amount) {")
    assert add["lineno"] == 32 and "@param" not in add["document"]
    count = java["Inventory.count"]
    assert count["code_no_comments"] == (
        "public int count(String item) {\n    return counts.getOrDefault(item, 0);\n}\n"
    )

    js = {r["name"]: r for r in _extract("cart.js")[0]}
    assert js["formatPrice"]["document"].startswith("export const formatPrice = (cents) => {")
    assert js["Cart.prototype.clear"]["document"].endswith("return this;\n};\n")
    assert (
        js["Cart.add"]["document"] == "add(item) {\n  this.items.push(item);\n  return this;\n}\n"
    )
    assert js["isEmpty"]["document"].startswith("isEmpty: function (cart) {")

    php = {r["name"]: r for r in _extract("Money.php")[0]}
    assert php["Money.add"]["document"].startswith(
        "#[\\ReturnTypeWillChange]\npublic function add("
    )

    ruby = {r["name"]: r for r in _extract("stack.rb")[0]}
    assert ruby["Collections.Stack.from"]["document"].startswith("def self.from(enumerable)\n")
    assert ruby["Collections.Stack.initialize"]["lineno"] == 7


@pytest.mark.parametrize(
    "comment, language, query",
    [
        # Tags end the paragraph; inline tags keep their text (or a link's label); HTML goes.
        (
            "/**\n * Returns the {@code size} of <i>this</i> list, see {@link List#size}.\n"
            " * @return the size\n */",
            "java",
            "Returns the size of this list, see List.size.",
        ),
        ("/** Sorts {@link #items the items} in place. */", "java", "Sorts the items in place."),
        (
            "/**\n * <p>First paragraph here.\n * <p>Second one.\n */",
            "java",
            "First paragraph here.",
        ),
        (
            "/** Keeps List<String> types and a &lt; b. */",
            "java",
            "Keeps List<String> types and a < b.",
        ),
        ("/**\n * @param x only tags\n */", "php", ""),
        ("/**\n * {@inheritdoc}\n */", "php", ""),
        # Natural Docs (OpenLayers): the heading line and Parameters sections go.
        (
            "/**\n * APIMethod: getExtent\n * Returns the <OpenLayers.Bounds> of the map.\n *\n"
            " * Parameters:\n * x - {Number}\n */",
            "javascript",
            "Returns the OpenLayers.Bounds of the map.",
        ),
        ("// Read reads data.\n//\n// More detail here.", "go", "Read reads data."),
        ("//go:noinline\n// Fast adds two ints quickly.", "go", "Fast adds two ints quickly."),
        ("# call-seq:\n#   s.f(x) -> y\n#\n# Applies f to x.", "ruby", "Applies f to x."),
        ("# :call-seq: s.g -> y\n#\n## Returns g of s.", "ruby", "Returns g of s."),
        ("# rubocop:disable Metrics/AbcSize\n# Does a lot of work.", "ruby", "Does a lot of work."),
        ("# TODO: make this much faster", "ruby", ""),
    ],
)
def test_doc_query(comment, language, query):
    assert code_grammars.doc_query(comment, language) == query


@pytest.mark.parametrize(
    "path, reason",
    [
        ("pkg/ring_test.go", "test_file"),
        ("src/test/java/org/x/Foo.java", "test_file"),
        ("org/x/TestFoo.java", "test_file"),
        ("org/x/FooTest.java", "test_file"),
        ("lib/foo.spec.js", "test_file"),
        ("lib/test.js", "test_file"),
        ("spec/models/user_spec.rb", "test_file"),
        ("lib/user_test.rb", "test_file"),
        ("tests/MoneyTest.php", "test_file"),
        ("pkg/testdata/x.go", "test_file"),
        ("cmd/vendor/golang.org/x/y.go", "vendored_file"),
        ("web/node_modules/left-pad/index.js", "vendored_file"),
        ("third_party/x/y.rb", "vendored_file"),
        ("usr/lib/ruby/vendor_ruby/mail.rb", None),  # `vendor_ruby` is not `vendor`
        ("src/testing/testing.go", None),  # Go's `testing` package is a library
        ("lib/contest.js", None),
    ],
)
def test_excluded_paths(path, reason):
    assert tsc.excluded_reason(path) == reason


def test_bad_files_are_skipped_and_counted():
    skipped = collections.Counter()
    latin1 = "// Größe returns the size in bytes.\nfunc Größe() {\n\treturn\n}\n".encode("latin-1")
    assert tsc.extract_file(b"package x\n" + latin1, "x.go", skipped) == []
    broken = _read("ring.go").replace(
        b"func (b *Buffer) Pop() (int, error) {", b"func (b *Buffer) Pop( {"
    )
    assert tsc.extract_file(broken, "ring.go", skipped) == []
    generated = b"// Code generated by protoc-gen-go. DO NOT EDIT.\n\n" + _read("ring.go")
    assert tsc.extract_file(generated, "ring.pb.go", skipped) == []
    assert tsc.extract_file(_read("ring.go"), "ring/ring_test.go", skipped) == []
    assert tsc.extract_file(_read("cart.js"), "dist/cart.min.js", skipped) == []
    # A minified file under an ordinary name: the whole program on one line.
    minified = b"/** Adds two. */function a(b,c){return b+c}" + b"var d=1;" * 200
    assert tsc.is_minified(minified) and not tsc.is_minified(_read("cart.js"))
    assert tsc.extract_file(minified, "lib/bundle.js", skipped) == []
    assert tsc.extract_file(b"not source", "README.md", skipped) == []  # not counted
    assert dict(skipped) == {
        "non_utf8_file": 1,
        "parse_error_file": 1,
        "generated_file": 1,
        "test_file": 1,
        "minified_file": 2,
    }


def test_languages_filter_and_crlf():
    skipped = collections.Counter()
    assert tsc.extract_file(_read("ring.go"), "ring.go", skipped, languages=("java",)) == []
    assert not skipped
    crlf = tsc.extract_file(_read("stack.rb").replace(b"\n", b"\r\n"), "stack.rb", skipped)
    assert [r["query"] for r in crlf] == [q for _, q in EXPECTED["stack.rb"]]
    assert all("\r" not in r["document"] for r in crlf)


def test_grammars_come_from_the_wheels_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("tree-sitter extraction tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    code_grammars.parser_for.cache_clear()  # load every grammar again, under the patch
    try:
        for name in EXPECTED:
            records, _ = _extract(name)
            assert len(records) == len(EXPECTED[name])
    finally:
        code_grammars.parser_for.cache_clear()
    versions = tsc._grammar_versions()
    assert set(versions) == {
        "tree-sitter",
        "tree-sitter-go",
        "tree-sitter-java",
        "tree-sitter-javascript",
        "tree-sitter-php",
        "tree-sitter-ruby",
    }


def test_split_rule_and_default_packages():
    def bucket(name):
        return int(hashlib.sha1(name.encode()).hexdigest(), 16) % 10

    for name in ["node-lodash", "openjdk-17", "golang-1.19", "ruby-sequel", "x", "y", "z"]:
        expected = {0: "test", 1: "validation"}.get(bucket(name), "train")
        assert tsc.split_for_package(name) == expected
    assert tsc.split_for_package("node-lodash") == "test"
    assert tsc.split_for_package("openjdk-17") == "validation"
    assert tsc.split_for_package("golang-1.19") == "train"
    by_language = collections.defaultdict(set)
    for source in tsc.DEFAULT_PACKAGES:
        assert source.language in code_grammars.LANGUAGES and len(source.deb.sha256) == 64
        by_language[source.language].add(tsc.split_for_package(source.source_package))
    # Every language has training and validation code (and all but Java test code).
    assert {lang: "train" in s and "validation" in s for lang, s in by_language.items()} == {
        lang: True for lang in code_grammars.LANGUAGES
    }
    names = [s.unit_name for s in tsc.DEFAULT_PACKAGES]
    assert len(set(names)) == len(names)


def _tree(tmp_path):
    """A small source tree: the five fixtures, a test file, a vendored file, a non-UTF-8 file."""
    root = tmp_path / "shop"
    for name in EXPECTED:
        (root / "src").mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.join(FIXTURES, name), root / "src" / name)
    (root / "src" / "test").mkdir()
    shutil.copy(os.path.join(FIXTURES, "stack.rb"), root / "src" / "test" / "stack.rb")
    (root / "vendor").mkdir()
    shutil.copy(os.path.join(FIXTURES, "cart.js"), root / "vendor" / "cart.js")
    (root / "src" / "latin1.rb").write_bytes("# Größe der Liste.\n".encode("latin-1"))
    (root / "src" / "notes.txt").write_text("not source\n")
    return root


def test_iter_tree_reads_directories_and_archives(tmp_path):
    root = _tree(tmp_path)
    from_dir = dict(archives.iter_files(str(root)))
    assert "src/ring.go" in from_dir and "vendor/cart.js" in from_dir
    zip_path = tmp_path / "shop.zip"
    with zipfile.ZipFile(zip_path, "w") as z:
        for name, data in from_dir.items():
            z.writestr(name, data)
    tar_path = tmp_path / "shop.tar.gz"
    with tarfile.open(tar_path, "w:gz") as t:
        for name, data in from_dir.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    assert dict(archives.iter_files(str(zip_path))) == from_dir
    assert dict(archives.iter_files(str(tar_path))) == from_dir
    assert [n for n, _ in archives.iter_files(str(zip_path), ["src/r"])] == ["src/ring.go"]
    with pytest.raises(ValueError, match="not a directory"):
        list(archives.iter_files(str(root / "src" / "notes.txt")))


def test_build_from_a_local_tree(tmp_path):
    root = _tree(tmp_path)
    parser = argparse.ArgumentParser()
    parser.add_argument("--out_dir", default=str(tmp_path / "out"))
    tsc.add_arguments(parser)
    builder = tsc.builder_from_args(parser.parse_args(["--source", str(root)]))
    assert [u.name for u in builder.units()] == ["shop"]
    manifest = corpus.build(builder, str(tmp_path / "out"), **QUIET)
    expected = sum(len(pairs) for pairs in EXPECTED.values())
    split = tsc.split_for_package("shop")
    assert manifest["counts"] == {split: expected}
    skipped = collections.Counter({"test_file": 1, "vendored_file": 1, "non_utf8_file": 1})
    for counts in EXPECTED_SKIPPED.values():
        skipped.update(counts)
    assert manifest["skipped"] == dict(sorted(skipped.items()))
    assert manifest["source"]["sources"][0]["name"] == "shop"
    records = corpus.read_split(str(tmp_path / "out"), split)
    assert sorted((r["path"], r["name"]) for r in records) == sorted(
        (f"src/{file}", name) for file, pairs in EXPECTED.items() for name, _ in pairs
    )
    assert {r["source_package"] for r in records} == {"shop"}

    only_go = tsc.builder_from_args(parser.parse_args(["--source", str(root), "--language", "go"]))
    records = [r for u in only_go.units() for r in only_go.extract(u, collections.Counter())]
    assert [r["name"] for r in records] == [name for name, _ in EXPECTED["ring.go"]]

    debian_ruby = tsc.builder_from_args(parser.parse_args(["--language", "ruby"]))
    assert debian_ruby.sources and {s.language for s in debian_ruby.sources} == {"ruby"}
    assert debian_ruby.cache_dir == os.path.join(str(tmp_path / "out"), "downloads")


def test_debian_source_reads_a_pinned_deb_and_a_zip_inside(tmp_path):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("java.base/org/example/Inventory.java", _read("Inventory.java"))
        z.writestr("java.desktop/Other.java", _read("Inventory.java"))
    deb = debian_packages.build_deb(
        {
            "usr/share/gocode/src/example.org/ring/ring.go": _read("ring.go"),
            "usr/share/gocode/src/example.org/ring/ring_test.go": _read("ring.go"),
            "usr/share/doc/ring/example.go": _read("ring.go"),
            "usr/lib/jvm/src.zip": inner.getvalue(),
        },
        str(tmp_path / "built.deb"),
        "golang-example-dev",
        "1.0-1",
    )
    pin = downloads.PinnedDeb("golang-example-dev", "1.0-1", sha256_of(deb))
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(deb, cache / pin.filename)  # in the cache under its name: apt is not asked
    sources = [
        tsc.DebianSource(pin, "golang-example", "go", ("usr/share/gocode/src/",)),
        tsc.DebianSource(pin, "openjdk-example", "java", ("usr/lib/jvm/src.zip!/java.base/",)),
    ]
    builder = tsc.TreeSitterCodeBuilder(sources[:1], str(cache), **QUIET)
    skipped = collections.Counter()
    records = list(builder.extract(builder.units()[0], skipped))
    assert [r["name"] for r in records] == [name for name, _ in EXPECTED["ring.go"]]
    assert {r["source_package"] for r in records} == {"golang-example"}
    assert records[0]["path"] == "usr/share/gocode/src/example.org/ring/ring.go"
    assert skipped["test_file"] == 1
    java = tsc.TreeSitterCodeBuilder(sources[1:], str(cache), **QUIET)
    records = list(java.extract(java.units()[0], collections.Counter()))
    assert [r["path"] for r in records] == [
        "usr/lib/jvm/src.zip!/java.base/org/example/Inventory.java"
    ] * len(EXPECTED["Inventory.java"])
    described = java.description()["sources"][0]
    assert described["sha256"] == pin.sha256 and described["source_package"] == "openjdk-example"
