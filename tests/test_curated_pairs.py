"""Curated pair corpora (`data_pipelines.curated_pairs`): the document drawn from another
field, repeated queries dropped per split, and refused input."""

import pytest
from corpora import GivenRecords

from data_pipelines import corpus
from data_pipelines.curated_pairs import CuratedPairsBuilder, repeated_queries


def _code(name, comment=""):
    code = f"def {name}(x):\n    return x + 1\n"
    with_comment = f"def {name}(x):\n    # {comment}\n    return x + 1\n" if comment else code
    return {"document": with_comment, "code_no_comments": code}


def _records():
    """Train: 'Initialize the weights' on 3 pairs (one with extra spaces), 'Add one' on 2;
    validation: 'Initialize the weights' once. Two train functions differ only in a comment,
    and one train function only in a comment from a validation function."""
    rows = [
        ("Initialize the weights", "init_a", "", "train"),
        ("Initialize  the weights", "init_b", "", "train"),
        ("Initialize the weights", "init_c", "", "train"),
        ("Add one", "add_a", "", "train"),
        ("Add one", "add_b", "", "train"),
        ("Increment x", "inc", "bump", "train"),
        ("Increment x by one", "inc", "other comment", "train"),
        ("Initialize the weights", "init_v", "", "validation"),
        ("Add one twice", "add_v", "note", "validation"),
        ("Adds one, twice", "add_v", "train note", "train"),
    ]
    return [
        {"query": q, **_code(name, comment), "name": name, "part": split}
        for q, name, comment, split in rows
    ]


def _part(record):
    return record["part"]


@pytest.fixture
def source(tmp_path):
    path = str(tmp_path / "source")
    corpus.build(GivenRecords("two_splits", _records(), split=_part), path, log=lambda *_: None)
    return path


def test_repeated_queries_counts_whitespace_normalised_texts_above_the_limit():
    queries = ["a b", "a  b", "c", " a b ", "c", "d"]
    assert repeated_queries(queries, 2) == {"a b"}
    assert repeated_queries(queries, 1) == {"a b", "c"}
    assert repeated_queries(queries, 3) == set()
    with pytest.raises(ValueError, match="at least 1"):
        repeated_queries(queries, 0)


def test_the_copy_trains_on_the_chosen_field_and_drops_repeated_queries_per_split(source, tmp_path):
    out = str(tmp_path / "curated")
    builder = CuratedPairsBuilder(source, document_field="code_no_comments", max_query_repeats=2)
    manifest = corpus.build(builder, out, log=lambda *_: None)
    # Train: the three 'Initialize the weights' pairs go (3 > 2); 'Add one' (2) stays; the two
    # 'inc' functions differ only in comments, so without them they are one document; the
    # train 'add_v' is validation's code once comments are gone. Validation: its one
    # 'Initialize the weights' pair is counted within validation, kept.
    assert manifest["skipped"]["repeated_query"] == 3
    assert manifest["skipped"]["duplicate"] == 1
    assert manifest["skipped"]["held_out_in_source"] == 1
    assert manifest["counts"] == {"train": 3, "validation": 2}
    train = corpus.read_split(out, "train")
    assert sorted(r["name"] for r in train) == ["add_a", "add_b", "inc"]
    for record in train + corpus.read_split(out, "validation"):
        assert record["document"] == record["code_no_comments"]
        assert "#" not in record["document"]
        assert record["document_id"] == corpus.text_id(record["document"])
        assert record["query_id"] == corpus.text_id(record["query"])
        originals = [r["document"] for r in _records() if r["name"] == record["name"]]
        assert record["source_document"] in originals
    assert manifest["source"]["source_fingerprint"] == corpus.read_manifest(source)["fingerprint"]


def _without_split(records):
    return sorted(sorted((k, v) for k, v in r.items() if k != "split") for r in records)


def test_the_defaults_copy_the_corpus_unchanged(source, tmp_path):
    out = str(tmp_path / "copy")
    manifest = corpus.build(CuratedPairsBuilder(source), out, log=lambda *_: None)
    assert manifest["counts"] == corpus.read_manifest(source)["counts"]
    for split in ("train", "validation"):
        copied = corpus.read_split(out, split)
        assert _without_split(copied) == _without_split(corpus.read_split(source, split))
        assert all(r["split"] == split for r in copied)


def test_a_train_only_copy_still_skips_code_held_out_in_the_source(source, tmp_path):
    out = str(tmp_path / "train_only")
    builder = CuratedPairsBuilder(
        source, document_field="code_no_comments", max_query_repeats=2, splits=["train"]
    )
    manifest = corpus.build(builder, out, log=lambda *_: None)
    assert manifest["counts"] == {"train": 3}
    assert manifest["skipped"]["held_out_in_source"] == 1
    validation_code = {r["code_no_comments"] for r in corpus.read_split(source, "validation")}
    assert not validation_code & {r["document"] for r in corpus.read_split(out, "train")}
    # Keeping the document field, the source's de-duplication already did that work.
    keep = CuratedPairsBuilder(source, max_query_repeats=2, splits=["train"])
    assert corpus.build(keep, str(tmp_path / "keep"), log=lambda *_: None)["counts"] == {"train": 5}


def test_negatives_and_their_ids_survive_a_copy_that_keeps_the_document(tmp_path):
    records = [dict(r, negatives=[f"def other_{i}(): pass"]) for i, r in enumerate(_records())]
    mined = str(tmp_path / "mined")
    corpus.build(GivenRecords("with_negatives", records, split=_part), mined, log=lambda *_: None)
    out = str(tmp_path / "copy")
    corpus.build(CuratedPairsBuilder(mined, max_query_repeats=2), out, log=lambda *_: None)
    for record in corpus.read_split(out, "train"):
        (negative,) = record["negatives"]
        assert negative.startswith("def other_")
        assert record["negative_ids"] == [corpus.text_id(negative)]


def test_bad_input_is_refused_with_the_reason(source, tmp_path):
    with pytest.raises(ValueError, match="'docstring' is not a string field.*code_no_comments"):
        CuratedPairsBuilder(source, document_field="docstring")
    with pytest.raises(ValueError, match="no split"):
        CuratedPairsBuilder(source, splits=["test"])
    with pytest.raises(ValueError, match="at least 1"):
        CuratedPairsBuilder(source, max_query_repeats=0)
    mined = str(tmp_path / "mined")
    records = [dict(r, negatives=["def other(): pass"]) for r in _records()]
    corpus.build(GivenRecords("with_negatives", records, split=_part), mined, log=lambda *_: None)
    with pytest.raises(ValueError, match="curate the corpus before mining"):
        CuratedPairsBuilder(mined, document_field="code_no_comments")


def test_the_build_cli_knows_the_corpus(source, tmp_path):
    from data_pipelines import build

    out = str(tmp_path / "cli")
    argv = ["curated_pairs", "--source", source, "--out_dir", out]
    argv += ["--document_field", "code_no_comments", "--max_query_repeats", "2"]
    assert build.main(argv) == 0
    assert corpus.read_manifest(out)["counts"] == {"train": 3, "validation": 2}


def test_docstring_example():
    import doctest

    from data_pipelines import curated_pairs

    assert doctest.testmod(curated_pairs).failed == 0
