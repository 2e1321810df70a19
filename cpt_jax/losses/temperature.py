"""The learned temperature: stored as a log-scale, used as a clamped scale `s = 1 / T`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def init_log_scale(scale: float = 1.0 / 0.07, num_sizes: int | None = None) -> jax.Array:
    """The initial learned log-scale `log(scale)`: a float32 scalar, or `[num_sizes]`.

    CLIP starts at `scale = 1 / 0.07` (temperature 0.07). Store this value as the trainable
    parameter and turn it into a scale with `logit_scale_from_log`. `num_sizes` gives one
    scale per Matryoshka size (see `symmetric_info_nce`'s `matryoshka_dims`).

    Example:
      >>> float(jnp.exp(init_log_scale(20.0)))  # doctest: +ELLIPSIS
      20.0...
      >>> init_log_scale(20.0, num_sizes=3).shape
      (3,)
    """
    if scale <= 0:
        raise ValueError(f"logit scale must be positive, got {scale}")
    value = jnp.asarray(np.log(scale), jnp.float32)
    return value if num_sizes is None else jnp.full((num_sizes,), value)


def logit_scale_from_log(
    log_scale: jax.Array | float, *, max_scale: float = 100.0, trainable: bool = True
) -> jax.Array:
    """The logit scale `s = exp(min(log_scale, log(max_scale)))`, float32, `log_scale`'s shape.

    The clamp (CLIP's `s <= 100`) gives a log-scale above `log(max_scale)` a zero gradient;
    the trainer clamps the parameter after each update, so it never stays there. With
    `trainable=False` the scale is wrapped in `stop_gradient` (a frozen temperature, as
    Nomic's fixed 50 or t5x_retrieval's fixed 100).

    Args:
      log_scale: log of the scale: a scalar, or `[K]` (one per Matryoshka size); any float
        dtype, computed in float32.
      max_scale: upper bound on the scale.
      trainable: whether gradients flow back into `log_scale`.

    Example:
      >>> float(logit_scale_from_log(jnp.log(500.0)))  # doctest: +ELLIPSIS
      100.0...
    """
    log_scale = jnp.asarray(log_scale, jnp.float32)
    scale = jnp.exp(jnp.minimum(log_scale, np.float32(np.log(max_scale))))
    return scale if trainable else jax.lax.stop_gradient(scale)
