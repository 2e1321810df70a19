"""Encoders: parameter counts of the presets, masking and pooling, and a float64 numpy forward."""

import json
import os

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding

from cpt_jax import partitioning
from cpt_jax.models import LOGICAL_AXIS_NAMES, Encoder, EncoderConfig, count_params
from cpt_jax.models.transformer import dropout

GIN_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "gin_configs")
CAUSAL = EncoderConfig(vocab_size=50, num_layers=2, d_model=16, num_heads=2, d_ff=32, max_length=16)
BIDIRECTIONAL = EncoderConfig(
    vocab_size=50,
    num_layers=2,
    d_model=16,
    num_heads=2,
    d_ff=32,
    max_length=16,
    causal=False,
    pooling="mean",
    layer_norm="post",
    activation="gelu_exact",
    layer_norm_eps=1e-12,
    projection_dim=8,
)
CLS = EncoderConfig(**{**BIDIRECTIONAL.to_dict(), "pooling": "cls", "projection_dim": None})
CONFIGS = pytest.mark.parametrize(
    "config", [CAUSAL, BIDIRECTIONAL, CLS], ids=["causal", "bidirectional", "cls"]
)


def preset(size, vocab_size, architecture="causal"):
    gin.clear_config()
    gin.add_config_file_search_path(GIN_DIR)
    gin.parse_config_files_and_bindings(
        [f"{GIN_DIR}/architectures/{architecture}.gin", f"{GIN_DIR}/models/{size}.gin"],
        [f"VOCAB_SIZE = {vocab_size}"],
    )
    try:
        return EncoderConfig()
    finally:
        gin.clear_config()


@pytest.mark.parametrize("size, target", [("S", 300e6), ("M", 1.2e9), ("L", 6e9), ("XL", 175e9)])
def test_paper_size_presets_have_the_paper_parameter_counts(size, target):
    # The paper's sizes are the GPT-3 shapes. Their transformer bodies match (S: 302M); the
    # totals include embeddings, which depend on the vocabulary: with GPT-3's 50,257 BPE
    # vocabulary the S total is 353M (+18%), with a 32,000-piece SentencePiece one 337M. So
    # the total is checked at 32k and the body at 50,257, both within 15%.
    total, _ = count_params(preset(size, 32000))
    _, body = count_params(preset(size, 50257))
    assert abs(total - target) / target < 0.15, (size, total)
    assert abs(body - target) / target < 0.15, (size, body)


def test_tiny_parameter_counts_match_formula():
    d, f, layers, v, pos = 16, 32, 2, 50, 16
    per_layer = 4 * (d * d + d) + (d * f + f) + (f * d + d) + 2 * 2 * d  # attn, mlp, 2 LNs
    # Causal pre-LN: token + position embeddings, layers, final LN.
    expected = v * d + pos * d + layers * per_layer + 2 * d
    assert count_params(CAUSAL) == (expected, expected - v * d - pos * d)
    # Bidirectional post-LN: + token types (2) and embedding LN, no final LN, + projection.
    embeddings = v * d + pos * d + 2 * d
    expected = embeddings + 2 * d + layers * per_layer + d * 8
    assert count_params(BIDIRECTIONAL) == (expected, expected - embeddings)


def test_minilm_preset_has_the_all_minilm_l6_v2_parameter_count():
    # all-MiniLM-L6-v2 has 22,713,216 parameters, 147,840 of which are BERT's pooler (a
    # 384x384 dense + bias that sentence-transformers never uses); the rest maps 1:1.
    total, _ = count_params(preset("minilm", 30522, "bidirectional"))
    assert total == 22_713_216 - (384 * 384 + 384)


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_small_presets_parse(size):
    config = preset(size, 1024)
    assert config.vocab_size == 1024 and config.causal and config.pooling == "eos"
    total, body = count_params(config)
    assert 0 < body < total


def init(config, seed=0):
    tokens = jnp.ones((2, config.max_length), jnp.int32)
    return nn.unbox(Encoder(config).init(jax.random.key(seed), tokens)["params"])


