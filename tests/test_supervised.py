"""Supervised pairs (BEIR, MS MARCO, NLI) from tiny hand-written files with known pairs."""

import gzip
import json
from collections import Counter

import pytest

from data_pipelines import build, corpus, supervised


def write_lines(path, lines):
    """Writes str lines as UTF-8 and bytes lines as they are, one per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines)
    path.write_bytes(data)
    return path


def jl(**fields):
    return json.dumps(fields)


def extract_all(builder):
    skipped = Counter()
    records = [r for unit in builder.units() for r in builder.extract(unit, skipped)]
    return records, dict(skipped)


def pairs(records):
    return [(r["query_key"], r["document_key"], r["split"], r["source"]) for r in records]


# ----------------------------------------------------------------------------- BEIR

DOCS = {
    "d1": "Felines Cats purr.",
    "d2": "Dogs bark at night.",
    "d3": "Birds They sing at dawn.",
    "8": "Numbers Eight is an integer id.",
    "d9": "Fish They swim in rivers.",
    "d10": "Only a negative.",
}
QUERIES = {
    "q1": "why do cats purr",
    "q2": "what do animals do at night",
    "q3": "when do birds sing",
    "q5": "where do fish swim",
    "q6": "do dogs bark",
}


@pytest.fixture
def beir_dir(tmp_path):
    root = tmp_path / "toy"
    write_lines(
        root / "corpus.jsonl",
        [
            jl(_id="d1", title="Felines", text="Cats purr."),
            jl(_id="d2", title="", text=" Dogs bark at night. "),
            jl(_id="d3", title="Birds", text="They sing at dawn."),
            '{"_id": "d4", "title": "Fish", "text": ',  # invalid JSON
            b'{"_id": "d5", "title": "Caf\xe9", "text": "x"}',  # latin-1, not UTF-8
            jl(_id="d6", title="No text"),  # missing field
            jl(_id="d7", title=" ", text="  "),  # empty (and referenced)
            jl(_id="d1", title="Again", text="Duplicate id."),
            jl(_id=8, title="Numbers", text="Eight is an integer id."),
            jl(_id="d9", title="Fish", text="They swim in rivers."),
            jl(_id="d10", text="Only a negative."),  # no title; only used as a negative
            jl(_id="d11", title="Unused", text="Never referenced."),
            "",
        ],
    )
    write_lines(
        root / "queries.jsonl",
        [
            jl(_id="q1", text="why do cats purr"),
            jl(_id="q2", text="what do animals do at night"),
            jl(_id="q3", text="when do birds sing"),
            jl(_id="q4"),  # missing text
            "not json",
            jl(_id="q5", text="where do fish swim"),
            jl(_id="q6", text="do dogs bark"),
            jl(_id="q7", text="unused query"),
        ],
    )
    write_lines(
        root / "qrels" / "train.tsv",
        [
            "query-id\tcorpus-id\tscore",
            "q1\td1\t1",  # 2
            "q2\td1\t1",  # 3: the same passage for another query
            "q2\td2\t2",  # 4
            "q1\td3\t0",  # 5: judged not relevant
            "q4\td2\t1",  # 6: unknown query (its line lacks text)
            "q1\tmissing\t1",  # 7: unknown document
            "q1\td7\t1",  # 8: unknown document (empty text)
            "q1 d2 1",  # 9: not tab-separated
            "q2\t8\t1",  # 10
            "q5\td9\t1",  # 11
            "q6\td2\t1",  # 12
        ],
    )
    write_lines(root / "qrels" / "test.tsv", ["query-id\tcorpus-id\tscore", "q3\td3\t1"])
    return root


BEIR_TRAIN = [
    ("q1", "d1", "train", "qrels/train.tsv:2"),
    ("q2", "d1", "train", "qrels/train.tsv:3"),
    ("q2", "d2", "train", "qrels/train.tsv:4"),
    ("q2", "8", "train", "qrels/train.tsv:10"),
    ("q5", "d9", "train", "qrels/train.tsv:11"),
    ("q6", "d2", "train", "qrels/train.tsv:12"),
]
BEIR_TRAIN_SKIPPED = {
    "corpus_duplicate_id": 1,
    "corpus_empty_text": 1,
    "corpus_invalid_json": 1,
    "corpus_missing_field": 1,
    "corpus_non_utf8": 1,
    "queries_invalid_json": 1,
    "queries_missing_field": 1,
    "qrels_malformed_row": 1,
    "qrels_not_relevant": 1,
    "qrels_unknown_document": 2,
    "qrels_unknown_query": 1,
}


def test_beir_pairs_texts_and_skips(beir_dir):
    records, skipped = extract_all(supervised.BeirBuilder([str(beir_dir)]))
    assert pairs(records) == BEIR_TRAIN + [("q3", "d3", "test", "qrels/test.tsv:2")]
    for r in records:
        assert r["query"] == QUERIES[r["query_key"]]
        assert r["document"] == DOCS[r["document_key"]]
        assert r["dataset"] == "toy" and "negatives" not in r
    assert skipped == BEIR_TRAIN_SKIPPED


def test_beir_hard_negatives(beir_dir, tmp_path):
    negatives = write_lines(
        tmp_path / "negatives.jsonl",
        [
            jl(qid="q1", neg=["d1", "d9", "d9", "d2"]),  # d1 is q1's positive; d9 repeated
            # Round-robin over systems: d3 (excluded by pos), d10, d9, d2.
            jl(qid="q2", pos=["d3"], neg={"bm25": ["d3", "d9"], "dense": ["d10", "d2"]}),
            jl(qid="q1", neg=["d3", "d10"]),  # a second line for q1
            jl(qid="q3", neg=["d9", "d10"]),  # q3 is a test query: not read
            jl(neg=["d2"]),  # no qid
            "{broken",
            jl(qid="q5", neg=["d6", "d2"]),  # d6 is not in the corpus (its line lacks text)
            # q6 has no line
        ],
    )
    builder = supervised.BeirBuilder(
        [str(beir_dir)], ["train"], hard_negatives=str(negatives), num_negatives=2
    )
    records, skipped = extract_all(builder)
    assert pairs(records) == BEIR_TRAIN[:4]
    assert [r["negatives"] for r in records] == [
        [DOCS["d9"], DOCS["d2"]],
        [DOCS["d10"], DOCS["d9"]],
        [DOCS["d10"], DOCS["d9"]],
        [DOCS["d10"], DOCS["d9"]],
    ]
    assert skipped == {
        **BEIR_TRAIN_SKIPPED,
        "hard_negatives_duplicate_qid": 1,
        "hard_negatives_invalid_json": 1,
        "hard_negatives_missing_field": 1,
        "negative_not_in_corpus": 1,
        "no_hard_negatives": 1,
    }

    # One system only: q2 keeps just d9 after excluding d3, fewer than 2: its pairs are skipped.
    builder = supervised.BeirBuilder(
        [str(beir_dir)],
        ["train"],
        hard_negatives=str(negatives),
        num_negatives=2,
        negative_systems=["bm25"],
    )
    records, skipped = extract_all(builder)
    assert pairs(records) == BEIR_TRAIN[:1]
    assert skipped["too_few_negatives"] == 3

    # A misspelt system is an error, not a corpus starved of negatives.
    builder = supervised.BeirBuilder(
        [str(beir_dir)],
        ["train"],
        hard_negatives=str(negatives),
        num_negatives=1,
        negative_systems=["bm_25"],
    )
    with pytest.raises(ValueError, match=r"system\(s\) \['bm_25'\] appear in no line"):
        extract_all(builder)


def test_corpus_is_streamed_once_keeping_only_needed_texts(beir_dir, monkeypatch, tmp_path):
    negatives = write_lines(tmp_path / "n.jsonl", [jl(qid="q6", neg=["d10"])])
    builder = supervised.BeirBuilder(
        [str(beir_dir)], ["train"], hard_negatives=str(negatives), num_negatives=1
    )
    opened, kept = Counter(), {}
    real_lines, real_documents = supervised.text_lines, supervised.BeirBuilder._documents

    def counting_lines(path, role, skipped):
        opened[path.rsplit("/", 1)[-1]] += 1
        return real_lines(path, role, skipped)

    def recording_documents(self, layout, wanted, skipped):
        kept.update(real_documents(self, layout, wanted, skipped))
        return kept

    monkeypatch.setattr(supervised.readers, "text_lines", counting_lines)
    monkeypatch.setattr(supervised.BeirBuilder, "_documents", recording_documents)
    records, _ = extract_all(builder)
    assert [r["document_key"] for r in records] == ["d2"]
    assert opened == {"train.tsv": 1, "n.jsonl": 1, "queries.jsonl": 1, "corpus.jsonl": 1}
    # The positives and the negative of the train pairs, nothing else of the corpus.
    assert sorted(kept) == ["8", "d1", "d10", "d2", "d9"]


def test_beir_errors_name_the_file(beir_dir, tmp_path):
    (beir_dir / "corpus.jsonl").rename(tmp_path / "elsewhere.jsonl")
    with pytest.raises(FileNotFoundError, match=r"toy/corpus\.jsonl: missing"):
        supervised.BeirBuilder([str(beir_dir)])
    (tmp_path / "elsewhere.jsonl").rename(beir_dir / "corpus.jsonl")
    with pytest.raises(FileNotFoundError, match=r"qrels/dev\.tsv: missing"):
        supervised.BeirBuilder([str(beir_dir)], ["dev"])
    with pytest.raises(ValueError, match="needs a --hard_negatives file"):
        supervised.BeirBuilder([str(beir_dir)], num_negatives=1)
    with pytest.raises(ValueError, match="exactly one --data_dir"):
        supervised.BeirBuilder([str(beir_dir)] * 2, hard_negatives=str(beir_dir / "corpus.jsonl"))
    with pytest.raises(ValueError, match="splits must be some of"):
        supervised.cli._parse_splits("train,validation")


def test_dedup_is_by_pair_not_by_document():
    builder = supervised.BeirBuilder.__new__(supervised.BeirBuilder)
    base = {"query": "q", "document": "same passage", "dataset": "toy"}
    one = builder.dedup_key({**base, "query_key": "q1", "document_key": "d1"})
    two = builder.dedup_key({**base, "query_key": "q2", "document_key": "d1"})
    again = builder.dedup_key(
        {**base, "query": "other text", "query_key": "q1", "document_key": "d1"}
    )
    assert one != two and one == again
    # Without ids: the texts (whitespace-normalised) and the negatives.
    text = {"query_key": "", "document_key": "", "dataset": "t", "query": "a  b", "document": "c"}
    assert builder.dedup_key(text) == builder.dedup_key({**text, "query": "a b"})
    assert builder.dedup_key({**text, "negatives": ["x"]}) != builder.dedup_key(
        {**text, "negatives": ["y"]}
    )


def test_beir_end_to_end_through_the_cli(beir_dir, tmp_path, monkeypatch):
    # A repeated qrels line is the same pair: the build's de-duplication drops it.
    with open(beir_dir / "qrels" / "test.tsv", "a") as f:
        f.write("q3\td3\t1\n")
    out = tmp_path / "out"
    assert build.main(["beir", "--data_dir", str(beir_dir), "--out_dir", str(out)]) == 0
    manifest = corpus.read_manifest(str(out))
    assert manifest["counts"] == {"train": 6, "test": 1}
    assert manifest["skipped"] == {**BEIR_TRAIN_SKIPPED, "duplicate": 1}
    assert manifest["source"]["datasets"][0]["splits"] == {"train": "train", "test": "test"}
    train = corpus.read_split(str(out), "train")
    assert pairs(train) == BEIR_TRAIN
    # d1 is the positive of q1 and q2: both pairs survive de-duplication.
    assert [r["document"] for r in train[:2]] == [DOCS["d1"]] * 2
    assert train[0]["document_id"] == train[1]["document_id"] != train[0]["query_id"]


# ----------------------------------------------------------------------------- MS MARCO


@pytest.fixture
def msmarco_dir(tmp_path):
    root = tmp_path / "msmarco"
    write_lines(
        root / "collection.tsv",
        [
            "0\tThe Manhattan Project produced the first atomic bombs.",
            "1\tPython is a programming language.",
            "2\tPythons are large snakes.",
            "no tab here",
            b"3\tCaf\xe9 latin-1",
            "1\tDuplicate passage one.",
            "4\tUnreferenced passage.",
            "5\tSnakes shed their skin.",
        ],
    )
    write_lines(
        root / "queries.train.tsv",
        ["100\twhat was the manhattan project", "101\twhat is python", "102\twhat are pythons"]
        + ["103\tlarge snakes"],
    )
    write_lines(root / "queries.dev.small.tsv", ["200\twhat do snakes shed"])
    write_lines(
        root / "qrels.train.tsv",
        ["100\t0\t0\t1", "101\t0\t1\t1", "102\t0\t2\t1", "103\t0\t2\t1", "bad row"]
        + ["104\t0\t1\t1", "100\t0\t3\t1"],
    )
    write_lines(root / "qrels.dev.small.tsv", ["200 0 5 1"])
    return root


def test_msmarco_pairs_and_skips(msmarco_dir):
    records, skipped = extract_all(supervised.MsMarcoBuilder(str(msmarco_dir)))
    assert pairs(records) == [
        ("100", "0", "train", "qrels.train.tsv:1"),
        ("101", "1", "train", "qrels.train.tsv:2"),
        ("102", "2", "train", "qrels.train.tsv:3"),
        ("103", "2", "train", "qrels.train.tsv:4"),
        ("200", "5", "validation", "qrels.dev.small.tsv:1"),
    ]
    assert records[1]["query"] == "what is python"
    assert records[1]["document"] == "Python is a programming language."
    assert records[4]["document"] == "Snakes shed their skin."
    assert skipped == {
        "corpus_duplicate_id": 1,
        "corpus_malformed_row": 1,
        "corpus_non_utf8": 1,
        "qrels_malformed_row": 1,
        "qrels_unknown_document": 1,
        "qrels_unknown_query": 1,
    }


def test_msmarco_hard_negatives_in_sentence_transformers_format(msmarco_dir, tmp_path):
    path = tmp_path / "msmarco-hard-negatives.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(jl(qid=100, pos=[0], neg={"bm25": [0, 4, 1], "ce": [5, 2]}) + "\n")
        f.write(jl(qid=102, neg={"bm25": [2, 1]}) + "\n")
    builder = supervised.MsMarcoBuilder(str(msmarco_dir), ["train"], hard_negatives=str(path))
    records, skipped = extract_all(builder)
    assert builder.num_negatives == 1  # the default with a negatives file
    assert [(r["query_key"], r["negatives"]) for r in records] == [
        ("100", ["Snakes shed their skin."]),  # round-robin: 0 (positive), 5, 4, 2, 1
        ("102", ["Python is a programming language."]),  # 2 is its positive
    ]
    assert skipped["no_hard_negatives"] == 2  # 101 and 103

    builder = supervised.MsMarcoBuilder(
        str(msmarco_dir), ["train"], hard_negatives=str(path), num_negatives=3
    )
    records, skipped = extract_all(builder)
    assert [r["negatives"] for r in records] == [
        ["Snakes shed their skin.", "Unreferenced passage.", "Pythons are large snakes."]
    ]
    assert skipped["too_few_negatives"] == 1


def test_msmarco_missing_files(msmarco_dir):
    (msmarco_dir / "queries.dev.small.tsv").unlink()
    with pytest.raises(FileNotFoundError, match=r"queries\.dev\.tsv: missing"):
        supervised.MsMarcoBuilder(str(msmarco_dir))
    assert supervised.MsMarcoBuilder(str(msmarco_dir), ["train"]).layouts[0].qrels[0][0] == "train"
    (msmarco_dir / "collection.tsv").unlink()
    with pytest.raises(FileNotFoundError, match=r"collection\.tsv: missing"):
        supervised.MsMarcoBuilder(str(msmarco_dir), ["train"])


def test_msmarco_triples(tmp_path):
    path = write_lines(
        tmp_path / "triples.train.small.tsv",
        [
            "q a\tpos a\tneg a",
            "q a\tpos a\tneg b",  # another negative: another triple
            "q a\tpos  a\tneg a",  # the first triple again (up to whitespace)
            "only two\tfields",
            "q b\t \tneg",
        ],
    )
    builder = supervised.MsMarcoTriplesBuilder([str(path)])
    records, skipped = extract_all(builder)
    assert [(r["query"], r["document"], r["negatives"]) for r in records] == [
        ("q a", "pos a", ["neg a"]),
        ("q a", "pos a", ["neg b"]),
        ("q a", "pos  a", ["neg a"]),
    ]
    assert {r["split"] for r in records} == {"train"}
    assert skipped == {"triples_malformed_row": 1, "triples_empty_text": 1}
    keys = [builder.dedup_key(r) for r in records]
    assert keys[0] == keys[2] != keys[1]
    with pytest.raises(ValueError, match="num_negatives 0 or 1"):
        supervised.MsMarcoTriplesBuilder([str(path)], num_negatives=2)


# ----------------------------------------------------------------------------- NLI


def snli(label, premise, hypothesis, **ids):
    return jl(gold_label=label, sentence1=premise, sentence2=hypothesis, **ids)


GUITAR = "A man plays guitar."


@pytest.fixture
def snli_file(tmp_path):
    return write_lines(
        tmp_path / "snli_1.0_dev.jsonl",
        [
            snli("entailment", GUITAR, "A person makes music.", captionID="c1", pairID="c1e"),
            snli("contradiction", GUITAR, "The man is asleep.", captionID="c1", pairID="c1c"),
            snli("neutral", GUITAR, "The man is famous.", captionID="c1", pairID="c1n"),
            snli("entailment", GUITAR, "Someone holds an instrument.", captionID="c1", pairID="e2"),
            snli("contradiction", GUITAR, "Nobody is playing.", captionID="c1", pairID="c2"),
            snli("contradiction", "Two dogs run.", "The dogs sleep."),
            snli("entailment", "A child reads.", "A kid looks at a book."),
            snli("-", "A child reads.", "The child is happy."),
            snli("maybe", "A child reads.", "The child is sad."),
            jl(sentence1="x"),
            "{broken",
            snli("entailment", " ", "x"),
        ],
    )


NLI_SKIPPED = {
    "nli_empty_text": 1,
    "nli_invalid_json": 1,
    "nli_missing_field": 1,
    "nli_neutral": 1,
    "nli_no_gold_label": 1,
    "nli_premise_too_few_contradictions": 1,
    "nli_premise_without_entailment": 1,
    "nli_unknown_label": 1,
}


def test_snli_simcse_triplets(snli_file):
    records, skipped = extract_all(supervised.NliBuilder([str(snli_file)]))
    assert [
        (r["query"], r["document"], r["negatives"], r["query_key"], r["document_key"])
        for r in records
    ] == [
        (GUITAR, "A person makes music.", ["The man is asleep."], "c1", "c1e"),
        (GUITAR, "Someone holds an instrument.", ["Nobody is playing."], "c1", "e2"),
    ]
    assert [(r["split"], r["source"], r["dataset"]) for r in records] == [
        ("validation", "snli_1.0_dev.jsonl:1", "snli_1.0_dev"),
        ("validation", "snli_1.0_dev.jsonl:4", "snli_1.0_dev"),
    ]
    assert skipped == NLI_SKIPPED

    records, _ = extract_all(supervised.NliBuilder([str(snli_file)], num_negatives=2))
    assert [r["negatives"] for r in records] == [
        ["The man is asleep.", "Nobody is playing."],
        ["Nobody is playing.", "The man is asleep."],
    ]
    records, skipped = extract_all(
        supervised.NliBuilder([str(snli_file)], num_negatives=0, split="train")
    )
    assert [(r["document"], r["split"], "negatives" in r) for r in records] == [
        ("A person makes music.", "train", False),
        ("Someone holds an instrument.", "train", False),
        ("A kid looks at a book.", "train", False),  # no contradiction needed
    ]
    assert "nli_premise_too_few_contradictions" not in skipped


def test_multinli_tsv_with_quotes(tmp_path):
    header = "gold_label\tsentence1_parse\tsentence1\tsentence2\tpromptID\tpairID"
    path = write_lines(
        tmp_path / "multinli_1.0_dev_mismatched.txt",
        [
            header,
            'entailment\t(ROOT)\tHe said "hi".\tHe spoke.\t7\t7e',
            'contradiction\t(ROOT)\tHe said "hi".\tHe was silent.\t7\t7c',
            "entailment\ttoo\tfew",
        ],
    )
    records, skipped = extract_all(supervised.NliBuilder([str(path)]))
    assert [(r["query"], r["document"], r["negatives"], r["query_key"]) for r in records] == [
        ('He said "hi".', "He spoke.", ["He was silent."], "7")
    ]
    assert records[0]["split"] == "validation"
    assert skipped == {"nli_malformed_row": 1}


def test_triplet_files(tmp_path):
    csv_path = write_lines(
        tmp_path / "allnli_train.csv",
        [
            "premise,good,bad1,bad2",
            '"A dog, wet, runs.",An animal moves.,A cat sleeps.,Nothing moves.',
            "A bird flies.,,x,y",  # empty positive
            "too,few",
        ],
    )
    builder = supervised.NliBuilder(
        [str(csv_path)],
        anchor_column="premise",
        positive_column="good",
        negative_columns=["bad1", "bad2"],
        num_negatives=2,
    )
    records, skipped = extract_all(builder)
    assert [(r["query"], r["document"], r["negatives"], r["source"]) for r in records] == [
        (
            "A dog, wet, runs.",
            "An animal moves.",
            ["A cat sleeps.", "Nothing moves."],
            "allnli_train.csv:2",
        )
    ]
    assert records[0]["split"] == "train" and records[0]["query_key"] == ""
    assert skipped == {"nli_empty_text": 1, "nli_malformed_row": 1}

    with pytest.raises(ValueError, match=r"allnli_train\.csv: header has no column \['anchor'"):
        extract_all(supervised.NliBuilder([str(csv_path)], negative_columns=["bad1"]))

    jsonl_path = write_lines(
        tmp_path / "triplets.test.jsonl",
        [jl(anchor="a", positive="p", negative="n"), jl(anchor="a", positive="p2")],
    )
    records, skipped = extract_all(supervised.NliBuilder([str(jsonl_path)]))
    assert [(r["query"], r["document"], r["negatives"]) for r in records] == [("a", "p", ["n"])]
    assert skipped == {"nli_missing_field": 1}
    records, skipped = extract_all(supervised.NliBuilder([str(jsonl_path)], num_negatives=0))
    assert [(r["document"], "negatives" in r) for r in records] == [("p", False), ("p2", False)]


def test_split_for_file_names():
    assert supervised.split_for_file("snli_1.0_train.jsonl") == "train"
    assert supervised.split_for_file("multinli_1.0_dev_matched.jsonl") == "validation"
    assert supervised.split_for_file("/x/valid.tsv.gz") == "validation"
    assert supervised.split_for_file("nli-test.csv") == "test"
    for name in ("nli.jsonl", "train_test.tsv", "contest.jsonl"):
        with pytest.raises(ValueError, match="pass --split"):
            supervised.split_for_file(name)


def test_nli_end_to_end(snli_file, tmp_path, monkeypatch):
    out = tmp_path / "nli_out"
    assert build.main(["nli", str(snli_file), "--out_dir", str(out)]) == 0
    manifest = corpus.read_manifest(str(out))
    assert manifest["counts"] == {"validation": 2}
    assert manifest["skipped"] == NLI_SKIPPED
    assert manifest["schema"]["negatives"] == corpus.STRING_LIST
    records = corpus.read_split(str(out), "validation")
    assert [r["negatives"] for r in records] == [["The man is asleep."], ["Nobody is playing."]]


def test_csv_field_over_the_limit_is_a_malformed_row(tmp_path):
    path = write_lines(
        tmp_path / "big_test.csv",
        ["anchor,positive,negative", f'"{"x" * 200_000}",p,n', "a,p,n"],
    )
    records, skipped = extract_all(supervised.NliBuilder([str(path)]))
    assert [(r["query"], r["source"]) for r in records] == [("a", "big_test.csv:3")]
    assert skipped == {"nli_malformed_row": 1}


def parse(corpus_name, argv):
    import argparse

    add_arguments, builder_from_args = supervised.CORPORA[corpus_name]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return builder_from_args(parser.parse_args(argv))


def test_command_line_flags(beir_dir, msmarco_dir, tmp_path):
    negatives = write_lines(tmp_path / "n.jsonl", [jl(qid="q1", neg={"a": ["d2"], "b": []})])
    builder = parse(
        "beir",
        ["--data_dir", str(beir_dir), "--splits", "train", "--hard_negatives", str(negatives)]
        + ["--num_negatives", "1", "--negative_systems", "b,a", "--min_score", "2"],
    )
    assert (builder.num_negatives, builder.negative_systems, builder.min_score) == (
        1,
        ("b", "a"),
        2,
    )
    records, _ = extract_all(builder)
    assert pairs(records) == []  # the only score-2 pair (q2, d2) has no negatives line
    records, skipped = extract_all(parse("beir", ["--data_dir", str(beir_dir), "--min_score", "2"]))
    assert pairs(records) == [BEIR_TRAIN[2]] and skipped["qrels_not_relevant"] == 10

    builder = parse("msmarco", ["--data_dir", str(msmarco_dir), "--splits", "dev"])
    assert [u.payload.qrels for u in builder.units()] == [
        (("dev", str(msmarco_dir / "qrels.dev.small.tsv")),)
    ]
    triples = write_lines(tmp_path / "t.tsv", ["q\tp\tn"])
    assert isinstance(
        parse("msmarco", ["--triples", str(triples)]), supervised.MsMarcoTriplesBuilder
    )
    with pytest.raises(ValueError, match="needs --data_dir"):
        parse("msmarco", [])
    with pytest.raises(ValueError, match="from the triples alone"):
        parse("msmarco", ["--triples", str(triples), "--data_dir", str(msmarco_dir)])

    builder = parse("nli", [str(triples), "--split", "test", "--negative_columns", "x, y"])
    assert (builder.splits, builder.negative_columns) == (["test"], ("x", "y"))
