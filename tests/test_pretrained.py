"""all-MiniLM-L6-v2 from its PyPI wheel: the converted encoder equals an independent float64
BERT forward pass, and its embeddings behave like a sentence encoder's."""

import json
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
    ids = minilm.tokenizer.encode(SENTENCES, "query", max_length=32)
    assert ids[0, 0] == 101 and (ids == 102).sum() == len(SENTENCES)  # [CLS] ... [SEP]
    got = np.asarray(Encoder(minilm.config).apply({"params": minilm.params}, ids))
    want = reference_bert(tensors, ids, minilm.config.num_heads, minilm.config.layer_norm_eps)
    print(f"MiniLM vs float64 reference: max abs diff {np.abs(got - want).max():.1e}")
    assert np.abs(got - want).max() <= 1e-4, np.abs(got - want).max()


def test_minilm_embeddings_rank_a_paraphrase_first(minilm):
    ids = minilm.tokenizer.encode(SENTENCES, "query", max_length=32)
    e = np.asarray(Encoder(minilm.config).apply({"params": minilm.params}, ids))
    similarity = e @ e.T
    print(f"MiniLM cosines: paraphrase {similarity[0, 1]:.3f}, unrelated {similarity[0, 2]:.3f}")
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


# -- GPT-2 family ----------------------------------------------------------------------------
GPT2_CONFIG = {
    "model_type": "gpt2",
    "vocab_size": 50,
    "n_embd": 32,
    "n_layer": 2,
    "n_head": 4,
    "n_positions": 16,
    "layer_norm_epsilon": 1e-5,
    "activation_function": "gelu_new",
}


def random_gpt2_tensors(seed=0, prefix="transformer."):
    """A random GPT-2 checkpoint with Hugging Face's tensor names and Conv1D layouts."""
    rng = np.random.default_rng(seed)
    d, v, p = GPT2_CONFIG["n_embd"], GPT2_CONFIG["vocab_size"], GPT2_CONFIG["n_positions"]
    t = {"wte.weight": (v, d), "wpe.weight": (p, d), "ln_f.weight": (d,), "ln_f.bias": (d,)}
    for i in range(GPT2_CONFIG["n_layer"]):
        t.update(
            {
                f"h.{i}.ln_1.weight": (d,),
                f"h.{i}.ln_1.bias": (d,),
                f"h.{i}.attn.c_attn.weight": (d, 3 * d),
                f"h.{i}.attn.c_attn.bias": (3 * d,),
                f"h.{i}.attn.c_proj.weight": (d, d),
                f"h.{i}.attn.c_proj.bias": (d,),
                f"h.{i}.ln_2.weight": (d,),
                f"h.{i}.ln_2.bias": (d,),
                f"h.{i}.mlp.c_fc.weight": (d, 4 * d),
                f"h.{i}.mlp.c_fc.bias": (4 * d,),
                f"h.{i}.mlp.c_proj.weight": (4 * d, d),
                f"h.{i}.mlp.c_proj.bias": (d,),
            }
        )
    tensors = {prefix + k: rng.normal(0, 0.2, s).astype(np.float32) for k, s in t.items()}
    tensors["lm_head.weight"] = tensors[prefix + "wte.weight"]  # tied, ignored
    return tensors


