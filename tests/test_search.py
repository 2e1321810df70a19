"""Semantic code search over a directory (`cpt_jax.search`): index, incremental re-index,
bad files, queries (API and CLI, text and JSON), atomic replacement of the index."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from launch import REPO, child_env

from cpt_jax.embed import Embedder
from cpt_jax.evaluation import bm25_scores_reference, code_tokenize
from cpt_jax.search import CodeIndex
from cpt_jax.search import __main__ as cli
from cpt_jax.search import index as index_lib

FIXTURES = os.path.join(os.path.dirname(__file__), "data", "tree_sitter")

UTIL = '''\
import json


def load_config(path):
    """Reads a JSON configuration file and returns it as a dictionary."""
    with open(path) as f:
        return json.load(f)


def slugify(title):
    """Turns a title into a lower-case URL slug."""
    return "-".join(title.lower().split())
'''

MODELS = '''\
class Cart:
    """A shopping cart."""

    def add(self, item, quantity=1):
        """Puts an item into the cart."""
        self.items[item] = self.items.get(item, 0) + quantity

    def total(self, prices):
        return sum(prices[i] * n for i, n in self.items.items())
'''


def make_tree(root):
    """A small code base: Python and Go, bad files, and places never indexed."""
    files = {
        "app/util.py": UTIL,
        "app/models.py": MODELS,
        "bad/syntax.py": "def broken(:\n    pass\n",
        "bad/blob.py": b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0",
        "bad/latin.py": "def f():\n    return 'caf\u00e9'\n".encode("latin-1"),
        ".hidden/secret.py": "def hidden():\n    pass\n",
        "node_modules/dep/index.js": "function dep() { return 1; }\n",
        "venv/lib/site.py": "def in_venv():\n    pass\n",
        "venv/pyvenv.cfg": "home = /usr\n",
        "README.md": "# not code\n",
    }
    for relative, content in files.items():
        path = os.path.join(root, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        mode = "wb" if isinstance(content, bytes) else "w"
        with open(path, mode) as f:
            f.write(content)
    os.makedirs(os.path.join(root, "ring"))
    shutil.copy(os.path.join(FIXTURES, "ring.go"), os.path.join(root, "ring", "ring.go"))
    return root


RING_FUNCTIONS = 8  # every func of tests/data/tree_sitter/ring.go
TREE_FUNCTIONS = {"app/util.py": 2, "app/models.py": 2, "ring/ring.go": RING_FUNCTIONS}


@pytest.fixture(scope="module")
def embedder(tiny_run):
    return Embedder.from_checkpoint(tiny_run)


def index_cli(*argv):
    return cli.main(["index", "--no_progress", *argv])


def test_source_files_skip_hidden_vendored_and_virtualenv_directories(tmp_path):
    root = make_tree(str(tmp_path / "src"))
    assert index_lib.source_files(root) == [
        "app/models.py",
        "app/util.py",
        "bad/blob.py",
        "bad/latin.py",
        "bad/syntax.py",
        "ring/ring.go",
    ]


def test_index_counts_functions_and_skipped_files(tiny_run, embedder, tmp_path):
    root = make_tree(str(tmp_path / "src"))
    index, report = CodeIndex.build(tiny_run, root, embedder=embedder)
    assert report.functions == sum(TREE_FUNCTIONS.values()) == len(index.functions)
    assert report.embedded_functions == report.functions
    assert report.skipped == {"syntax_error": 1, "binary": 1, "non_utf8": 1}
    assert (report.files, report.changed_files, report.unchanged_files) == (6, 6, 0)
    names = {(f.path, f.name, f.line) for f in index.functions}
    assert {("app/util.py", "load_config", 4), ("app/models.py", "Cart.add", 4)} <= names
    with open(os.path.join(FIXTURES, "ring.go")) as f:
        push = 1 + [i for i, line in enumerate(f) if line.startswith("func (b *Buffer) Push")][0]
    assert ("ring/ring.go", "Buffer.Push", push) in names
    # Each row is the function's text embedded as a document by the model.
    texts = [f.text for f in index.functions]
    np.testing.assert_allclose(index.embeddings, embedder.encode(texts, kind="document"), atol=1e-5)


def test_incremental_reindex_embeds_only_what_changed(tiny_run, embedder, tmp_path, monkeypatch):
    root = make_tree(str(tmp_path / "src"))
    index_dir = str(tmp_path / "index")
    assert index_cli("--checkpoint", tiny_run, "--source", root, "--index", index_dir) == 0
    first = CodeIndex.open(index_dir)

    # Unchanged: nothing is embedded, the model is not even loaded.
    def no_model(*_):
        raise AssertionError("the model was loaded for an unchanged tree")

    with monkeypatch.context() as patch:
        patch.setattr(index_lib, "load_embedder", no_model)
        unchanged, report = CodeIndex.build(tiny_run, root, previous=first)
    assert report.embedded_functions == 0 and report.unchanged_files == 6
    np.testing.assert_array_equal(unchanged.embeddings, first.embeddings)
    assert unchanged.functions == first.functions

    # One file modified, one added, one deleted.
    with open(os.path.join(root, "app/util.py"), "a") as f:
        f.write('\n\ndef shout(text):\n    """Upper-cases text."""\n    return text.upper()\n')
    with open(os.path.join(root, "app/extra.py"), "w") as f:
        f.write("def one():\n    return 1\n\n\nasync def two():\n    return 2\n")
    os.remove(os.path.join(root, "ring/ring.go"))
    encoded = []
    real_encode = Embedder.encode

    def counting_encode(self, texts, kind="query", batch_size=64):
        encoded.extend(texts)
        return real_encode(self, texts, kind=kind, batch_size=batch_size)

    monkeypatch.setattr(Embedder, "encode", counting_encode)
    assert index_cli("--checkpoint", tiny_run, "--source", root, "--index", index_dir) == 0
    second = CodeIndex.open(index_dir)
    # util.py's three functions and extra.py's two, nothing else.
    assert len(encoded) == 5
    assert {f.name for f in second.functions if f.path == "app/util.py"} == {
        "load_config",
        "slugify",
        "shout",
    }
    assert not any(f.path == "ring/ring.go" for f in second.functions)
    assert "ring/ring.go" not in second.file_records
    # The untouched file's rows are carried over bit for bit.
    kept = [i for i, f in enumerate(first.functions) if f.path == "app/models.py"]
    now = [i for i, f in enumerate(second.functions) if f.path == "app/models.py"]
    np.testing.assert_array_equal(second.embeddings[now], first.embeddings[kept])
    # The result is the index a fresh build makes.
    monkeypatch.setattr(Embedder, "encode", real_encode)
    fresh, _ = CodeIndex.build(tiny_run, root, embedder=embedder)
    assert fresh.functions == second.functions
    np.testing.assert_allclose(fresh.embeddings, second.embeddings, atol=1e-5)


def test_another_model_reembeds_everything(tiny_run, embedder, tmp_path):
    root = make_tree(str(tmp_path / "src"))
    first, _ = CodeIndex.build(tiny_run, root, embedder=embedder)
    moved = str(tmp_path / "moved_model")
    shutil.copytree(tiny_run, moved)
    _, report = CodeIndex.build(moved, root, previous=first, embedder=embedder)
    assert report.embedded_functions == report.functions > 0


def test_an_interrupted_index_run_leaves_the_old_index(tiny_run, embedder, tmp_path, monkeypatch):
    root = make_tree(str(tmp_path / "src"))
    index_dir = str(tmp_path / "index")
    assert index_cli("--checkpoint", tiny_run, "--source", root, "--index", index_dir) == 0
    path = os.path.join(index_dir, index_lib.INDEX_FILE)
    with open(path, "rb") as f:
        before = f.read()
    with open(os.path.join(root, "app/util.py"), "a") as f:
        f.write("\n\ndef late():\n    return 0\n")

    # Killed while embedding...
    def interrupted(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(index_lib, "_embed_documents", interrupted)
    with pytest.raises(KeyboardInterrupt):
        index_cli("--checkpoint", tiny_run, "--source", root, "--index", index_dir)
    # ... or while writing the new file: the old one is still whole.
    monkeypatch.undo()
    real_savez = np.savez

    def torn_savez(file, **arrays):
        real_savez(file, **arrays)
        file.truncate(10)
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", torn_savez)
    assert index_cli("--checkpoint", tiny_run, "--source", root, "--index", index_dir) == 2
    monkeypatch.undo()
    with open(path, "rb") as f:
        assert f.read() == before
    assert os.listdir(index_dir) == [index_lib.INDEX_FILE]
    assert "late" not in {f.name for f in CodeIndex.open(index_dir).functions}


def test_scores_match_an_independent_computation(tiny_run, embedder, tmp_path):
    root = make_tree(str(tmp_path / "src"))
    index, _ = CodeIndex.build(tiny_run, root, embedder=embedder)
    query = "read a json configuration file"
    q = embedder.encode([query], kind="query")[0].astype(np.float64)
    dense = index.embeddings.astype(np.float64) @ q
    lexical = bm25_scores_reference(
        code_tokenize(query), [code_tokenize(f.text) for f in index.functions]
    )
    np.testing.assert_allclose(index.scores([query], "dense")[0], dense, atol=1e-5)
    np.testing.assert_allclose(index.scores([query], "bm25")[0], lexical, rtol=1e-5)
    z = [(s - s.mean()) / s.std() for s in (dense, lexical)]
    np.testing.assert_allclose(
        index.scores([query], "score_fusion", weight=0.4)[0], z[0] + 0.4 * z[1], atol=1e-4
    )
    # BM25 alone finds the function whose words the query shares.
    (best,) = index.search(query, top_k=1, ranking="bm25")
    assert (best.path, best.name, best.line) == ("app/util.py", "load_config", 4)
    hits = index.search(query, top_k=3)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len(index.search(query, top_k=100)) == len(index.functions)


def test_query_cli_text_and_json(tiny_run, tmp_path, capsys):
    root = make_tree(str(tmp_path / "src"))
    index_dir = str(tmp_path / "index")
    assert index_cli("--checkpoint", tiny_run, "--source", root, "--index", index_dir) == 0
    capsys.readouterr()
    queries = ["read a json configuration file", "put an item into the cart"]
    assert cli.main(["query", "--index", index_dir, "--top_k", "2", *queries]) == 0
    text = capsys.readouterr().out
    for query in queries:
        assert f"query: {query}" in text
    hit_lines = [line for line in text.splitlines() if re.match(r"^ +\d+\. ", line)]
    assert len(hit_lines) == 4
    assert all(re.match(r"^ +[12]\. \S+:\d+  \S+  -?\d+\.\d{3}$", line) for line in hit_lines)
    assert (
        cli.main(["query", "--index", index_dir, "--top_k", "1", "--ranking", "bm25", *queries])
        == 0
    )
    text = capsys.readouterr().out
    assert (
        "  1. app/util.py:4  load_config  " in text and "  1. app/models.py:4  Cart.add  " in text
    )
    assert '    """Reads a JSON configuration file' in text  # the snippet

    queries_file = tmp_path / "queries.txt"
    queries_file.write_text("\n".join([queries[0], "", queries[1], "slugify a title"]) + "\n")
    argv = ["query", "--index", index_dir, "--json", "--queries_file", str(queries_file)]
    assert cli.main([*argv, "--top_k", "3", "--ranking", "bm25"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3  # one per non-blank line, in order
    results = [json.loads(line) for line in lines]
    for hits in results:
        assert len(hits) == 3
        for hit in hits:
            assert {"path", "line", "name", "score", "end_line", "language", "snippet"} <= set(hit)
            assert not os.path.isabs(hit["path"]) and hit["line"] >= 1
    assert (results[0][0]["path"], results[0][0]["name"]) == ("app/util.py", "load_config")
    assert (results[1][0]["name"], results[1][0]["line"]) == ("Cart.add", 4)
    assert results[2][0]["name"] == "slugify"


def test_cli_errors_name_the_problem(tiny_run, tmp_path, capsys):
    missing = str(tmp_path / "nowhere")
    assert cli.main(["query", "--index", missing, "anything"]) == 2
    assert "no code index" in capsys.readouterr().err
    assert index_cli("--checkpoint", tiny_run, "--source", missing, "--index", missing) == 2
    assert "not a directory" in capsys.readouterr().err
    assert index_cli("--checkpoint", str(tmp_path), "--source", str(tmp_path), "--index", missing)
    assert "not a cpt-jax model directory" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / index_lib.INDEX_FILE).write_bytes(b"not an index")
    assert cli.main(["query", "--index", str(corrupt), "x"]) == 2
    assert "not a readable code index" in capsys.readouterr().err
    root = make_tree(str(tmp_path / "src"))
    assert (
        index_cli("--checkpoint", tiny_run, "--source", root, "--index", str(tmp_path / "i")) == 0
    )
    assert cli.main(["query", "--index", str(tmp_path / "i")]) == 2
    assert "no queries" in capsys.readouterr().err

    # The model behind an index changed: queries are refused, not scored against stale rows.
    model = str(tmp_path / "model")
    shutil.copytree(tiny_run, model)
    assert index_cli("--checkpoint", model, "--source", root, "--index", str(tmp_path / "j")) == 0
    step = index_lib.model_record(model)["step"]
    shutil.rmtree(os.path.join(model, "checkpoints", str(step)))
    assert cli.main(["query", "--index", str(tmp_path / "j"), "x"]) == 2
    assert f"built with step {step}, which is no longer saved" in capsys.readouterr().err
    with open(os.path.join(model, "model.json"), "a") as f:
        f.write("\n")
    assert cli.main(["query", "--index", str(tmp_path / "j"), "x"]) == 2
    assert "model.json changed" in capsys.readouterr().err


@pytest.mark.slow
def test_the_module_runs_as_a_command(tiny_run, tmp_path):
    root = make_tree(str(tmp_path / "src"))
    index_dir = str(tmp_path / "index")
    command = [sys.executable, "-m", "cpt_jax.search"]
    run = lambda *argv: subprocess.run(
        [*command, *argv], cwd=REPO, env=child_env(1), capture_output=True, text=True, timeout=300
    )
    built = run("index", "--checkpoint", tiny_run, "--source", root, "--index", index_dir)
    assert built.returncode == 0, built.stderr[-2000:]
    assert "12 functions in 6 files" in built.stdout
    assert "1 binary, 1 non_utf8, 1 syntax_error" in built.stdout
    assert "embedding" in built.stderr  # the progress bar
    found = run("query", "--index", index_dir, "--json", "--ranking", "bm25", "slugify a title")
    assert found.returncode == 0, found.stderr[-2000:]
    (line,) = found.stdout.splitlines()
    assert json.loads(line)[0]["name"] == "slugify"
