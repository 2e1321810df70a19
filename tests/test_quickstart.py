"""The main job (`python -m cpt_jax.quickstart`) on tiny models: a run started from another
model's weights prints BM25, that start zero-shot and the trained model; a re-run reads the
evaluation back. (The real job starts from MiniLM; the README quotes its figures.)"""

import json
import os
import subprocess
import sys

import pytest
from launch import LAUNCH_TIMEOUT_S, REPO, child_env

from cpt_jax import quickstart
from cpt_jax.embed import Embedder
from cpt_jax.evaluation import bm25_code_search, evaluate_code_search
from data_pipelines.pipeline import load_pairs


def run_quickstart(*argv):
    result = subprocess.run(
        [sys.executable, "-m", "cpt_jax.quickstart", *argv],
        cwd=REPO,
        env=child_env(2),
        capture_output=True,
        text=True,
        timeout=LAUNCH_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


@pytest.mark.slow
def test_quickstart_scores_bm25_the_start_and_the_trained_model(tiny_run, stdlib_corpus, tmp_path):
    model_dir = str(tmp_path / "quickstart")
    argv = [
        "--gin_file=runs/tiny_test.gin",
        f"--model_dir={model_dir}",
        f"--data_dir={stdlib_corpus['data_dir']}",
        f"--vocab_size={stdlib_corpus['vocab_size']}",
        f"--gin.train.init_from='{tiny_run}'",
        "--gin.TRAIN_STEPS=4",
    ]
    out = run_quickstart(*argv)
    with open(os.path.join(model_dir, "eval.json")) as f:
        results = json.load(f)
    assert results["start"] == tiny_run and results["step"] == 4
    assert results["data_counts"] == stdlib_corpus["manifest"]["counts"]
    assert set(results["seconds"]) == {"data", "training", "evaluation", "total"}

    # Each row, recomputed here from the models and the test split.
    pairs = load_pairs(stdlib_corpus["data_dir"], "test")
    for key, directory in (("zero_shot", tiny_run), ("model", model_dir)):
        embedder = Embedder.from_checkpoint(directory)
        encode = lambda texts, kind, e=embedder: e.encode(texts, kind=kind)
        assert results[key] == evaluate_code_search(encode, pairs), key
    assert results["bm25"] == bm25_code_search(pairs)

    lines = out.splitlines()
    table = lines[lines.index(next(x for x in lines if x.startswith("model "))) :]
    assert table[2].startswith("BM25 (bm25s)")
    assert table[3].startswith(f"{tiny_run} zero-shot (the start)")
    assert table[4].startswith(f"{model_dir} (step 4)")
    assert f"{results['model']['mrr']:.3f}" in table[4]
    gain = results["model"]["mrr"] - results["zero_shot"]["mrr"]
    assert f"its start by {gain:+.3f} MRR" in out

    # Again: the finished, evaluated run is read back, not trained or evaluated again.
    again = run_quickstart(*argv)
    assert "was evaluated already" in again
    with open(os.path.join(model_dir, "eval.json")) as f:
        assert json.load(f) == results
    assert table[4] in again.splitlines()


def test_a_run_from_scratch_has_no_zero_shot_row():
    row = {"mrr": 0.5, "recall@1": 0.4, "recall@10": 0.9, "num_queries": 9, "num_candidates": 5}
    results = {"bm25": {**row, "mrr": 0.6}, "model": row, "start": None, "step": 3}
    table = quickstart.format_table(results, "runs/x").splitlines()
    assert [line.split("  ")[0] for line in table[2:]] == ["BM25 (bm25s)", "runs/x (step 3)"]
    assert quickstart.verdict(results) == "The model does NOT beat BM25."