def reference_gpt2(t, ids, num_heads, eps):
    """GPT-2's forward pass in float64 (pre-LayerNorm, causal, tanh GELU), pooled at the last
    non-padding position, from the Hugging Face tensor names (no cpt-jax code)."""
    t = {k.removeprefix("transformer."): v.astype(np.float64) for k, v in t.items()}

    def ln(x, name):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + eps) * t[name + ".weight"] + t[name + ".bias"]

    def conv1d(x, name):
        return x @ t[name + ".weight"] + t[name + ".bias"]

    b, length = ids.shape
    x = t["wte.weight"][ids] + t["wpe.weight"][:length]
    d = x.shape[-1]
    k = d // num_heads
    allowed = (ids != 0)[:, None, None, :] & np.tril(np.ones((length, length), bool))
    for i in range(GPT2_CONFIG["n_layer"]):
        p = f"h.{i}."
        q, kk, v = np.split(conv1d(ln(x, p + "ln_1"), p + "attn.c_attn"), 3, axis=-1)
        heads = lambda y: y.reshape(b, length, num_heads, k).transpose(0, 2, 1, 3)
        scores = heads(q) @ heads(kk).transpose(0, 1, 3, 2) / math.sqrt(k)
        scores = np.where(allowed, scores, -np.inf)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ heads(v)).transpose(0, 2, 1, 3).reshape(b, length, d)
        x = x + conv1d(context, p + "attn.c_proj")
        hidden = conv1d(ln(x, p + "ln_2"), p + "mlp.c_fc")
        hidden = (
            0.5 * hidden * (1 + np.tanh(math.sqrt(2 / math.pi) * (hidden + 0.044715 * hidden**3)))
        )
        x = x + conv1d(hidden, p + "mlp.c_proj")
    x = ln(x, "ln_f")
    last = (ids != 0).sum(1) - 1
    pooled = x[np.arange(b), last]
    return pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)


@pytest.mark.parametrize("prefix", ["", "transformer."])
def test_converted_gpt2_equals_a_float64_reference_forward_pass(prefix):
    tensors = random_gpt2_tensors(prefix=prefix)
    if not prefix:
        del tensors["lm_head.weight"]
    config = pretrained.gpt2_encoder_config(GPT2_CONFIG, dropout_rate=0.0)
    assert (config.causal, config.pooling, config.layer_norm, config.d_ff) == (
        True,
        "eos",
        "pre",
        128,
    )
    params = pretrained.gpt2_params(tensors, config)
    ids = np.array([[5, 9, 3, 7, 1, 0, 0, 0], [4, 4, 4, 4, 4, 4, 4, 2]], np.int32)
    got = np.asarray(Encoder(config).apply({"params": params}, ids))
    want = reference_gpt2(tensors, ids, 4, 1e-5)
    assert np.abs(got - want).max() <= 1e-4, np.abs(got - want).max()
    init = jax.eval_shape(Encoder(config).init, jax.random.key(0), ids)
    assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, nn.unbox(init["params"]))
    tensors.pop(prefix + "h.1.mlp.c_fc.bias")
    with pytest.raises(ValueError, match=f"lacks tensor '{prefix}h.1.mlp.c_fc.bias'"):
        pretrained.gpt2_params(tensors, config)


def test_pretrained_embedder_and_zero_shot_cli(minilm, tmp_path):
    from cpt_jax import evaluate

    embedder = pretrained.embedder(minilm, max_length=32)
    ids = minilm.tokenizer.encode(SENTENCES, "document", max_length=32)
    want = np.asarray(Encoder(minilm.config).apply({"params": minilm.params}, ids))
    got = embedder.encode(SENTENCES, kind="query", batch_size=3)  # trimmed widths, 2 batches
    np.testing.assert_allclose(got, want, atol=1e-5)
    sts = tmp_path / "sts.tsv"
    sts.write_text(
        "text1\ttext2\tscore\n"
        "A man is eating food.\tA man is eating a piece of bread.\t4.2\n"
        "A man is eating food.\tThe girl is carrying a baby.\t0.2\n"
        "A man is playing a guitar.\tA man plays the guitar.\t4.9\n"
        "A woman is slicing an onion.\tA man is playing a flute.\t0.5\n"
    )
    output = tmp_path / "eval.json"
    argv = ["--pretrained", "minilm", "--similarity", str(sts), "--output", str(output)]
    assert evaluate.main(argv) == 0
    results = json.loads(output.read_text())
    assert results["model"] == "pretrained:minilm"
    assert results["similarity"]["model"]["spearman"] > 0.7  # real weights rank these right
