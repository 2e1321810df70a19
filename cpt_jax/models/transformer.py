"""Transformer encoders with logical axis names on every parameter and activation.

One module covers both of the encoders that cpt-jax needs:
  - the paper's: causal (GPT-2 layout, pre-LayerNorm), whose embedding is the last layer's
    hidden state at the `[EOS]` delimiter that closes every input;
  - a bidirectional BERT-style encoder (post-LayerNorm, token-type embeddings) with mean
    pooling, whose parameters map one-to-one onto BERT-family checkpoints.

Inputs are right-padded token ids `[b, L]` with 0 as padding; outputs are L2-normalised
float32 embeddings `[b, D]`.

Parameter layout (`layer_{i}` repeated `num_layers` times; every leaf is float32):
  token_embedding [vocab, embed]                 BERT word_embeddings     GPT-2 wte
  position_embedding [pos, embed]                BERT position_embeddings GPT-2 wpe
  token_type_embedding [type, embed]  (post-LN)  BERT token_type_embeddings
  embedding_norm/{scale,bias} [embed] (post-LN)  BERT embeddings.LayerNorm
  layer_{i}/attention/{query,key,value}_kernel [embed, heads, kv], ..._bias [heads, kv]
                                                 BERT attention.self.{query,key,value}
                                                 GPT-2 attn.c_attn (split in three)
  layer_{i}/attention/out_kernel [heads, kv, embed], out_bias [embed]
                                                 BERT attention.output.dense  GPT-2 attn.c_proj
  layer_{i}/attention_norm/{scale,bias}          BERT attention.output.LayerNorm  GPT-2 ln_1
  layer_{i}/mlp/wi/{kernel [embed, mlp], bias [mlp]}
                                                 BERT intermediate.dense  GPT-2 mlp.c_fc
  layer_{i}/mlp/wo/{kernel [mlp, embed], bias [embed]}
                                                 BERT output.dense  GPT-2 mlp.c_proj
  layer_{i}/mlp_norm/{scale,bias}                BERT output.LayerNorm  GPT-2 ln_2
  final_norm/{scale,bias}             (pre-LN)   GPT-2 ln_f
  projection/kernel [embed, embed_out] (when projection_dim is set; no bias)
Kernels are `[in, out]` (HF PyTorch Linear weights are `[out, in]`; GPT-2's Conv1D already
`[in, out]`); head axes are split out as `[embed, heads, kv]` / `[heads, kv, embed]`.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cpt_jax.models.config import EncoderConfig

LOGICAL_AXIS_NAMES = (
    # parameters
    "vocab",  # token ids
    "pos",  # learned positions
    "type",  # token types (BERT)
    "embed",  # model width
    "heads",  # attention heads
    "kv",  # per-head width
    "mlp",  # feed-forward width
    "embed_out",  # output projection width
    # activations (also 'embed', 'heads', 'kv', 'mlp')
    "batch",
    "length",
)
"""Every logical axis name used by the encoders; `partitioning.logical_axis_rules` maps each."""

_MASK_VALUE = -1e9  # finite, so an all-padding row attends uniformly instead of giving NaN


def _init(initializer, axes):
    return nn.with_logical_partitioning(initializer, axes)


def _activation(name: str):
    return {
        "gelu": functools.partial(jax.nn.gelu, approximate=True),
        "gelu_exact": functools.partial(jax.nn.gelu, approximate=False),
        "relu": jax.nn.relu,
    }[name]


def layer_norm(eps: float, dtype, name: str) -> nn.LayerNorm:
    """LayerNorm over `embed`; its `scale` and `bias` sit directly under `name`."""
    return nn.LayerNorm(
        epsilon=eps,
        dtype=dtype,
        scale_init=_init(nn.initializers.ones, ("embed",)),
        bias_init=_init(nn.initializers.zeros, ("embed",)),
        name=name,
    )


def dropout(x: jax.Array, rate: float, key: jax.Array | None, example_ids: jax.Array):
    """Inverted dropout whose mask for row i depends only on `(key, example_ids[i])`.

    `nn.Dropout` draws one mask for the whole `[b, ...]` array, so an example's mask changes
    with the batch it sits in. Here row i's mask comes from `fold_in(key, example_ids[i])`:
    encoding a batch in chunks (gradient caching), or on another mesh, replays exactly the
    masks of encoding it whole. `key=None` (or `rate=0`) is the identity.

    Each 32-bit random word decides two elements (16 bits each): random bit generation is a
    fifth of a CPU train step otherwise. The keep probability is thereby rounded to a
    multiple of 2^-16 (at most 7.6e-6 off) and the kept values are scaled by the inverse of
    that rounded probability, so the output stays unbiased.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    if key is None or rate == 0.0:
        return x
    threshold = round((1.0 - rate) * 65536)  # keep iff a 16-bit draw < threshold
    per_example = int(np.prod(x.shape[1:]))
    keys = jax.vmap(jax.random.fold_in, (None, 0))(key, example_ids)
    words = jax.vmap(lambda k: jax.random.bits(k, ((per_example + 1) // 2,)))(keys)
    draws = jnp.stack([words & 0xFFFF, words >> 16], axis=-1).reshape(x.shape[0], -1)
    keep = draws[:, :per_example].reshape(x.shape) < threshold
    return jnp.where(keep, x * (65536.0 / threshold), 0.0).astype(x.dtype)


def _site_key(key: jax.Array | None, site: int) -> jax.Array | None:
    """An independent key per dropout site of a layer (None stays None: no dropout)."""
    return None if key is None else jax.random.fold_in(key, site)


class Attention(nn.Module):
    config: EncoderConfig

    @nn.compact
    def __call__(self, x, attention_bias, example_ids, dropout_key):
        c = self.config
        dtype = jnp.dtype(c.dtype)
        kernel = nn.initializers.normal(0.02)

        # Explicit parameters rather than DenseGeneral: its initializer sees a flattened
        # kernel shape, which breaks the 3-D logical annotation under a mesh.
        def dense(name, kernel_shape, kernel_axes, bias_shape, bias_axes):
            return {
                "kernel": self.param(name + "_kernel", _init(kernel, kernel_axes), kernel_shape),
                "bias": self.param(
                    name + "_bias", _init(nn.initializers.zeros, bias_axes), bias_shape
                ),
            }

        heads = (c.num_heads, c.head_dim)

        def project(name):
            p = dense(name, (c.d_model, *heads), ("embed", "heads", "kv"), heads, ("heads", "kv"))
            y = jnp.einsum("bld,dhk->blhk", x, p["kernel"].astype(dtype)) + p["bias"].astype(dtype)
            return nn.with_logical_constraint(y, ("batch", "length", "heads", "kv"))

        query, key, value = project("query"), project("key"), project("value")
        scores = jnp.einsum("bqhd,bkhd->bhqk", query, key, preferred_element_type=jnp.float32)
        scores = scores / np.sqrt(c.head_dim) + attention_bias
        probs = jax.nn.softmax(scores, axis=-1).astype(dtype)
        probs = dropout(probs, c.dropout_rate, dropout_key, example_ids)
        context = jnp.einsum("bhqk,bkhd->bqhd", probs, value)
        context = nn.with_logical_constraint(context, ("batch", "length", "heads", "kv"))
        p = dense("out", (*heads, c.d_model), ("heads", "kv", "embed"), (c.d_model,), ("embed",))
        out = jnp.einsum("blhk,hkd->bld", context, p["kernel"].astype(dtype)) + p["bias"].astype(
            dtype
        )
        return nn.with_logical_constraint(out, ("batch", "length", "embed"))


class Mlp(nn.Module):
    config: EncoderConfig

    @nn.compact
    def __call__(self, x):
        c = self.config
        dtype = jnp.dtype(c.dtype)
        kernel = nn.initializers.normal(0.02)
        h = nn.Dense(
            c.d_ff,
            dtype=dtype,
            kernel_init=_init(kernel, ("embed", "mlp")),
            bias_init=_init(nn.initializers.zeros, ("mlp",)),
            name="wi",
        )(x)
        h = nn.with_logical_constraint(_activation(c.activation)(h), ("batch", "length", "mlp"))
        out = nn.Dense(
            c.d_model,
            dtype=dtype,
            kernel_init=_init(kernel, ("mlp", "embed")),
            bias_init=_init(nn.initializers.zeros, ("embed",)),
            name="wo",
        )(h)
        return nn.with_logical_constraint(out, ("batch", "length", "embed"))


class Block(nn.Module):
    """One transformer layer, pre- or post-LayerNorm.

    `dropout_key` (None: no dropout) seeds the layer's three dropout sites: attention
    probabilities, after attention, after the MLP.
    """

    config: EncoderConfig

    @nn.compact
    def __call__(self, x, attention_bias, example_ids, dropout_key):
        c = self.config
        dtype = jnp.dtype(c.dtype)
        attention = Attention(c, name="attention")
        mlp = Mlp(c, name="mlp")
        attention_norm = layer_norm(c.layer_norm_eps, dtype, name="attention_norm")
        mlp_norm = layer_norm(c.layer_norm_eps, dtype, name="mlp_norm")
        drop = lambda y, site: dropout(y, c.dropout_rate, _site_key(dropout_key, site), example_ids)
        attend = lambda y: attention(y, attention_bias, example_ids, _site_key(dropout_key, 0))
        if c.layer_norm == "pre":
            x = x + drop(attend(attention_norm(x)), 1)
            x = x + drop(mlp(mlp_norm(x)), 2)
        else:
            x = attention_norm(x + drop(attend(x), 1))
            x = mlp_norm(x + drop(mlp(x), 2))
        return nn.with_logical_constraint(x, ("batch", "length", "embed"))


def _pool(hidden, mask, pooling: str):
    """`[b, L, D]` hidden states and `[b, L]` padding mask -> `[b, D]`."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "eos":
        last = jnp.maximum(jnp.sum(mask, axis=1) - 1, 0)
        return jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]
    weights = mask.astype(hidden.dtype)[..., None]
    return jnp.sum(hidden * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1.0)


class Encoder(nn.Module):
    """Token ids `[b, L]` (0 = padding) -> unit-norm float32 embeddings `[b, D]`.

    Example:
      model = Encoder(EncoderConfig())
      params = model.init(jax.random.key(0), tokens)["params"]
      embeddings = model.apply({"params": params}, tokens)              # deterministic
      embeddings = model.apply({"params": params}, tokens, deterministic=False,
                               rngs={"dropout": key})                   # with dropout
    With dropout, example i's masks depend only on the key and `example_ids[i]`
    (see `dropout`), not on which other examples share its batch.
    """

    config: EncoderConfig

    @nn.compact
    def __call__(
        self,
        tokens: jax.Array,
        *,
        deterministic: bool = True,
        example_ids: jax.Array | None = None,
    ) -> jax.Array:
        """`example_ids [b]` (default `arange(b)`) seed each example's dropout masks."""
        c = self.config
        dtype = jnp.dtype(c.dtype)
        length = tokens.shape[1]
        if length > c.max_length:
            raise ValueError(
                f"input length {length} exceeds EncoderConfig.max_length={c.max_length}"
            )
        tokens = nn.with_logical_constraint(tokens, ("batch", "length"))
        mask = tokens != 0

        embed_init = nn.initializers.normal(0.02)
        token_embedding = self.param(
            "token_embedding", _init(embed_init, ("vocab", "embed")), (c.vocab_size, c.d_model)
        )
        position_embedding = self.param(
            "position_embedding", _init(embed_init, ("pos", "embed")), (c.max_length, c.d_model)
        )
        x = jnp.take(token_embedding, tokens, axis=0) + position_embedding[None, :length]
        if c.layer_norm == "post":
            token_type_embedding = self.param(
                "token_type_embedding", _init(embed_init, ("type", "embed")), (2, c.d_model)
            )
            x = x + token_type_embedding[0]
            x = layer_norm(c.layer_norm_eps, dtype, name="embedding_norm")(x)
        if example_ids is None:
            example_ids = jnp.arange(tokens.shape[0])
        # One key per layer (and one for the embeddings), derived the same way whether or
        # not the layers are rematerialised, so remat never changes the masks.
        dropout_key = None if deterministic or not c.dropout_rate else self.make_rng("dropout")
        x = dropout(
            x.astype(dtype), c.dropout_rate, _site_key(dropout_key, c.num_layers), example_ids
        )
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))

        allowed = mask[:, None, None, :]
        if c.causal:
            allowed = allowed & jnp.tril(jnp.ones((length, length), bool))[None, None]
        attention_bias = jnp.where(allowed, 0.0, _MASK_VALUE).astype(jnp.float32)

        layer_keys = [_site_key(dropout_key, i) for i in range(c.num_layers)]
        if c.remat and not self.is_initializing():
            x = self._rematerialised_layers(x, attention_bias, example_ids, layer_keys)
        else:
            for i, key in enumerate(layer_keys):
                x = Block(c, name=f"layer_{i}")(x, attention_bias, example_ids, key)
        if c.layer_norm == "pre":
            x = layer_norm(c.layer_norm_eps, dtype, name="final_norm")(x)

        pooled = _pool(x.astype(jnp.float32), mask, c.pooling)
        if c.projection_dim:
            pooled = nn.Dense(
                c.projection_dim,
                use_bias=False,
                kernel_init=_init(nn.initializers.normal(0.02), ("embed", "embed_out")),
                name="projection",
            )(pooled)
        pooled = nn.with_logical_constraint(pooled, ("batch", "embed"))
        # rsqrt of the clamped squared norm: finite values *and* gradients for a zero vector
        # (an all-padding row under mean pooling), where sqrt's gradient at 0 would be NaN.
        squared = jnp.sum(jnp.square(pooled), axis=-1, keepdims=True)
        return pooled * jax.lax.rsqrt(jnp.maximum(squared, 1e-24))

    def _rematerialised_layers(self, x, attention_bias, example_ids, layer_keys):
        """The layers as a `lax.scan` over their stacked parameters, each step under
        `jax.checkpoint`: the backward pass keeps only each layer's input and recomputes the
        rest one layer at a time.

        (An unrolled loop of checkpointed layers saves no memory on XLA:CPU, whose scheduler
        hoists every recomputation ahead of the backward pass; a loop cannot be hoisted.)
        The parameters stay `layer_{i}` subtrees; only this forward pass stacks them.
        """
        c = self.config
        params = nn.meta.unbox(self.variables["params"])
        stacked = jax.tree.map(
            lambda *p: jnp.stack(p), *[params[f"layer_{i}"] for i in range(c.num_layers)]
        )
        keys = None if layer_keys[0] is None else jnp.stack(layer_keys)
        block = Block(c, parent=None)

        def layer(x, inputs):
            layer_params, key = inputs
            y = block.apply({"params": layer_params}, x, attention_bias, example_ids, key)
            return y, None

        x, _ = jax.lax.scan(jax.checkpoint(layer, prevent_cse=False), x, (stacked, keys))
        return x


def count_params(config: EncoderConfig) -> tuple[int, int]:
    """(total, non-embedding) parameter counts, from shapes only (nothing is materialised).

    Non-embedding excludes the token, position and token-type embeddings (Kaplan et al.).
    """
    shapes = jax.eval_shape(Encoder(config).init, jax.random.key(0), jnp.zeros((1, 1), jnp.int32))[
        "params"
    ]
    shapes = nn.unbox(shapes)
    total = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
    embedding = sum(
        int(np.prod(shapes[name].shape))
        for name in ("token_embedding", "position_embedding", "token_type_embedding")
        if name in shapes
    )
    return total, total - embedding
