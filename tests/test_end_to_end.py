"""End to end: the gin launcher on real stdlib pairs, and the Embedder.

These start `python -m cpt_jax.train` as child processes (bounded by timeouts) on a tiny model.
"""

import json
import os
import shutil
import subprocess

import jax
import numpy as np
import pytest
from launch import LAUNCH_TIMEOUT_S, REPO, child_env, launcher_command, run_launcher

from cpt_jax import checkpoints
from cpt_jax.embed import Embedder
from cpt_jax.embed import main as embed_main

pytestmark = pytest.mark.slow


def read_metrics(model_dir):
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def final_params(model_dir):
    meta = checkpoints.read_model_metadata(model_dir)
    assert meta["model_config"]["vocab_size"] > 0
    embedder = Embedder.from_checkpoint(model_dir)
    return embedder.params


def test_launcher_writes_a_self_describing_model_dir(tiny_run):
    for name in ("config.gin", "model.json", "spm.model", "metrics.jsonl"):
        assert os.path.exists(os.path.join(tiny_run, name)), name
    with open(os.path.join(tiny_run, "config.gin")) as f:
        config = f.read()
    assert "BATCH_SIZE = 16" in config and "EncoderConfig.num_layers = 2" in config
    records = read_metrics(tiny_run)
    assert [r["step"] for r in records] == [2, 4, 6]
    for r in records:
        assert np.isfinite(r["loss"]) and r["pairs_per_second"] > 0
        assert 0.0 <= r["accuracy_q2d"] <= 1.0
    assert any(
        f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(tiny_run, "train"))
    )
    assert sorted(os.listdir(os.path.join(tiny_run, "checkpoints")))[-1] == "6"


def test_rerunning_a_finished_run_resumes_and_does_nothing(tiny_run, stdlib_corpus):
    before = final_params(tiny_run)
    result = run_launcher(tiny_run, stdlib_corpus)
    assert "Resumed" in result.stdout and "at step 6" in result.stdout
    after = final_params(tiny_run)
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_resuming_under_another_config_is_refused_unless_allowed(tiny_run, stdlib_corpus, tmp_path):
    # The mistake this guards against: a new experiment pointed at an old directory would
    # continue the old run's weights and overwrite its config.gin.
    with open(os.path.join(tiny_run, "config.gin")) as f:
        stored = f.read()
    changed = ["--gin.make_optimizer.learning_rate=0.5"]
    refused = subprocess.run(
        launcher_command(tiny_run, stdlib_corpus, *changed),
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=LAUNCH_TIMEOUT_S,
    )
    assert refused.returncode != 0
    assert "make_optimizer.learning_rate: 0.001 -> 0.5" in refused.stderr, refused.stderr[-3000:]
    assert "train.allow_config_change = True" in refused.stderr
    with open(os.path.join(tiny_run, "config.gin")) as f:
        assert f.read() == stored  # the old run's record is untouched

    # Allowed: it resumes, and the old config stays beside the new one.
    copy = str(tmp_path / "copy")
    shutil.copytree(tiny_run, copy)
    allowed = run_launcher(copy, stdlib_corpus, *changed, "--gin.train.allow_config_change=True")
    assert "Resumed" in allowed.stdout and "learning_rate: 0.001 -> 0.5" in allowed.stdout
    with open(os.path.join(copy, "config.until_step_6.gin")) as f:
        assert f.read() == stored
    with open(os.path.join(copy, "config.gin")) as f:
        assert "make_optimizer.learning_rate = 0.5" in f.read()


def test_embedder_encodes_queries_and_documents(tiny_run, tmp_path):
    # Self-describing: a copy of the model directory, away from the data and the gin files,
    # is all the Embedder needs.
    moved = str(tmp_path / "moved")
    shutil.copytree(tiny_run, moved)
    embedder = Embedder.from_checkpoint(moved)
    texts = ["read a file", "", "x " * 5000, "def f(a):\n    return a + 1"]
    for kind in ("query", "document"):
        out = embedder.encode(texts, kind=kind, batch_size=3)
        assert out.dtype == np.float32 and out.shape == (4, embedder.dim)
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    # The two sides have different delimiters, so the same text embeds differently.
    q = embedder.encode(texts[:1], kind="query")
    d = embedder.encode(texts[:1], kind="document")
    assert not np.allclose(q, d)
    # Batching does not change results.
    one_by_one = np.concatenate([embedder.encode([t], kind="query") for t in texts])
    np.testing.assert_allclose(one_by_one, embedder.encode(texts, kind="query"), atol=1e-5)
    with pytest.raises(ValueError, match="kind must be one of"):
        embedder.encode(texts, kind="code")


def test_embed_cli_matches_the_api(tiny_run, tmp_path):
    inputs = tmp_path / "in.jsonl"
    texts = ["open a socket", "", "parse json from a string"]
    inputs.write_text("\n".join(json.dumps({"text": t}) for t in texts) + "\n")
    output = tmp_path / "out.npy"
    code = embed_main(
        [
            "--checkpoint",
            tiny_run,
            "--input",
            str(inputs),
            "--field",
            "text",
            "--kind",
            "query",
            "--output",
            str(output),
        ]
    )
    assert code == 0
    np.testing.assert_allclose(
        np.load(output), Embedder.from_checkpoint(tiny_run).encode(texts, kind="query"), atol=1e-6
    )


