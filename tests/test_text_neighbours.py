"""Text-neighbour pairs: chunking, boilerplate and near-duplicate filters, the generic builder
over files / JSONL / TFDS, pinned Debian packages, and the Python reST documentation corpus."""

import collections
import gzip
import hashlib
import json
import os

import pytest

from data_pipelines import corpus
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
    assert tn.split_paragraphs(text) == [
        "First line\nsecond line",
        "indented\n  deeper",
        "last",
    ]
    assert tn.split_paragraphs("\n\n  \n") == []


def test_token_windows():
    text = "a b c d e f g"
    assert tn.token_windows(text, 3) == ["a b c", "d e f", "g"]
    assert tn.token_windows("a b c d e f", 3) == ["a b c", "d e f"]
    assert tn.token_windows("a  b\nc d e", 3, stride=2) == ["a b c", "c d e"]
    assert tn.token_windows("a b", 5) == ["a b"]
    assert tn.token_windows("", 5) == []
    with pytest.raises(ValueError, match="stride"):
        tn.token_windows(text, 3, stride=0)


def test_neighbour_pairs_are_consecutive_earlier_first():
    assert tn.neighbour_pairs(["a", "b", "c"]) == [("a", "b"), ("b", "c")]
    assert tn.neighbour_pairs(["a"]) == []


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
    assert tn.boilerplate_reason(chunk) == reason
    assert tn.is_boilerplate(chunk)


def test_prose_is_not_boilerplate():
    for paragraph in [*PROSE, LONG, "The result is cached in memory for five minutes."]:
        assert tn.boilerplate_reason(paragraph) is None
    assert tn.boilerplate_reason("two words", min_words=2) is None


def test_near_duplicate_filter_catches_an_edited_copy_only():
    seen = tn.NearDuplicateFilter()
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
    a, b, c = tn.NearDuplicateFilter(), tn.NearDuplicateFilter(), tn.NearDuplicateFilter(seed=1)
    assert (a.signature(LONG) == b.signature(LONG)).all()
    assert not (a.signature(LONG) == c.signature(LONG)).all()
    assert a.signature("?!") is None and a.add_if_new("?!") and a.add_if_new("?!")


def test_filtered_pairs_drop_and_bridge():
    chunks = [PROSE[0], "Next topic", PROSE[1], _edit(PROSE[0], {3: "warden"}), PROSE[2]]
    skipped = collections.Counter()
    pairs = list(tn.filtered_pairs(chunks, skipped, tn.NearDuplicateFilter()))
    assert pairs == [(0, PROSE[0], PROSE[1]), (2, PROSE[1], PROSE[2])]
    assert skipped == {"chunk_too_short": 1, "chunk_near_duplicate": 1}
    assert list(tn.filtered_pairs([PROSE[0]], skipped)) == []
    assert skipped["document_under_two_chunks"] == 1


def test_split_for_id_uses_sha1_mod_10():
    for doc_id in ["a", "b", "library/os.rst", "x:1"]:
        bucket = int(hashlib.sha1(doc_id.encode()).hexdigest(), 16) % 10
        expected = {0: "test", 1: "validation"}.get(bucket, "train")
        assert tn.split_for_id(doc_id) == expected


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
        assert r["doc_id"] and tn.split_for_id(r["doc_id"]) in manifest["counts"]
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
