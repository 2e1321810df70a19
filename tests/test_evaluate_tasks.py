"""The evaluation CLI's tasks over pairs corpora: retrieval over a split (Debian short ->
long), `--record_kind` filtering and the classification training sample."""

import numpy as np
import pytest

from cpt_jax import evaluate, evaluation
from data_pipelines import corpus
from tests.corpora import GivenRecords

WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
]


def records():
    """Packages: a short description (query) -> long description (document) record each,
    plus neighbour-paragraph records that retrieval must leave out. Package 0's short
    description is also the short description of package 1 (two relevant documents)."""
    out = []
    for i, word in enumerate(WORDS):
        short = f"tool for {WORDS[1]}" if i == 0 else f"tool for {word}"
        long = f"{word} {word} long description number {i} " + " ".join(WORDS[: i % 3])
        out.append({"query": short, "document": long, "kind": "short_long", "label": i % 2})
        out.append(
            {"query": f"{word} para one", "document": f"{word} para two", "kind": "paragraphs"}
        )
    for r in out:
        r.setdefault("label", -1)
    return out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("debian_like"))
    corpus.build(GivenRecords("debian_like", records(), split="validation"), path)
    return path


def word_encoder(texts, kind):
    """Bag of the WORDS in a text: an encoder whose ranking is easy to work out."""
    out = np.array([[t.split().count(w) for w in WORDS] for t in texts], np.float32) + 1e-3
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_pair_retrieval_searches_every_document_of_the_kind(data_dir):
    results = evaluate.pair_retrieval_task(word_encoder, data_dir, "validation", "short_long")
    model, bm25 = results["model"], results["bm25"]
    # 11 distinct short descriptions ("tool for bravo" twice) over 12 long descriptions.
    assert model["num_queries"] == len(WORDS) - 1 == bm25["num_queries"]
    # The same figures from the library directly, with the qrels written out by hand.
    kept = [r for r in records() if r["kind"] == "short_long"]
    docs = {f"d{i}": r["document"] for i, r in enumerate(kept)}
    queries = {f"q{i}": f"tool for {w}" for i, w in enumerate(WORDS) if i > 0}
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(2, len(WORDS))}
    qrels["q1"] = {"d0": 1, "d1": 1}
    want = evaluation.evaluate_retrieval(word_encoder, docs, queries, qrels)
    for metric in ("mrr@10", "ndcg@10", "recall@100"):
        assert model[metric] == pytest.approx(want[metric]), metric
    assert model["recall@100"] == 1.0 and model["mrr@10"] > 0.9


def test_without_a_kind_every_record_counts(data_dir):
    results = evaluate.pair_retrieval_task(word_encoder, data_dir, "validation", None)
    assert results["model"]["num_queries"] == 2 * len(WORDS) - 1


def test_unknown_kind_or_missing_field_is_an_error(data_dir, tmp_path):
    with pytest.raises(ValueError, match="no 'validation' records of kind 'nope'"):
        evaluate.read_records(data_dir, "validation", "nope")
    plain = str(tmp_path / "plain")
    corpus.build(GivenRecords("plain", [{"query": "a", "document": "b"}]), plain)
    with pytest.raises(ValueError, match="records have no 'kind' field"):
        evaluate.read_records(plain, "train", "short_long")


def test_classification_trains_on_a_seeded_sample(data_dir):
    full = evaluate.classification_task(
        word_encoder, data_dir, "document", "validation", "validation", "short_long"
    )
    sample = evaluate.classification_task(
        word_encoder, data_dir, "document", "validation", "validation", "short_long", 6
    )
    again = evaluate.classification_task(
        word_encoder, data_dir, "document", "validation", "validation", "short_long", 6
    )
    assert full["linear_probe"]["num_train"] == len(WORDS)
    assert sample["linear_probe"]["num_train"] == 6
    assert sample == again


def test_format_results_prints_one_line_per_group():
    figures = {"mrr": 0.5, "num_queries": 4}
    results = {
        "code_search": {
            "model": {**figures, "by_group": {"astropy": {"mrr": 0.25, "num_queries": 2}}},
            "bm25": figures,
        }
    }
    lines = evaluate.format_results(results).splitlines()
    assert len(lines) == 3
    assert "mrr 0.500" in lines[0] and "by_group" not in lines[0]
    assert lines[1].split(maxsplit=1) == ["astropy:", "mrr 0.250, num_queries 2"]
    assert lines[2].split()[:2] == ["code_search", "bm25"]


def test_code_search_task_groups_by_a_field_and_refuses_an_unknown_one(tmp_path):
    pairs = [{"query": f"tool for {w}", "document": f"{w} {w}", "package": w} for w in WORDS]
    path = str(tmp_path / "code_like")
    corpus.build(GivenRecords("code_like", pairs, split="validation"), path)
    result = evaluate.code_search_task(word_encoder, path, "validation", 1000, "package")
    assert result["model"]["num_candidates"] == len(WORDS)
    assert set(result["model"]["by_group"]) == set(WORDS)
    assert result["model"]["mrr"] == 1.0  # each long text repeats its own word
    with pytest.raises(ValueError, match="no field 'module' to group by.*'package'"):
        evaluate.code_search_task(word_encoder, path, "validation", 1000, "module")


def test_group_by_without_code_search_is_refused(capsys):
    with pytest.raises(SystemExit):
        evaluate.main(["--pretrained", "minilm", "--retrieval", "beir", "--group_by", "package"])
    assert "--group_by applies to --code_search only" in capsys.readouterr().err
