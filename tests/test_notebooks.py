"""The notebooks run top to bottom in a real IPython kernel (nbclient) on a tiny checkpoint.

A cell that raises fails the test (nbclient's CellExecutionError names the cell). Beyond
running, each notebook is checked for what it shows (plots, neighbours, the probe and code
search tables), and a cell appended before execution reports the kernel's state as JSON:
that the notebook read the checkpoint the test gave it, and the sizes of what it computed.
"""

import json
import os
import re
import sys

import nbformat
import pytest
from launch import REPO
from nbclient import NotebookClient

NOTEBOOKS_DIR = os.path.join(REPO, "notebooks")
NOTEBOOKS = ["probe_embeddings.ipynb", "code_search.ipynb"]
CELL_TIMEOUT_S = 300
STATE_PREFIX = "NOTEBOOK_STATE "


def read_notebook(name):
    return nbformat.read(os.path.join(NOTEBOOKS_DIR, name), as_version=4)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_clean_and_colab_ready(name):
    notebook = read_notebook(name)
    nbformat.validate(notebook)
    assert notebook.nbformat == 4
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, f"outputs stored: {cell.id}"
    # The first cell installs cpt-jax in Colab, and only there.
    assert 'if "google.colab" in sys.modules:' in code[0].source
    assert "pip" in code[0].source
    # The checkpoint is a parameter the environment overrides (the tests below rely on it).
    assert any('os.environ.get("CPT_CHECKPOINT", "runs/quickstart")' in c.source for c in code)


def execute(name, checkpoint, state, cwd, monkeypatch):
    """Runs every cell of a notebook in `cwd`, then reports `state` (a Python expression).

    Returns (the executed notebook without the reporting cell, the expression's value).
    """
    monkeypatch.setenv("CPT_CHECKPOINT", checkpoint)
    monkeypatch.setenv("XLA_FLAGS", "")  # the kernel gets one CPU device, not the tests' 8
    monkeypatch.delenv("MPLBACKEND", raising=False)
    notebook = read_notebook(name)
    report = f"import json\n\nprint({STATE_PREFIX!r} + json.dumps({state}))"
    notebook.cells.append(nbformat.v4.new_code_cell(report))
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    (line,) = [
        line
        for output in notebook.cells.pop().outputs
        if output.output_type == "stream"
        for line in output.text.splitlines()
        if line.startswith(STATE_PREFIX)
    ]
    return notebook, json.loads(line[len(STATE_PREFIX) :])


def shown(notebook):
    """(all text a notebook printed or displayed, its number of PNG images)."""
    text, images = [], 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error"
            if output.output_type == "stream":
                text.append(output.text)
            data = output.get("data", {})
            images += "image/png" in data
            text.append(data.get("text/plain", ""))
    return "\n".join(text), images


@pytest.mark.slow
def test_probe_embeddings_notebook(tiny_run, tmp_path, monkeypatch):
    notebook, state = execute(
        "probe_embeddings.ipynb",
        tiny_run,
        """{
            "checkpoint": CHECKPOINT,
            "executable": sys.executable,
            "classes": sorted(set(labels.tolist())),
            "num_texts": len(texts),
            "embeddings": list(embeddings.shape),
            "dim": embedder.dim,
            "queries": len(QUERIES),
            "neighbours": list(top.shape),
            "accuracy": {name: r["accuracy"] for name, r in results.items()},
            "num_test": [r["num_test"] for r in results.values()],
            "class_sims": class_sims.tolist(),
        }""",
        tmp_path,
        monkeypatch,
    )
    assert state["checkpoint"] == tiny_run
    assert state["executable"] == sys.executable  # the kernel ran in this environment
    assert state["classes"] == ["archives", "asyncio", "email", "xml"]
    assert state["num_texts"] >= 200  # 60 docstrings per class where the stdlib has them
    assert state["embeddings"] == [state["num_texts"], state["dim"]]
    assert state["neighbours"] == [state["queries"], 5]
    accuracy = state["accuracy"]
    assert len(accuracy) == 3 and all(0.0 <= a <= 1.0 for a in accuracy.values())
    assert len(set(state["num_test"])) == 1 and state["num_test"][0] > 0.25 * state["num_texts"]
    # The labels carry signal: the bag-of-words baseline is well above chance (0.25).
    assert accuracy["TF-IDF + logistic regression"] > 0.5
    assert all(-1.0 <= s <= 1.0 for row in state["class_sims"] for s in row)

    text, images = shown(notebook)
    assert f"loaded {tiny_run}" in text
    assert text.count("of 5 neighbours are") == state["queries"]
    for row in ("linear probe (embeddings)", "10-NN (embeddings)", "majority class (chance)"):
        assert row in text
    assert "within a class" in text
    assert images == 2  # the 2-D projections and the heatmaps


@pytest.mark.slow
def test_code_search_notebook(tiny_run, tmp_path, monkeypatch):
    notebook, state = execute(
        "code_search.ipynb",
        tiny_run,
        """{
            "checkpoint": CHECKPOINT,
            "executable": sys.executable,
            "source_dir": SOURCE_DIR,
            "functions": len(index.functions),
            "embeddings": list(index.embeddings.shape),
            "dim": embedder.dim,
            "reindexed": report.embedded_functions,
            "unchanged_files": report.unchanged_files,
            "queries": QUERIES,
            "top_k": TOP_K,
            "pairs": n,
            "results": results,
        }""",
        tmp_path,
        monkeypatch,
    )
    assert state["checkpoint"] == tiny_run
    assert state["executable"] == sys.executable
    assert state["source_dir"] == os.path.join(REPO, "cpt_jax")
    assert state["functions"] > 200
    assert state["embeddings"] == [state["functions"], state["dim"]]
    assert state["reindexed"] == 0 and state["unchanged_files"] > 20  # nothing changed
    results = state["results"]
    assert set(results) == {"dense", "bm25", "score_fusion_0.15", "rrf_60"}
    for r in results.values():
        assert r["num_queries"] == r["num_candidates"] == state["pairs"] > 100
        assert 0.0 < r["mrr"] <= 1.0
    # Docstrings share words with their code: BM25 finds many of them.
    assert results["bm25"]["mrr"] > 0.3

    text, images = shown(notebook)
    assert f"loaded {tiny_run}" in text
    for query in state["queries"]:
        assert query in text
    hits = [line for line in text.splitlines() if re.match(r"^  \d\. \S+\.py:\d+  \S+  ", line)]
    assert len(hits) == len(state["queries"]) * state["top_k"]
    for ranking in ("dense", "bm25", "score_fusion", "rrf"):
        assert re.search(rf"^{ranking} +\S+\.py:\d+  ", text, re.MULTILINE), ranking
    assert "each ranked against all" in text and "MRR" in text