def hidden_states(config, params, tokens):
    """The last layer's hidden states `[b, L, D]` (after `final_norm` when pre-LN)."""
    _, state = Encoder(config).apply(
        {"params": params}, tokens, capture_intermediates=True, mutable=["intermediates"]
    )
    last = "final_norm" if config.layer_norm == "pre" else f"layer_{config.num_layers - 1}"
    return np.asarray(state["intermediates"][last]["__call__"][0])


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def tokens_with_padding(lengths, width, seed=0, vocab=50):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, vocab, (len(lengths), width)).astype(np.int32)
    for row, n in enumerate(lengths):
        tokens[row, n:] = 0
    return tokens


# -- float64 numpy reference forward ---------------------------------------------------------
def _np_layer_norm(x, p, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def _np_gelu(x, exact):
    if exact:
        from scipy.special import erf

        return 0.5 * x * (1 + erf(x / np.sqrt(2)))
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def numpy_forward(params, tokens, c):
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    b, length = tokens.shape
    mask = tokens != 0
    x = p["token_embedding"][tokens] + p["position_embedding"][:length]
    if c.layer_norm == "post":
        x = _np_layer_norm(x + p["token_type_embedding"][0], p["embedding_norm"], c.layer_norm_eps)
    allowed = mask[:, None, None, :]
    if c.causal:
        allowed = allowed & np.tril(np.ones((length, length), bool))
    for i in range(c.num_layers):
        lp = p[f"layer_{i}"]

        def attention(h, lp=lp):
            a = lp["attention"]
            q, k, v = (
                np.einsum("bld,dhk->blhk", h, a[n + "_kernel"]) + a[n + "_bias"]
                for n in ("query", "key", "value")
            )
            s = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(c.head_dim)
            s = np.where(allowed, s, -1e9)
            w = np.exp(s - s.max(-1, keepdims=True))
            w /= w.sum(-1, keepdims=True)
            ctx = np.einsum("bhqk,bkhd->bqhd", w, v)
            return np.einsum("bqhd,hde->bqe", ctx, a["out_kernel"]) + a["out_bias"]

        def mlp(h, lp=lp):
            m = lp["mlp"]
            h = _np_gelu(h @ m["wi"]["kernel"] + m["wi"]["bias"], c.activation == "gelu_exact")
            return h @ m["wo"]["kernel"] + m["wo"]["bias"]

        eps = c.layer_norm_eps
        if c.layer_norm == "pre":
            x = x + attention(_np_layer_norm(x, lp["attention_norm"], eps))
            x = x + mlp(_np_layer_norm(x, lp["mlp_norm"], eps))
        else:
            x = _np_layer_norm(x + attention(x), lp["attention_norm"], eps)
            x = _np_layer_norm(x + mlp(x), lp["mlp_norm"], eps)
    if c.layer_norm == "pre":
        x = _np_layer_norm(x, p["final_norm"], c.layer_norm_eps)
    if c.pooling == "eos":
        pooled = x[np.arange(b), mask.sum(1) - 1]
    elif c.pooling == "cls":
        pooled = x[:, 0]
    else:
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    if c.projection_dim:
        pooled = pooled @ p["projection"]["kernel"]
    return pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)


@CONFIGS
def test_forward_matches_float64_numpy(config):
    params = init(config, seed=1)
    # Scale up the (tiny at init) parameters so that every term matters.
    params = jax.tree.map(lambda x: x * 5 if x.ndim >= 2 else x + 0.1, params)
    tokens = tokens_with_padding([16, 9, 3, 1], 16, seed=2)
    got = Encoder(config).apply({"params": params}, tokens)
    np.testing.assert_allclose(np.asarray(got), numpy_forward(params, tokens, config), atol=1e-5)


def test_causal_hidden_states_do_not_see_the_future():
    params = init(CAUSAL)
    tokens = tokens_with_padding([12, 16], 16, seed=3)
    changed = tokens.copy()
    changed[:, 6:12] = tokens[:, 6:12] % 49 + 1  # still non-padding, every token different
    before, after = hidden_states(CAUSAL, params, tokens), hidden_states(CAUSAL, params, changed)
    np.testing.assert_allclose(before[:, :6], after[:, :6], atol=1e-6)
    assert not np.allclose(before[:, 6:12], after[:, 6:12], atol=1e-4)
    # The bidirectional encoder, by contrast, lets every position see the change.
    params = init(BIDIRECTIONAL)
    before = hidden_states(BIDIRECTIONAL, params, tokens)
    after = hidden_states(BIDIRECTIONAL, params, changed)
    assert not np.allclose(before[:, :6], after[:, :6], atol=1e-4)


