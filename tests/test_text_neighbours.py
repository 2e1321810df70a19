"""Text-neighbour pairs: chunking, boilerplate and near-duplicate filters, the generic builder
over files / JSONL / TFDS, pinned Debian packages, and the Python reST documentation corpus."""

import collections
import gzip
import json
import os

import pytest

from cpt_jax import downloads
from cpt_jax.files import sha256_of
from data_pipelines import corpus, debian_packages, python_docs, splits
from data_pipelines import text as tx
from data_pipelines import text_neighbours as tn

# Three unrelated prose paragraphs, written for these tests.
PROSE = [
    "The lighthouse keeper climbed the spiral stairs every evening at dusk. He trimmed the "
    "wick, polished the great lens until it gleamed, and wrote the weather into a leather "
    "logbook that his grandfather had started decades before.",
    "Sourdough bread needs patience more than skill. A starter of flour and water ferments for "
    "days, the dough rests overnight in a cool kitchen, and the loaf bakes in a heavy pot "
    "whose lid traps the steam that makes the crust crackle.",
    "Glaciers carve valleys shaped like the letter U. As the ice creeps downhill it plucks "
    "boulders from the bedrock and drags them along, grinding the valley floor smooth and "
    "leaving long scratches that geologists still read today.",
]
# An 80-word paragraph for the near-duplicate tests.
LONG = (
    "Every spring the river floods the low meadows beside the old mill, and the farmers move "
    "their sheep to the higher pastures on the eastern ridge. When the water recedes it "
    "leaves a layer of dark silt that makes the soil rich for the summer crops. The miller "
    "keeps a record of each flood carved into the doorframe, and the oldest mark, cut more "
    "than two centuries ago, sits almost at the height of a grown man's shoulder today."
)


def _edit(text: str, replacements: dict[int, str]) -> str:
    words = text.split()
    for index, word in replacements.items():
        words[index] = word
    return " ".join(words)


# ----------------------------------------------------------------------------- chunking


def test_split_paragraphs_keeps_lines_and_dedents():
    text = "First line\nsecond line  \n\n \t \n    indented\n      deeper\r\n\r\nlast"
    assert tx.split_paragraphs(text) == [
        "First line\nsecond line",
        "indented\n  deeper",
        "last",
    ]
    assert tx.split_paragraphs("\n\n  \n") == []


def test_token_windows():
    text = "a b c d e f g"
    assert tx.token_windows(text, 3) == ["a b c", "d e f", "g"]
    assert tx.token_windows("a b c d e f", 3) == ["a b c", "d e f"]
    assert tx.token_windows("a  b\nc d e", 3, stride=2) == ["a b c", "c d e"]
    assert tx.token_windows("a b", 5) == ["a b"]
    assert tx.token_windows("", 5) == []
    with pytest.raises(ValueError, match="stride"):
        tx.token_windows(text, 3, stride=0)


def test_neighbour_pairs_are_consecutive_earlier_first():
    assert tx.neighbour_pairs(["a", "b", "c"]) == [("a", "b"), ("b", "c")]
    assert tx.neighbour_pairs(["a"]) == []


# ----------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    "chunk, reason",
    [
        ("only four words here", "too_short"),
        ("12 34 56 78 90 == ++ -- ** a", "non_alphabetic"),
        ("links: https://example.org/a http://example.com/b www.example.net x@example.org", "url"),
        ("Copyright 2021 The Authors. All rights reserved worldwide.", "licence"),
        ("This program is distributed WITHOUT ANY WARRANTY of any kind.", "licence"),
        ("Table of Contents\nIntroduction to the subject matter at hand", "navigation"),
        ("Home | Documentation | Downloads | Community forum", "navigation"),
        ("Introduction to sailing ...... 3\nKnots and ropes ...... 17", "table_of_contents"),
        ("Installation\nQuick start\nConfiguration\nTroubleshooting guide", "list_of_short_lines"),
        (".. note that this is a reST comment\n   spanning an indented line", "rest_markup"),
        (".. _a-target:\n.. index:: single: keyword and more", "rest_markup"),
    ],
)
def test_boilerplate_reasons(chunk, reason):
    assert tx.boilerplate_reason(chunk) == reason
    assert tx.is_boilerplate(chunk)


