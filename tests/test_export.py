"""The export to sentence-transformers and transformers: a MiniLM-layout model directory
(its weights perturbed, so that they must come from the checkpoint) loads offline in both
and embeds like the Embedder; what cannot be exported exactly is refused by name."""

import json
import os

import jax
import numpy as np
import pytest

from cpt_jax import export, pretrained
from cpt_jax.embed import Embedder

torch = pytest.importorskip("torch")
sentence_transformers = pytest.importorskip("sentence_transformers")
transformers = pytest.importorskip("transformers")

LENGTHS = {"queries": 16, "documents": 64}
QUERIES = ["sort a list in place", "", "Ünïcödé façade", "read a file line by line"]
DOCUMENTS = QUERIES + ["def f(a):\n    return a + 1  # add one", "word " * 300]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    model = pretrained.load_minilm(log=lambda *_: None)
    rng = np.random.default_rng(0)
    params = jax.tree.map(
        lambda x: x + rng.normal(0, 0.02, x.shape).astype(np.float32), model.params
    )
    path = str(tmp_path_factory.mktemp("minilm_like") / "model")
    pretrained.write_model_dir(
        pretrained.PretrainedModel(model.config, params, model.tokenizer, model.source),
        path,
        LENGTHS,
    )
    return path


@pytest.fixture(scope="module")
def exported(model_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("exported") / "model")
    summary = export.export(model_dir, out)
    assert summary["step"] == 0 and summary["max_seq_length"] == 64
    return out


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def test_the_exported_tensors_read_back_to_the_same_parameters(model_dir):
    model = pretrained.load(model_dir)
    tensors = pretrained.bert_tensors(model.params, model.config)
    back = pretrained.bert_params(tensors, model.config)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(model.params)):
        np.testing.assert_array_equal(a, b)
    config = pretrained.bert_encoder_config(pretrained.bert_hf_config(model.config))
    assert config == model.config


def test_sentence_transformers_embeds_like_the_embedder(model_dir, exported):
    embedder = Embedder.from_checkpoint(model_dir)
    st = sentence_transformers.SentenceTransformer(exported, device="cpu", local_files_only=True)
    worst = 0.0
    for kind, texts in (("query", QUERIES), ("document", DOCUMENTS)):
        want = embedder.encode(texts, kind=kind)
        got = st.encode(texts, prompt_name=kind, convert_to_numpy=True)
        worst = max(worst, float(np.abs(got - want).max()))
    print(f"\nworst absolute difference, sentence-transformers vs Embedder: {worst:.2e}")
    assert worst <= 1e-4
    assert st.encode(["x"]).shape == (1, 384) and st.max_seq_length == 64


def test_transformers_loads_the_model_and_the_tokenizer(model_dir, exported):
    embedder = Embedder.from_checkpoint(model_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(exported, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(exported, local_files_only=True).eval()
    batch = tokenizer(DOCUMENTS, padding=True, truncation=True, max_length=64, return_tensors="pt")
    np.testing.assert_array_equal(
        batch["input_ids"].numpy(),
        embedder.tokenize(DOCUMENTS, "document")[:, : batch["input_ids"].shape[1]],
    )
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    worst = float(np.abs(pooled - embedder.encode(DOCUMENTS, kind="document")).max())
    print(f"\nworst absolute difference, transformers vs Embedder: {worst:.2e}")
    assert worst <= 1e-4


def test_the_model_card_and_the_sentence_transformers_files(model_dir, exported):
    with open(os.path.join(exported, "README.md"), encoding="utf-8") as f:
        card = f.read()
    assert "all-MiniLM-L6-v2" in card or "minilm" in card.lower()
    assert "queries 16, documents 64" in card and "max_seq_length" in card
    with open(os.path.join(exported, "1_Pooling", "config.json")) as f:
        assert json.load(f)["pooling_mode_mean_tokens"] is True
    with open(os.path.join(exported, "config_sentence_transformers.json")) as f:
        assert json.load(f)["prompts"] == {"query": "", "document": ""}


def test_what_cannot_be_exported_exactly_is_refused_by_name(
    tiny_run, model_dir, tmp_path, exported, capsys
):
    # tiny_run: causal, pre-LayerNorm, a SentencePiece vocabulary (GPT-2 layout).
    with pytest.raises(export.ExportError, match="only BERT-layout encoders"):
        export.export(tiny_run, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    assert export.main(["--checkpoint", tiny_run, "--output", str(tmp_path / "o")]) == 2
    assert "GPT-2 layout" in capsys.readouterr().err
    with pytest.raises(FileExistsError, match="not empty"):
        export.export(model_dir, exported)  # an earlier export is never overwritten