@CONFIGS
def test_right_padding_does_not_change_embeddings(config):
    params = init(config)
    tokens = tokens_with_padding([5, 8], 8, seed=4)
    wider = np.zeros((2, 16), np.int32)
    wider[:, :8] = tokens
    apply = lambda t: np.asarray(Encoder(config).apply({"params": params}, t))
    np.testing.assert_allclose(apply(tokens), apply(wider), atol=1e-6)


def test_pooling_reads_the_right_positions():
    tokens = tokens_with_padding([6, 16, 1, 11], 16, seed=5)
    rows = np.arange(4)
    # EOS: the last non-padding position of each row (where the [EOS] delimiter sits).
    params = init(CAUSAL)
    out = np.asarray(Encoder(CAUSAL).apply({"params": params}, tokens))
    hidden = hidden_states(CAUSAL, params, tokens)
    np.testing.assert_allclose(out, unit(hidden[rows, [5, 15, 0, 10]]), atol=1e-6)
    # CLS: position 0.
    params = init(CLS)
    out = np.asarray(Encoder(CLS).apply({"params": params}, tokens))
    np.testing.assert_allclose(out, unit(hidden_states(CLS, params, tokens)[:, 0]), atol=1e-6)
    # Mean: over non-padding positions only (then the projection).
    params = init(BIDIRECTIONAL)
    out = np.asarray(Encoder(BIDIRECTIONAL).apply({"params": params}, tokens))
    hidden = hidden_states(BIDIRECTIONAL, params, tokens)
    mask = (tokens != 0)[..., None]
    mean = (hidden * mask).sum(1) / mask.sum(1)
    expected = unit(mean @ np.asarray(params["projection"]["kernel"]))
    np.testing.assert_allclose(out, expected, atol=1e-6)


@CONFIGS
def test_outputs_unit_norm_and_all_padding_rows_finite(config):
    params = init(config)
    tokens = tokens_with_padding([4, 8, 0], 8, seed=6)
    model = Encoder(config)
    out = np.asarray(model.apply({"params": params}, tokens))
    assert out.shape == (3, config.embedding_dim) and out.dtype == np.float32
    assert np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out[:2], axis=-1), 1.0, rtol=1e-6)
    # ...and their gradients are finite too.
    grads = jax.grad(lambda p: jnp.sum(model.apply({"params": p}, tokens)[2]))(params)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_dropout_and_remat():
    config = EncoderConfig(**{**CAUSAL.to_dict(), "dropout_rate": 0.3})
    params = init(config)
    tokens = tokens_with_padding([10, 7], 16, seed=7)
    model = Encoder(config)
    remat = Encoder(EncoderConfig(**{**config.to_dict(), "remat": True}))

    @jax.jit
    def run(p, key):
        return model.apply({"params": p}, tokens, deterministic=False, rngs={"dropout": key})

    a, b = run(params, jax.random.key(1)), run(params, jax.random.key(2))
    assert not np.allclose(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(run(params, jax.random.key(1))))
    # deterministic=True: no dropout, needs no rng, equals the dropout-free model.
    no_dropout = Encoder(CAUSAL).apply({"params": params}, tokens)
    np.testing.assert_array_equal(
        np.asarray(model.apply({"params": params}, tokens)), np.asarray(no_dropout)
    )

    def loss(m, p):
        out = m.apply(
            {"params": p}, tokens, deterministic=False, rngs={"dropout": jax.random.key(1)}
        )
        return jnp.sum(out[0] * out[1]), out

    grad = lambda m: jax.jit(jax.grad(lambda p: loss(m, p), has_aux=True))(params)
    (g1, out1), (g2, out2) = grad(model), grad(remat)
    np.testing.assert_allclose(np.asarray(out1), np.asarray(out2), rtol=1e-6, atol=1e-6)
    for x, y in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_dropout_drops_the_rate_and_stays_unbiased(rate):
    x = jnp.ones((64, 999))  # odd width: the last 32-bit word is half used
    out = dropout(x, rate, jax.random.key(0), jnp.arange(64))
    out = np.asarray(out)
    dropped = (out == 0).mean()
    assert abs(dropped - rate) < 0.006, dropped  # 64k draws: ~4 standard deviations
    assert abs(out.mean() - 1.0) < 0.01, out.mean()
    np.testing.assert_allclose(out[out != 0], 1 / (1 - rate), rtol=1e-4)
    # Every row's mask differs (ids differ), including its two 16-bit halves of each word.
    assert len({row.tobytes() for row in (out == 0)}) == 64
    assert not np.array_equal(out[:, 0::2][:, :499] == 0, out[:, 1::2] == 0)
    with pytest.raises(ValueError, match="dropout rate must be in"):
        dropout(x, 1.0, jax.random.key(0), jnp.arange(64))


