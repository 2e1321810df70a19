"""Shorter and quantised vectors wherever a vector leaves the library: a Matryoshka run of
the launcher, the Embedder, the embed and evaluation CLIs, the evaluation functions and the
search index (`cpt_jax.quantization` itself: tests/test_quantization.py)."""

import json
import os

import numpy as np
import pytest

from cpt_jax import checkpoints, embed, evaluate, evaluation, quantization
from cpt_jax.embed import Embedder
from cpt_jax.metrics_log import METRICS_FILE
from cpt_jax.quantization import VectorFormat
from cpt_jax.search import CodeIndex
from tests.launch import run_launcher

SIZES = (64, 32, 16)  # the tiny model is 64 wide


@pytest.fixture(scope="module")
def matryoshka_run(tmp_path_factory, stdlib_corpus):
    model_dir = str(tmp_path_factory.mktemp("runs") / "matryoshka")
    run_launcher(
        model_dir,
        stdlib_corpus,
        "--gin.TRAIN_STEPS=2",
        f"--gin.LossConfig.matryoshka_dims={SIZES}",
        "--gin.LossConfig.logit_scale_per_size=True",
    )
    return model_dir


@pytest.fixture(scope="module")
def embedder(matryoshka_run):
    return Embedder.from_checkpoint(matryoshka_run)


TEXTS = ["parse a date string", "sort a list in place", "", "open a file for reading"]


@pytest.mark.slow
def test_a_matryoshka_run_records_its_sizes_and_logs_a_loss_per_size(matryoshka_run, embedder):
    meta = checkpoints.read_model_metadata(matryoshka_run)
    assert meta["embedding_sizes"] == list(SIZES) and meta["log_scale_shape"] == [3]
    with open(os.path.join(matryoshka_run, METRICS_FILE)) as f:
        last = [json.loads(line) for line in f][-1]
    for size in SIZES:
        assert np.isfinite(last[f"loss@{size}"]) and last[f"logit_scale@{size}"] > 0
    assert embedder.embedding_sizes == SIZES


@pytest.mark.slow
def test_embedder_encodes_shorter_and_quantised_vectors(embedder):
    full = embedder.encode(TEXTS, kind="document")
    short = embedder.encode(TEXTS, kind="document", dimensions=16)
    # Independent: the first 16 coordinates divided by their float64 norm.
    prefix = full[:, :16].astype(np.float64)
    np.testing.assert_allclose(
        short, prefix / np.linalg.norm(prefix, axis=1, keepdims=True), atol=1e-6
    )
    codes = embedder.encode(TEXTS, kind="document", dimensions=32, precision="int8", int8_step=0.01)
    assert codes.dtype == np.int8 and codes.shape == (4, 32)
    expected = np.clip(np.round(quantization.truncate(full, 32) / 0.01), -127, 127)
    np.testing.assert_array_equal(codes, expected.astype(np.int8))
    bits = embedder.encode(TEXTS, kind="document", precision="binary")
    assert bits.dtype == np.uint8 and bits.shape == (4, 8)
    np.testing.assert_array_equal(np.unpackbits(bits, axis=1), (full > 0).astype(np.uint8))
    with pytest.raises(ValueError, match="exceeds the model's width 64"):
        embedder.encode(TEXTS, dimensions=65)
    with pytest.raises(ValueError, match="precision"):
        embedder.encode(TEXTS, precision="int4")


@pytest.mark.slow
def test_embed_cli_writes_the_format_and_reuses_it_for_queries(matryoshka_run, tmp_path, capsys):
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    docs = str(tmp_path / "docs.npy")
    argv = ["--checkpoint", matryoshka_run, "--input", str(texts), "--kind", "document"]
    assert embed.main([*argv, "--dimensions", "32", "--precision", "int8", "--output", docs]) == 0
    stored = np.load(docs)
    saved = embed.read_vector_format(docs + embed.FORMAT_SUFFIX)
    assert stored.dtype == np.int8 and stored.shape == (4, 32)
    assert (saved.dimensions, saved.precision) == (32, "int8") and saved.int8_step > 0
    assert np.abs(stored).max() == 127  # calibrated on these vectors
    queries = str(tmp_path / "queries.npy")
    qargv = ["--checkpoint", matryoshka_run, "--input", str(texts), "--kind", "query"]
    fmt = docs + embed.FORMAT_SUFFIX
    assert embed.main([*qargv, "--format_from", fmt, "--output", queries]) == 0
    assert embed.read_vector_format(queries + embed.FORMAT_SUFFIX) == saved  # the docs' step
    with pytest.raises(SystemExit):
        embed.main([*qargv, "--format_from", fmt, "--precision", "binary", "--output", queries])
    (tmp_path / "bad.json").write_text('{"precision": "int8", "colour": 1}')
    assert (
        embed.main([*qargv, "--format_from", str(tmp_path / "bad.json"), "--output", queries]) == 2
    )
    assert "bad.json" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_cli_scores_every_size_and_precision(matryoshka_run, stdlib_corpus, tmp_path):
    output = str(tmp_path / "eval.json")
    argv = ["--checkpoint", matryoshka_run, "--code_search", stdlib_corpus["data_dir"]]
    argv += ["--split", "validation", "--num_candidates", "50", "--output", output]
    argv += [
        "--dimensions",
        "64,16",
        "--precisions",
        "float32,int8,binary",
        "--binary_rescore",
        "10",
    ]
    assert evaluate.main(argv) == 0
    with open(output) as f:
        model = json.load(f)["code_search"]["model"]
    names = ["64d-float32", "64d-int8", "64d-binary", "64d-binary-rescore10", "16d-float32"]
    assert set(names) <= set(model["by_format"])
    assert model["by_format"]["64d-float32"]["mrr"] == pytest.approx(model["mrr"], abs=2e-3)
    assert model["by_format"]["16d-binary"]["bytes_per_vector"] == 2
    assert model["by_format"]["64d-int8"]["bytes_per_vector"] == 64
    with pytest.raises(SystemExit):
        evaluate.main([*argv[:-6], "--dimensions", "65"])