def test_prose_is_not_boilerplate():
    for paragraph in [*PROSE, LONG, "The result is cached in memory for five minutes."]:
        assert tx.boilerplate_reason(paragraph) is None
    assert tx.boilerplate_reason("two words", min_words=2) is None


def test_near_duplicate_filter_catches_an_edited_copy_only():
    seen = tx.NearDuplicateFilter()
    assert seen.add_if_new(LONG)
    edited = _edit(LONG, {5: "stream", 40: "beans", 70: "older"})
    assert seen.similarity(LONG, edited) >= seen.threshold
    assert not seen.add_if_new(edited)
    assert not seen.add_if_new(LONG.upper())  # case and punctuation are ignored
    for paragraph in PROSE:
        assert seen.similarity(LONG, paragraph) < 0.2
        assert seen.add_if_new(paragraph)
    assert len(seen) == 4


def test_near_duplicate_filter_is_deterministic_and_seeded():
    a, b, c = tx.NearDuplicateFilter(), tx.NearDuplicateFilter(), tx.NearDuplicateFilter(seed=1)
    assert (a.signature(LONG) == b.signature(LONG)).all()
    assert not (a.signature(LONG) == c.signature(LONG)).all()
    assert a.signature("?!") is None and a.add_if_new("?!") and a.add_if_new("?!")


def test_filtered_pairs_drop_and_bridge():
    chunks = [PROSE[0], "Next topic", PROSE[1], _edit(PROSE[0], {3: "warden"}), PROSE[2]]
    skipped = collections.Counter()
    pairs = list(tx.filtered_pairs(chunks, skipped, tx.NearDuplicateFilter()))
    assert pairs == [(0, PROSE[0], PROSE[1]), (2, PROSE[1], PROSE[2])]
    assert skipped == {"chunk_too_short": 1, "chunk_near_duplicate": 1}
    assert list(tx.filtered_pairs([PROSE[0]], skipped)) == []
    assert skipped["document_under_two_chunks"] == 1


def test_split_for_id_uses_sha1_mod_10():
    # Buckets worked out with `printf %s ID | sha1sum`: b, m -> 0; e, l -> 1; a -> 2 ...
    expected = {"b": "test", "m": "test", "e": "validation", "l": "validation"}
    expected.update({"a": "train", "library/os.rst": "train", "x:1": "train", "p": "train"})
    for doc_id, split in expected.items():
        assert splits.split_by_hash(doc_id) == split, doc_id


# ----------------------------------------------------------------------------- generic builder


def _write_inputs(tmp_path):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "one.txt").write_text(f"{PROSE[0]}\n\n{PROSE[1]}\n\nshort\n\n{PROSE[2]}\n")
    (docs / "sub" / "two.md").write_text(f"{LONG}\n\n{PROSE[1]}\n\n{PROSE[0]}\n")
    (docs / ".hidden.txt").write_text(f"{PROSE[1]}\n\n{PROSE[2]}\n")
    (docs / "latin1.txt").write_bytes("caf\xe9 au lait\n\nencore".encode("latin-1"))
    (docs / "blob.bin").write_bytes(b"\0\1\2")
    lines = [
        json.dumps({"id": "d1", "body": f"{PROSE[2]}\n\n{LONG}"}),
        "{not json",
        json.dumps({"id": "d2"}),
        json.dumps({"id": "d3", "body": 7}),
        "",
        json.dumps({"body": f"{PROSE[1]}\n\n{PROSE[0]}"}),
    ]
    jsonl = tmp_path / "more.jsonl.gz"
    with gzip.open(jsonl, "wt") as f:
        f.write("\n".join(lines) + "\n")
    return str(docs), str(jsonl)