@CONFIGS
def test_dropout_masks_follow_example_ids_not_batch_composition(config):
    """Row i's masks depend only on (key, example_ids[i]): a batch encoded whole equals its
    halves encoded apart with the same ids (what gradient caching relies on), and a row's
    output changes when its id does."""
    config = EncoderConfig(**{**config.to_dict(), "dropout_rate": 0.3})
    params = init(config)
    tokens = tokens_with_padding([10, 7, 16, 3, 12, 9], 16, seed=8)
    ids = jnp.array([5, 0, 11, 2, 7, 40])

    @jax.jit
    def run(tokens, ids):
        return Encoder(config).apply(
            {"params": params},
            tokens,
            deterministic=False,
            example_ids=ids,
            rngs={"dropout": jax.random.key(4)},
        )

    whole = np.asarray(run(tokens, ids))
    halves = np.concatenate([np.asarray(run(tokens[i : i + 3], ids[i : i + 3])) for i in (0, 3)])
    np.testing.assert_allclose(halves, whole, rtol=1e-6, atol=1e-6)
    reversed_rows = np.asarray(run(tokens[::-1], ids[::-1]))[::-1]
    np.testing.assert_allclose(reversed_rows, whole, rtol=1e-6, atol=1e-6)
    other_ids = np.asarray(run(tokens, ids + 1))
    assert not np.allclose(other_ids, whole, atol=1e-3)
    # Identical texts under different ids get different masks: dropout noise per example.
    same = np.asarray(run(jnp.tile(tokens[:1], (2, 1)), ids[:2]))
    assert not np.allclose(same[0], same[1], atol=1e-3)


def test_remat_keeps_one_layer_of_activations():
    """XLA's accounting of the compiled gradient: with remat the temporaries are a fraction
    of the plain model's (only each layer's input is kept for the backward pass)."""

    def temp_bytes(remat):
        config = EncoderConfig(
            **{**BIDIRECTIONAL.to_dict(), "num_layers": 6, "max_length": 64, "remat": remat}
        )
        model = Encoder(config)
        tokens = jax.ShapeDtypeStruct((64, 64), jnp.int32)
        params = jax.eval_shape(model.init, jax.random.key(0), tokens)["params"]

        def loss(p, t):
            out = model.apply(
                {"params": p}, t, deterministic=False, rngs={"dropout": jax.random.key(0)}
            )
            return jnp.sum(out[:, 0])

        compiled = jax.jit(jax.grad(loss)).lower(nn.unbox(params), tokens).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    plain, remat = temp_bytes(False), temp_bytes(True)
    assert remat < plain / 2.5, (remat, plain)


def test_bfloat16_activations_keep_float32_params_and_outputs():
    config = EncoderConfig(**{**CAUSAL.to_dict(), "dtype": "bfloat16"})
    params = init(config)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    tokens = tokens_with_padding([10, 7], 16, seed=9)
    out = Encoder(config).apply({"params": params}, tokens)
    assert out.dtype == jnp.float32
    reference = Encoder(CAUSAL).apply({"params": params}, tokens)
    np.testing.assert_allclose(np.asarray(out), np.asarray(reference), atol=5e-2)