def test_evaluation_scores_stored_vectors_as_their_format():
    rng = np.random.default_rng(0)
    q = quantization.truncate(rng.normal(size=(60, 24)), None)
    c = quantization.truncate(q + 0.8 * rng.normal(size=q.shape), None)
    plain = evaluation.code_search_mrr(q, c, num_candidates=20)
    as_float = evaluation.code_search_mrr(q, c, num_candidates=20, vector_format=VectorFormat())
    assert as_float == plain
    # int8: ranks from integer dot products of codes, computed here with Python ints.
    fmt, codes = VectorFormat(precision="int8").store(c)
    q_codes = np.clip(np.round(q / fmt.int8_step), -127, 127).astype(int)
    sets = evaluation.code_search.candidate_sets(60, 20)
    dots = np.array(
        [[int(q_codes[i] @ codes[j].astype(int)) for j in row] for i, row in enumerate(sets)]
    )
    ranks = np.sum(dots >= dots[:, :1], axis=1)
    got = evaluation.code_search_mrr(q, c, num_candidates=20, vector_format=fmt)
    assert got["mrr"] == pytest.approx(np.mean(1.0 / ranks))
    # Exact search over binary vectors: by Hamming distance, ties by index.
    top = evaluation.exact_search(q, c, 5, vector_format=VectorFormat(precision="binary"))
    signs_q, signs_c = q > 0, c > 0
    for i in range(len(q)):
        hamming = [int(np.sum(signs_q[i] != signs_c[j])) for j in range(len(c))]
        assert list(top[i]) == sorted(range(len(c)), key=lambda j: (hamming[j], j))[:5]


@pytest.mark.slow
def test_search_index_stores_quantised_vectors_and_keeps_the_format(
    matryoshka_run, embedder, tmp_path
):
    root = tmp_path / "src"
    root.mkdir()
    for i, body in enumerate(["return sorted(xs)", "return open(path).read()", "return x + 1"]):
        (root / f"m{i}.py").write_text(
            f'def f{i}(xs, path=None, x=0):\n    """Doc {i}."""\n    {body}\n'
        )
    fmt = VectorFormat(32, "int8")
    index, _ = CodeIndex.build(matryoshka_run, str(root), embedder=embedder, vector_format=fmt)
    assert index.embeddings.dtype == np.int8 and index.embeddings.shape == (3, 32)
    index_dir = str(tmp_path / "index")
    index.save(index_dir)
    reopened = CodeIndex.open(index_dir, embedder=embedder)
    assert reopened.vector_format == index.vector_format and reopened.vector_format.int8_step
    hits = reopened.search("sort a list", top_k=3, ranking="dense")
    assert len(hits) == 3
    # An update keeps the format and its int8 step; the new file's vector uses that step.
    (root / "m3.py").write_text('def g(a):\n    """Add one."""\n    return a + 1\n')
    updated, report = CodeIndex.build(
        matryoshka_run, str(root), previous=reopened, embedder=embedder
    )
    assert report.embedded_functions == 1 and updated.vector_format == reopened.vector_format
    # Rescored binary ranks, but does not fuse with BM25.
    rescored = VectorFormat(16, "binary", rescore=2)
    binary, _ = CodeIndex.build(
        matryoshka_run, str(root), embedder=embedder, vector_format=rescored
    )
    assert binary.embeddings.shape == (4, 2)
    assert len(binary.search("sort", top_k=2, ranking="dense")) == 2
    with pytest.raises(ValueError, match="do not fuse"):
        binary.search("sort", ranking="score_fusion")
