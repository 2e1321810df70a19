"""all-MiniLM-L6-v2 from its PyPI wheel: the converted encoder equals an independent float64
BERT forward pass, and its embeddings behave like a sentence encoder's."""

import math

import flax.linen as nn
import jax
import numpy as np
import pytest

from cpt_jax import pretrained
from cpt_jax.models import Encoder

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "def parse_date(s): return datetime.strptime(s, '%Y-%m-%d')",
]


@pytest.fixture(scope="module")
def minilm():
    return pretrained.load_minilm(log=lambda *_: None)


@pytest.fixture(scope="module")
def tensors():
    from safetensors.numpy import load

    files = pretrained.read_wheel_model(
        pretrained.download_path(), pretrained.MINILM_MODEL_DIR, None
    )
    return {k: v.astype(np.float64) for k, v in load(files["safetensors"]).items()}


def reference_bert(t, ids, num_heads, eps):
    """BERT's forward pass and mean pooling in float64, written from the BERT paper's
    description and the Hugging Face tensor names (no cpt-jax code)."""
    erf = np.vectorize(math.erf)

    def ln(x, name):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + eps) * t[name + ".weight"] + t[name + ".bias"]

    def linear(x, name):
        return x @ t[name + ".weight"].T + t[name + ".bias"]

    mask = ids != 0
    b, length = ids.shape
    x = (
        t["embeddings.word_embeddings.weight"][ids]
        + t["embeddings.position_embeddings.weight"][:length]
        + t["embeddings.token_type_embeddings.weight"][0]
    )
    x = ln(x, "embeddings.LayerNorm")
    d = x.shape[-1]
    k = d // num_heads
    i = 0
    while f"encoder.layer.{i}.attention.self.query.weight" in t:
        p = f"encoder.layer.{i}."
        heads = lambda y: y.reshape(b, length, num_heads, k).transpose(0, 2, 1, 3)
        q = heads(linear(x, p + "attention.self.query"))
        kk = heads(linear(x, p + "attention.self.key"))
        v = heads(linear(x, p + "attention.self.value"))
        scores = q @ kk.transpose(0, 1, 3, 2) / math.sqrt(k)
        scores = np.where(mask[:, None, None, :], scores, -np.inf)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(b, length, d)
        x = ln(x + linear(context, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        hidden = linear(x, p + "intermediate.dense")
        hidden = 0.5 * hidden * (1 + erf(hidden / math.sqrt(2)))
        x = ln(x + linear(hidden, p + "output.dense"), p + "output.LayerNorm")
        i += 1
    weights = mask[..., None].astype(np.float64)
    pooled = (x * weights).sum(1) / weights.sum(1)
    return pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)


def test_converted_minilm_equals_a_float64_reference_forward_pass(minilm, tensors):
    ids = pretrained.encode_batch(minilm.tokenizer, SENTENCES, max_length=32)
    assert ids[0, 0] == 101 and (ids == 102).sum() == len(SENTENCES)  # [CLS] ... [SEP]
    got = np.asarray(Encoder(minilm.config).apply({"params": minilm.params}, ids))
    want = reference_bert(tensors, ids, minilm.config.num_heads, minilm.config.layer_norm_eps)
    assert np.abs(got - want).max() <= 1e-4, np.abs(got - want).max()


def test_minilm_embeddings_rank_a_paraphrase_first(minilm):
    ids = pretrained.encode_batch(minilm.tokenizer, SENTENCES, max_length=32)
    e = np.asarray(Encoder(minilm.config).apply({"params": minilm.params}, ids))
    similarity = e @ e.T
    assert similarity[0, 1] > 0.6  # paraphrases
    assert similarity[0, 1] > similarity[0, 2] + 0.3 and similarity[0, 1] > similarity[0, 3]


def test_config_and_errors(minilm, tensors):
    c = minilm.config
    assert (c.vocab_size, c.num_layers, c.d_model, c.num_heads, c.d_ff) == (30522, 6, 384, 12, 1536)
    assert (c.layer_norm, c.pooling, c.activation, c.causal) == (
        "post",
        "mean",
        "gelu_exact",
        False,
    )
    shapes = jax.tree.map(np.shape, minilm.params)
    init = jax.eval_shape(Encoder(c).init, jax.random.key(0), np.zeros((1, 8), np.int32))
    assert shapes == jax.tree.map(np.shape, nn.unbox(init["params"]))  # the exact tree
    broken = dict(tensors)
    del broken["encoder.layer.3.output.dense.bias"]
    with pytest.raises(ValueError, match="lacks tensor 'encoder.layer.3.output.dense.bias'"):
        pretrained.bert_params(broken, c)
    with pytest.raises(ValueError, match="model.safetensors has sha256"):
        pretrained.read_wheel_model(
            pretrained.download_path(), pretrained.MINILM_MODEL_DIR, "0" * 64
        )