def test_every_parameter_has_logical_axes_and_sharded_forward_matches():
    boxed = Encoder(BIDIRECTIONAL).init(jax.random.key(0), jnp.ones((1, 4), jnp.int32))["params"]
    specs = nn.get_partition_spec(boxed)
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
    assert all(isinstance(x, nn.Partitioned) for x in leaves)
    for spec in jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)):
        assert set(spec) <= set(LOGICAL_AXIS_NAMES), spec

    config = EncoderConfig(**{**BIDIRECTIONAL.to_dict(), "vocab_size": 64})
    mesh = partitioning.make_mesh(data=4, model=2)
    rules = partitioning.logical_axis_rules()
    params = init(config)
    shardings = partitioning.logical_to_shardings(
        nn.get_partition_spec(
            Encoder(config).init(jax.random.key(0), jnp.ones((1, 4), jnp.int32))["params"]
        ),
        mesh,
        rules,
    )
    sharded = jax.device_put(params, shardings)
    assert any("model" in tuple(s.spec) for s in jax.tree.leaves(shardings))
    tokens = tokens_with_padding([5, 8, 3, 1, 2, 8, 7, 6], 8, seed=8)

    @jax.jit
    def apply(p, t):
        with nn.logical_axis_rules(rules):
            return Encoder(config).apply({"params": p}, t)

    with jax.set_mesh(mesh):
        out = apply(
            sharded,
            jax.device_put(tokens, NamedSharding(mesh, partitioning.batch_sharding(mesh).spec)),
        )
    plain = Encoder(config).apply({"params": params}, tokens)
    np.testing.assert_allclose(np.asarray(out), np.asarray(plain), atol=1e-5)


def test_logical_constraints_are_no_ops_without_rules():
    params = init(CAUSAL)
    tokens = tokens_with_padding([5, 8, 3, 1, 2, 8, 7, 6], 8, seed=10)
    mesh = partitioning.make_mesh(data=4, model=2)
    with jax.set_mesh(mesh):
        out = jax.jit(lambda p, t: Encoder(CAUSAL).apply({"params": p}, t))(params, tokens)
    plain = Encoder(CAUSAL).apply({"params": params}, tokens)
    np.testing.assert_allclose(np.asarray(out), np.asarray(plain), atol=1e-6)


def test_config_round_trip_and_errors():
    assert EncoderConfig.from_dict(BIDIRECTIONAL.to_dict()) == BIDIRECTIONAL
    assert EncoderConfig.from_dict(json.loads(json.dumps(CAUSAL.to_dict()))) == CAUSAL
    assert CAUSAL.embedding_dim == 16 and BIDIRECTIONAL.embedding_dim == 8
    with pytest.raises(ValueError, match="pooling='cls' with causal=True"):
        EncoderConfig(pooling="cls")
    with pytest.raises(ValueError, match=r"unknown fields \['colour'\]"):
        EncoderConfig.from_dict({**CAUSAL.to_dict(), "colour": 1})
    without_causal = {k: v for k, v in CAUSAL.to_dict().items() if k != "causal"}
    with pytest.raises(ValueError, match=r"missing fields \['causal'\]"):
        EncoderConfig.from_dict(without_causal)  # a default would change the model silently
    with pytest.raises(ValueError, match=r"d_model must be int, got str '16'"):
        EncoderConfig.from_dict({**CAUSAL.to_dict(), "d_model": "16"})
    with pytest.raises(ValueError, match=r"causal must be bool, got int 1"):
        EncoderConfig.from_dict({**CAUSAL.to_dict(), "causal": 1})
    with pytest.raises(ValueError, match=r"num_layers must be int, got bool"):
        EncoderConfig.from_dict({**CAUSAL.to_dict(), "num_layers": True})
    assert EncoderConfig.from_dict({**CAUSAL.to_dict(), "layer_norm_eps": 1}).layer_norm_eps == 1
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        EncoderConfig(d_model=30, num_heads=4)
    with pytest.raises(ValueError, match="pooling must be one of"):
        EncoderConfig(pooling="max")
    with pytest.raises(ValueError, match="exceeds EncoderConfig.max_length"):
        Encoder(CAUSAL).init(jax.random.key(0), jnp.ones((1, 17), jnp.int32))
