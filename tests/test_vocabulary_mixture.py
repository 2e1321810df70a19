"""One vocabulary over a mixture of corpora: texts in proportion to the rates, described."""

import json

import sentencepiece as spm
from corpora import GivenRecords

from data_pipelines import corpus, vocabulary

QUIET = {"log": lambda *_: None}


class WithHeldOut(GivenRecords):
    """`GivenRecords`, plus held-out records (texts starting with 'held out') in validation
    and test."""

    def extract(self, unit, skipped):
        held_out = [
            {"query": f"held out {s} q", "document": f"held out {s} d", "split": s}
            for s in ("validation", "test")
        ]
        return [{**r, "split": "train"} for r in self.records] + held_out

    def split(self, record):
        return record["split"]


def build(path, name, n, make):
    records = [{"query": make(i, "q"), "document": make(i, "d")} for i in range(n)]
    manifest = corpus.build(WithHeldOut(name, records), str(path), **QUIET)
    assert manifest["counts"] == {"train": n, "validation": 1, "test": 1}
    return str(path)


def test_mixture_texts_follow_the_rates_and_use_training_splits_only(tmp_path):
    code = build(tmp_path / "code", "code", 100, lambda i, s: f"def f{i}_{s}(x): return x")
    text = build(tmp_path / "text", "text", 10, lambda i, s: f"plain words {i} {s}")
    texts, used = vocabulary.mixture_texts([code, text], [0.8, 0.2], max_texts=100)
    assert [u["texts"] for u in used] == [80, 20]  # the text corpus has exactly 20 texts
    assert sum(t.startswith("def ") for t in texts) == 80
    assert len(set(texts)) == 100
    assert not [t for t in texts if t.startswith("held out")]  # training splits only
    # Rates default to the corpus sizes.
    _, used = vocabulary.mixture_texts([code, text], max_texts=110)
    assert [u["texts"] for u in used] == [100, 10]
    again, _ = vocabulary.mixture_texts([code, text], [0.8, 0.2], max_texts=100)
    assert again == texts  # seeded


def test_train_from_mixture_writes_the_model_and_its_description(tmp_path):
    code = build(tmp_path / "code", "code", 300, lambda i, s: f"def func_{i}_{s}(value): pass")
    text = build(tmp_path / "text", "text", 300, lambda i, s: f"the quick brown fox {i} {s}")
    prefix = str(tmp_path / "vocab" / "code_text")
    assert (
        vocabulary.main(
            ["--corpus_dir", code, "--corpus_dir", text, "--vocab_size", "300", "--output", prefix]
        )
        == 0
    )
    model = spm.SentencePieceProcessor(model_file=prefix + ".model")
    assert model.get_piece_size() == 300
    with open(prefix + ".json") as f:
        description = json.load(f)
    assert [c["corpus_dir"] for c in description["corpora"]] == [code, text]
    assert description["corpora"][0]["fingerprint"] == corpus.read_manifest(code)["fingerprint"]
    assert len(description["sha256"]) == 64