def test_builder_paragraphs_end_to_end(tmp_path):
    docs, jsonl = _write_inputs(tmp_path)
    builder = tn.TextNeighboursBuilder(
        [docs, jsonl], text_field="body", id_field="id", near_duplicate_threshold=None
    )
    assert [u.name for u in builder.units()] == ["0000-docs", "0001-more.jsonl.gz"]
    out = str(tmp_path / "out")
    manifest = corpus.build(builder, out, log=lambda *_: None)
    records = [r for split in manifest["counts"] for r in corpus.read_split(out, split)]
    got = {(r["doc_id"], r["position"], r["query"], r["document"], r["source"]) for r in records}
    assert got == {
        ("docs/one.txt", 0, PROSE[0], PROSE[1], "docs"),
        ("docs/one.txt", 1, PROSE[1], PROSE[2], "docs"),  # "short" dropped in between
        ("docs/sub/two.md", 1, PROSE[1], PROSE[0], "docs"),
        ("d1", 0, PROSE[2], LONG, "more.jsonl.gz"),
        # {"body": PROSE[1] -> PROSE[0]} has no id: skipped as missing_id_field.
    }
    for r in records:
        assert r["doc_id"] and splits.split_by_hash(r["doc_id"]) in manifest["counts"]
    assert manifest["skipped"] == {
        "binary_file": 1,
        "chunk_too_short": 1,
        "duplicate": 1,  # two.md's (LONG -> PROSE[1]): PROSE[1] is one.txt's first document
        "invalid_json": 1,
        "missing_id_field": 1,
        "missing_text_field": 1,
        "non_string_text": 1,
        "non_utf8_file": 1,
    }


def test_builder_windows_and_near_duplicates(tmp_path):
    words = LONG.split()[:24]
    (tmp_path / "a.txt").write_text(" ".join(words))
    (tmp_path / "b.txt").write_text(f"{LONG}\n\n{PROSE[0]}\n\n{_edit(LONG, {9: 'goats'})}\n")
    windows = tn.TextNeighboursBuilder([str(tmp_path / "a.txt")], mode="windows", window_words=10)
    skipped = collections.Counter()
    records = list(windows.extract(windows.units()[0], skipped))
    assert [(r["position"], r["query"], r["document"]) for r in records] == [
        (0, " ".join(words[:10]), " ".join(words[10:20]))
    ]
    assert skipped == {"chunk_too_short": 1}  # the last window has only 4 words
    paragraphs = tn.TextNeighboursBuilder([str(tmp_path / "b.txt")])
    skipped = collections.Counter()
    records = list(paragraphs.extract(paragraphs.units()[0], skipped))
    assert [(r["query"], r["document"]) for r in records] == [(LONG, PROSE[0])]
    assert skipped == {"chunk_near_duplicate": 1}


def test_builder_errors(tmp_path):
    with pytest.raises(ValueError, match="no documents"):
        tn.TextNeighboursBuilder([])
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        tn.TextNeighboursBuilder([str(tmp_path / "missing.txt")])
    with pytest.raises(ValueError, match="NAME:SPLIT"):
        tn.TextNeighboursBuilder(tfds=["mnist"])
    with pytest.raises(ValueError, match="mode"):
        tn.TextNeighboursBuilder([str(tmp_path)], mode="sentences")


