"""Flax encoders: the paper's causal transformer and a BERT-style bidirectional one."""

from cpt_jax.models.config import EncoderConfig
from cpt_jax.models.transformer import LOGICAL_AXIS_NAMES, Encoder, count_params

__all__ = ["EncoderConfig", "Encoder", "LOGICAL_AXIS_NAMES", "count_params"]
