"""The losses of `info_nce` for global arrays whose batch is split over a device mesh."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from cpt_jax.losses import info_nce

# Options split along the batch like the embeddings, and options that are static settings.
BATCH_OPTIONS = ("negatives", "query_ids", "document_ids", "negative_ids")
STATIC_OPTIONS = ("matryoshka_dims", "matryoshka_weights")


def _batch_axes_tuple(batch_axes: str | Sequence[str]) -> tuple[str, ...]:
    return (batch_axes,) if isinstance(batch_axes, str) else tuple(batch_axes)


def _on_mesh(
    fn: Callable, queries, documents, logit_scale, mesh: Mesh, batch_axes, chunk_size, options
):
    """Runs `fn(..., axis_name=batch_axes)` under `jax.shard_map`, batch split on `batch_axes`.

    Embeddings, negatives and ids are split along their leading (batch) dimension over
    `batch_axes`, replicated over the other mesh axes; `logit_scale` is replicated;
    `chunk_size` and the Matryoshka sizes are static.
    """
    unknown = set(options) - set(BATCH_OPTIONS) - set(STATIC_OPTIONS)
    if unknown:
        raise TypeError(
            f"unknown loss options {sorted(unknown)}; expected {BATCH_OPTIONS + STATIC_OPTIONS}"
        )
    batch_axes = _batch_axes_tuple(batch_axes)
    missing = set(batch_axes) - set(mesh.axis_names)
    if missing:
        raise ValueError(f"batch_axes {sorted(missing)} are not axes of the mesh {mesh.axis_names}")
    batch_spec = P(batch_axes)
    static = {k: options[k] for k in STATIC_OPTIONS if options.get(k) is not None}
    batched = {k: options[k] for k in BATCH_OPTIONS if options.get(k) is not None}

    def local(q, d, scale, opts):
        return fn(
            q, d, logit_scale=scale, axis_name=batch_axes, chunk_size=chunk_size, **static, **opts
        )

    return jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(batch_spec, batch_spec, P(), batch_spec),
        out_specs=P(),
        check_vma=True,
    )(queries, documents, jnp.asarray(logit_scale, jnp.float32), batched)


def sharded_symmetric_info_nce(
    queries: jax.Array,
    documents: jax.Array,
    *,
    logit_scale: jax.Array | float,
    mesh: Mesh,
    batch_axes: str | Sequence[str] = ("data",),
    chunk_size: int | None = None,
    **options,
) -> jax.Array:
    """`symmetric_info_nce` of global `[B, d]` arrays whose batch is split over `batch_axes`.

    Runs the loss under `jax.shard_map(mesh=mesh, in_specs=P(batch_axes), out_specs=P(),
    check_vma=True)` with `axis_name=batch_axes`: each device scores its `B / n` rows against
    all gathered columns, and the result is the same global loss as
    `symmetric_info_nce(queries, documents, ...)` on one device, with the same gradients.
    Usable inside `jax.jit` and differentiable. Mesh axes not in `batch_axes` (e.g.
    `model`) see the embeddings replicated. B must divide by the product of the batch axes'
    sizes.

    Args:
      queries, documents: global `[B, d]` embeddings.
      logit_scale: replicated scale: a scalar, or `[K]` (one per Matryoshka size).
      mesh: the device mesh.
      batch_axes: the mesh axis name (or names, major to minor) the batch is split over.
      chunk_size: optional rows per device scored at a time (see `symmetric_info_nce`):
        each device's logits memory is then `O(chunk_size * B)`.
      **options: `negatives`, `query_ids`, `document_ids`, `negative_ids` of
        `symmetric_info_nce`, global and batch-major like the embeddings; and its static
        `matryoshka_dims`, `matryoshka_weights`. Any other name is a TypeError.

    Example:
      >>> mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
      >>> q = d = jnp.eye(4)
      >>> float(sharded_symmetric_info_nce(q, d, logit_scale=0.0, mesh=mesh))
      1.386294...
    """
    return _on_mesh(
        info_nce.symmetric_info_nce,
        queries,
        documents,
        logit_scale,
        mesh,
        batch_axes,
        chunk_size,
        options,
    )


def sharded_symmetric_info_nce_with_metrics(
    queries: jax.Array,
    documents: jax.Array,
    *,
    logit_scale: jax.Array | float,
    mesh: Mesh,
    batch_axes: str | Sequence[str] = ("data",),
    chunk_size: int | None = None,
    **options,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`symmetric_info_nce_with_metrics` of global arrays whose batch is split over
    `batch_axes`: the loss of `sharded_symmetric_info_nce` (same arguments, same gradients)
    and the metrics of `sharded_contrastive_metrics`, from one gather and one scoring.

    Example:
      >>> mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
      >>> loss, m = sharded_symmetric_info_nce_with_metrics(
      ...     jnp.eye(4), jnp.eye(4), logit_scale=5.0, mesh=mesh
      ... )
      >>> float(m["accuracy_q2d"]), float(m["logit_scale"])
      (1.0, 5.0)
    """
    return _on_mesh(
        info_nce.symmetric_info_nce_with_metrics,
        queries,
        documents,
        logit_scale,
        mesh,
        batch_axes,
        chunk_size,
        options,
    )


def sharded_contrastive_metrics(
    queries: jax.Array,
    documents: jax.Array,
    *,
    logit_scale: jax.Array | float,
    mesh: Mesh,
    batch_axes: str | Sequence[str] = ("data",),
    chunk_size: int | None = None,
    **options,
) -> dict[str, jax.Array]:
    """`contrastive_metrics` of global arrays whose batch is split over `batch_axes`.

    The counterpart of `sharded_symmetric_info_nce` (same arguments, same sharding); returns
    the global metrics dict of `contrastive_metrics`.

    Example:
      >>> mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
      >>> m = sharded_contrastive_metrics(jnp.eye(4), jnp.eye(4), logit_scale=5.0, mesh=mesh)
      >>> float(m["accuracy_q2d"]), float(m["negative_logit_mean"])
      (1.0, 0.0)
    """
    return _on_mesh(
        info_nce.contrastive_metrics,
        queries,
        documents,
        logit_scale,
        mesh,
        batch_axes,
        chunk_size,
        options,
    )