def test_tfds_never_downloads(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    builder = tn.TextNeighboursBuilder(tfds=["mnist:train"], tfds_data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not prepared"):
        list(builder.extract(builder.units()[0], collections.Counter()))
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- Debian packages


@pytest.fixture
def fake_deb(tmp_path):
    files = {"usr/share/fake/a.txt": b"alpha", "usr/share/fake/sub/b.txt": b"beta", "etc/x": b"x"}
    deb = debian_packages.build_deb(files, str(tmp_path / "fake.deb"), "fake", "1:1.0-1")
    return deb, downloads.PinnedDeb("fake", "1:1.0-1", sha256_of(deb))


def test_iter_deb_files(fake_deb, tmp_path):
    deb, _ = fake_deb
    assert list(debian_packages.iter_deb_files(deb, "usr/share/fake/")) == [
        ("usr/share/fake/a.txt", b"alpha"),
        ("usr/share/fake/sub/b.txt", b"beta"),
    ]
    assert sorted(name for name, _ in debian_packages.iter_deb_files(deb)) == [
        "etc/x",
        "usr/share/fake/a.txt",
        "usr/share/fake/sub/b.txt",
    ]
    (tmp_path / "not.deb").write_bytes(b"not an archive")
    with pytest.raises(RuntimeError, match="not.deb"):
        list(debian_packages.iter_deb_files(str(tmp_path / "not.deb")))


# ----------------------------------------------------------------------------- reST

REST = """\
.. _intro-label:

*************
Intro to Tea
*************

.. module:: tea
   :synopsis: Brewing.

Tea is brewed from the leaves of :class:`~plants.Camellia` with :func:`os.boil`, see
:ref:`steeping` and :pep:`8` (or `the wiki <https://example.org/tea>`_ [#f1]_).
A line with **strong**, *emphasis*, ``*literal*`` and an\\ escape.

Here is an example::

   pot = Pot()
   pot.fill()

.. code-block:: python

   print("hidden")

.. note::
   Always warm the pot
   first.

--------------

* A bullet that
  continues here.

>>> brew()
'tea'

+-----+-----+
| a   | b   |
+-----+-----+

.. _steeping:

Steeping
========

.. index:: single: steeping

.. function:: steep(pot, minutes=3)
              steep_more(pot)
   :noindex:

   Leave the leaves in the water.

   .. versionchanged:: 3.2
      The *minutes* argument.

After the function comes more text.

.. This is a comment
   over two lines.

Expanded form ::

    literal

These are the last words here.
"""


def test_rest_paragraphs():
    labels = python_docs.rest_labels(REST)
    assert labels == {"intro-label": "Intro to Tea", "steeping": "Steeping"}
    skipped = collections.Counter()
    got = python_docs.rest_paragraphs(REST, labels, skipped)
    assert [(p.group, p.section, p.text) for p in got] == [
        (
            1,
            "Intro to Tea",
            "Tea is brewed from the leaves of Camellia with os.boil, see Steeping and PEP 8 "
            "(or the wiki). A line with strong, emphasis, *literal* and anescape.",
        ),
        (1, "Intro to Tea", "Here is an example:"),
        (1, "Intro to Tea", "Always warm the pot first."),
        (2, "Intro to Tea", "A bullet that continues here."),
        (4, "Steeping", "Leave the leaves in the water."),
        (4, "Steeping", "Changed in version 3.2: The minutes argument."),
        (5, "Steeping", "After the function comes more text."),
        (5, "Steeping", "Expanded form"),
        (5, "Steeping", "These are the last words here."),
    ]
    assert skipped == {"code_block": 4, "table": 1}


@pytest.mark.parametrize(
    "markup, text",
    [
        (":meth:`!dict.get`", "dict.get"),
        (":c:func:`PyList_New`", "PyList_New"),
        (":ref:`the guide <guide-label>`", "the guide"),
        (":ref:`unknown-label`", "unknown-label"),
        (":rfc:`2822#section-3`", "RFC 2822"),
        (":issue:`1234` and :gh:`99`", "bpo-1234 and gh-99"),
        ("`Sphinx`_ and `anonymous`__ links", "Sphinx and anonymous links"),
        ("|version| of *args* and ``**kwargs``", "version of args and **kwargs"),
        ("a *b* c * d", "a b c * d"),
    ],
)
def test_strip_rest_inline(markup, text):
    assert python_docs.strip_rest_inline(markup) == text


def _fake_python_docs(tmp_path):
    sources = python_docs.PYTHON_DOCS_SOURCES
    files = {
        f"{sources}tutorial/tea.rst.txt": REST.encode(),
        f"{sources}library/plain.rst.txt": f"Plain\n=====\n\n{PROSE[0]}\n\n{PROSE[1]}\n".encode(),
        f"{sources}license.rst.txt": f"{PROSE[2]}\n\n{LONG}\n".encode(),
        f"{sources}bad.rst.txt": b"caf\xe9\n",
        f"{sources}image.png": b"\x89PNG",
        "usr/share/doc/python3.11/html/index.html": b"<html></html>",
    }
    deb = debian_packages.build_deb(files, str(tmp_path / "d.deb"), "python3.11-doc", "3.11.2-1")
    pin = downloads.PinnedDeb("python3.11-doc", "3.11.2-1", sha256_of(deb))
    (tmp_path / "cache").mkdir()
    os.rename(deb, tmp_path / "cache" / pin.filename)
    return str(tmp_path / "cache"), pin


def test_python_docs_end_to_end(tmp_path):
    cache, pin = _fake_python_docs(tmp_path)
    builder = python_docs.PythonDocsBuilder(cache, pin=pin)
    out = str(tmp_path / "python_docs")
    manifest = corpus.build(builder, out, log=lambda *_: None)
    records = [r for split in manifest["counts"] for r in corpus.read_split(out, split)]
    got = sorted(
        (r["doc_id"], r["position"], r["section"], r["query"], r["document"]) for r in records
    )
    tea = "Tea is brewed from the leaves of Camellia with os.boil, see Steeping and PEP 8 "
    tea += "(or the wiki). A line with strong, emphasis, *literal* and anescape."
    # Too short (under 5 words): "Here is an example:", "Expanded form"; they are bridged.
    assert got == [
        ("library/plain.rst", 0, "Plain", PROSE[0], PROSE[1]),
        ("tutorial/tea.rst", 0, "Intro to Tea", tea, "Always warm the pot first."),
        (
            "tutorial/tea.rst",
            4,
            "Steeping",
            "Leave the leaves in the water.",
            "Changed in version 3.2: The minutes argument.",
        ),
        (
            "tutorial/tea.rst",
            6,
            "Steeping",
            "After the function comes more text.",
            "These are the last words here.",
        ),
    ]
    assert {r["source"] for r in records} == {"python3.11-doc"}
    for r in records:
        assert builder.split(r) == splits.split_by_hash(r["doc_id"])
    assert manifest["skipped"] == {
        "chunk_too_short": 2,
        "code_block": 4,
        "excluded_file": 1,  # license.rst
        "non_utf8_file": 1,
        "section_under_two_chunks": 1,  # the bullet, alone after a transition
        "table": 1,
    }


def test_tfds_prepared_split(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    import tensorflow as tf

    class Prepared:  # what tfds.builder returns for a prepared dataset, reduced to what is used
        data_dir = "/nowhere"
        info = type("Info", (), {"features": {"body": None, "key": None}})()

        def is_prepared(self):
            return True

        def as_dataset(self, split, shuffle_files):
            assert (split, shuffle_files) == ("train[:2]", False)
            texts = [f"{PROSE[0]}\n\n{PROSE[1]}", PROSE[2]]
            return tf.data.Dataset.from_tensor_slices({"body": texts, "key": ["k1", "k2"]})

    monkeypatch.setattr(tfds, "builder", lambda name, data_dir=None: Prepared())
    builder = tn.TextNeighboursBuilder(tfds=["docs:train[:2]"], text_field="body", id_field="key")
    assert [u.name for u in builder.units()] == ["0000-tfds-docs_train__2_"]
    skipped = collections.Counter()
    records = list(builder.extract(builder.units()[0], skipped))
    assert records == [
        {
            "query": PROSE[0],
            "document": PROSE[1],
            "source": "tfds:docs:train[:2]",
            "doc_id": "k1",
            "position": 0,
        }
    ]
    assert skipped == {"document_under_two_chunks": 1}
    wrong_field = tn.TextNeighboursBuilder(tfds=["docs:train[:2]"], text_field="text")
    with pytest.raises(ValueError, match="no feature 'text'"):
        list(wrong_field.extract(wrong_field.units()[0], skipped))


def test_cli_flags_build_the_builders():
    import argparse

    for name, module in (("text_neighbours", tn), ("python_docs", python_docs)):
        add_arguments, builder_from_args = module.add_arguments, module.builder_from_args
        parser = argparse.ArgumentParser()
        parser.add_argument("--out_dir", default=f"data/{name}")
        add_arguments(parser)
        argv = ["--input", __file__, "--mode", "windows"] if name == "text_neighbours" else []
        builder = builder_from_args(parser.parse_args(argv))
        assert builder.name == name
    assert builder.cache_dir == os.path.join("data", "python_docs", "downloads")
