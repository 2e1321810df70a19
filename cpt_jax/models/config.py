"""`EncoderConfig`: the shape of an encoder, gin-configurable and JSON round-trippable."""

from __future__ import annotations

import dataclasses

import gin

POOLINGS = ("eos", "mean", "cls")
LAYER_NORMS = ("pre", "post")
ACTIVATIONS = ("gelu", "gelu_exact", "relu")
DTYPES = ("float32", "bfloat16", "float16")


# Settings of how a model trains, not what it computes: they may differ between a pretrained
# model and a run that starts from it.
TRAINING_ONLY_FIELDS = ("dropout_rate", "dtype", "remat")


# The JSON types a stored config's fields may hold (field annotations are strings here).
_FIELD_TYPES = {
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "str": (str,),
    "int | None": (int, type(None)),
}


@gin.configurable
@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """The shape of a transformer encoder. Defaults are a tiny model.

    Attributes:
      vocab_size: number of token ids (0 is padding). A multiple of the `model` mesh axis
        size when the vocabulary is sharded.
      num_layers, d_model, num_heads, d_ff: transformer shape; `head_dim = d_model / num_heads`.
      max_length: number of learned absolute positions.
      causal: GPT-style causal attention (the paper's encoder) or bidirectional (BERT-style).
      pooling: 'eos' = the final hidden state at the last non-padding position (the `[EOS]`
        delimiter; the paper's choice), 'mean' = mean over non-padding positions, 'cls' =
        position 0.
      layer_norm: 'pre' (GPT-2: LayerNorm before each sub-block, plus a final one) or 'post'
        (BERT: LayerNorm after embeddings and after each residual sum; token-type embeddings).
      projection_dim: optional linear projection (no bias) after pooling.
      dropout_rate: on embeddings, attention probabilities and residual branches.
      dtype: activation/compute dtype; parameters are always float32.
      remat: rematerialise each block in the backward pass (memory for compute).
      layer_norm_eps: LayerNorm epsilon (GPT-2 1e-5, BERT 1e-12).
      activation: 'gelu' (tanh approximation, GPT-2), 'gelu_exact' (BERT) or 'relu'.
    """

    vocab_size: int = 1024
    num_layers: int = 2
    d_model: int = 64
    num_heads: int = 4
    d_ff: int = 256
    max_length: int = 512
    causal: bool = True
    pooling: str = "eos"
    layer_norm: str = "pre"
    projection_dim: int | None = None
    dropout_rate: float = 0.0
    dtype: str = "float32"
    remat: bool = False
    layer_norm_eps: float = 1e-5
    activation: str = "gelu"

    def __post_init__(self):
        for name in ("vocab_size", "num_layers", "d_model", "num_heads", "d_ff", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"EncoderConfig.{name} must be positive, got {getattr(self, name)}"
                )
        if self.d_model % self.num_heads:
            raise ValueError(
                f"EncoderConfig.d_model={self.d_model} is not divisible by "
                f"num_heads={self.num_heads}"
            )
        for name, allowed in (
            ("pooling", POOLINGS),
            ("layer_norm", LAYER_NORMS),
            ("activation", ACTIVATIONS),
            ("dtype", DTYPES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"EncoderConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}"
                )
        if self.causal and self.pooling == "cls":
            raise ValueError(
                "EncoderConfig.pooling='cls' with causal=True would embed only the first token "
                "(position 0 attends to nothing else); use pooling='eos' or causal=False"
            )
        if self.projection_dim is not None and self.projection_dim < 1:
            raise ValueError("EncoderConfig.projection_dim must be positive or None")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(
                f"EncoderConfig.dropout_rate must be in [0, 1), got {self.dropout_rate}"
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def embedding_dim(self) -> int:
        """Dimension of the output embeddings."""
        return self.projection_dim or self.d_model

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def architecture_differences(self, other: EncoderConfig) -> dict[str, tuple]:
        """`{field: (self's value, other's value)}` for the fields that change what the
        encoder computes; empty when one's weights read correctly as the other's.
        `TRAINING_ONLY_FIELDS` (how a model trains) are not compared."""
        ours, theirs = self.to_dict(), other.to_dict()
        return {
            name: (ours[name], theirs[name])
            for name in ours
            if name not in TRAINING_ONLY_FIELDS and ours[name] != theirs[name]
        }

    @classmethod
    def from_dict(cls, values: dict) -> EncoderConfig:
        """Inverse of `to_dict` (a stored config): every field must be there with a value of
        its type; unknown or missing fields are errors (a default would silently change the
        model)."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown, missing = sorted(set(values) - set(fields)), sorted(set(fields) - set(values))
        if unknown or missing:
            raise ValueError(f"EncoderConfig: unknown fields {unknown}, missing fields {missing}")
        for name, value in values.items():
            expected = _FIELD_TYPES[fields[name].type]
            if not isinstance(value, expected) or (
                isinstance(value, bool) and bool not in expected
            ):
                names = " or ".join("null" if t is type(None) else t.__name__ for t in expected)
                raise ValueError(
                    f"EncoderConfig.{name} must be {names}, got {type(value).__name__} {value!r}"
                )
        return cls(**values)