def test_evaluate_cli_runs_every_task_beside_its_baseline(tiny_run, stdlib_corpus, tmp_path):
    """`python -m cpt_jax.evaluate` on the tiny model: each task's figures and baselines;
    the baselines equal direct calls of the library (so the wiring is checked)."""
    from cpt_jax import evaluate, evaluation
    from data_pipelines import corpus

    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    docs = corpus.read_split(stdlib_corpus["data_dir"], "validation")[:30]
    (beir / "corpus.jsonl").write_text(
        "".join(
            json.dumps({"_id": f"d{i}", "title": "", "text": r["document"]}) + "\n"
            for i, r in enumerate(docs)
        )
    )
    (beir / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": f"q{i}", "text": r["query"]}) + "\n" for i, r in enumerate(docs))
    )
    (beir / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(len(docs)))
    )
    similarity = tmp_path / "sts.tsv"
    similarity.write_text(
        "text1\ttext2\tscore\nsort a list\tsort the list\t5\nsort a list\tread a file\t1\n"
        "open a file\tread a file\t3\n"
    )
    output = tmp_path / "eval.json"
    argv = ["--checkpoint", tiny_run, "--code_search", stdlib_corpus["data_dir"]]
    argv += ["--num_candidates", "100", "--retrieval", str(beir), "--similarity", str(similarity)]
    assert evaluate.main([*argv, "--output", str(output)]) == 0
    results = json.loads(output.read_text())
    assert set(results) == {"model", "sequence_lengths", "code_search", "retrieval", "similarity"}
    assert results["sequence_lengths"] == {"queries": 16, "documents": 48}  # the run's lengths
    pairs = corpus.read_split(stdlib_corpus["data_dir"], "test")
    assert results["code_search"]["bm25"] == evaluation.bm25_code_search(pairs, num_candidates=100)
    assert 0 < results["code_search"]["model"]["mrr"] <= 1
    corpus_, queries, qrels = evaluate.load_beir(str(beir), "test")
    assert results["retrieval"]["bm25"] == evaluation.bm25_retrieval(corpus_, queries, qrels)
    assert results["retrieval"]["model"]["num_queries"] == len(docs)
    assert results["similarity"]["model"]["num_pairs"] == 3
    with pytest.raises(SystemExit):
        evaluate.main(["--checkpoint", tiny_run])  # no task


def test_evaluate_cli_scores_an_earlier_step_when_asked(tiny_run, stdlib_corpus, tmp_path):
    from cpt_jax import evaluate, evaluation
    from data_pipelines import corpus

    output = tmp_path / "step2.json"
    argv = ["--checkpoint", tiny_run, "--step", "2", "--code_search", stdlib_corpus["data_dir"]]
    assert evaluate.main([*argv, "--num_candidates", "100", "--output", str(output)]) == 0
    results = json.loads(output.read_text())
    assert results["step"] == 2
    # The step-2 parameters, not the latest (step 6) ones, were scored.
    pairs = corpus.read_split(stdlib_corpus["data_dir"], "test")
    for step, expected_equal in ((2, True), (6, False)):
        embedder = Embedder.from_checkpoint(tiny_run, step=step)
        direct = evaluation.evaluate_code_search(
            lambda texts, kind, e=embedder: e.encode(texts, kind=kind, batch_size=64),
            pairs,
            code_field="code_no_comments",
            num_candidates=100,
        )
        assert (results["code_search"]["model"] == direct) == expected_equal, step
    with pytest.raises(SystemExit):
        evaluate.main(["--pretrained", "minilm", "--step", "2", "--code_search", "x"])


def test_evaluate_cli_classification_probe_and_baseline(tiny_run, tmp_path):
    from cpt_jax import evaluate, evaluation
    from data_pipelines import corpus

    class Labelled(corpus.Builder):
        name = "labelled"

        def units(self):
            return [corpus.Unit("all")]

        def extract(self, unit, skipped):
            topics = {"files": "open read write file path", "math": "sum mean number add"}
            for i in range(40):
                label = "files" if i % 2 else "math"
                words = topics[label].split()
                text = " ".join(words[(i + j) % len(words)] for j in range(4)) + f" item {i}"
                yield {
                    "query": f"q {i}",
                    "document": text,
                    "label": label,
                    "split": "validation" if i % 4 == 0 else "train",
                }

        def split(self, record):
            return record["split"]

    data_dir = str(tmp_path / "labelled")
    corpus.build(Labelled(), data_dir, log=lambda *_: None)
    output = tmp_path / "eval.json"
    argv = ["--checkpoint", tiny_run, "--classification", data_dir, "--output", str(output)]
    assert evaluate.main(argv) == 0
    results = json.loads(output.read_text())["classification"]
    assert set(results) == {"linear_probe", "knn", "tfidf_logistic"}
    train = corpus.read_split(data_dir, "train")
    test = corpus.read_split(data_dir, "validation")
    want = evaluation.tfidf_logistic_baseline(
        [r["document"] for r in train],
        [r["label"] for r in train],
        [r["document"] for r in test],
        [r["label"] for r in test],
    )
    assert results["tfidf_logistic"] == want and want["accuracy"] == 1.0
    assert results["linear_probe"]["num_test"] == len(test) == 10
