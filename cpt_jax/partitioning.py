"""Device mesh, logical-axis rules and shardings.

Every parameter and activation of the encoders carries logical axis names (`batch`, `embed`,
`heads`, `mlp`, `vocab`, ...). This module owns the one table that maps them to the physical
mesh axes `data`, `fsdp` and `model` (t5x's `standard_logical_axis_rules` is the model), and
the helpers that turn a tree of logical specs into `NamedSharding`s.

The mesh always has the three axes, size 1 where unused, so that one rules table serves pure
data parallelism (`fsdp=1, model=1`), FSDP and tensor parallelism.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import gin
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

MESH_AXES = ("data", "fsdp", "model")
# The batch of examples is split over both data-parallel axes.
BATCH_AXES = ("data", "fsdp")

LogicalRules = Sequence[tuple[str, str | tuple[str, ...] | None]]


@gin.configurable
def make_mesh(
    data: int = -1, fsdp: int = 1, model: int = 1, devices: Sequence[jax.Device] | None = None
) -> Mesh:
    """Builds a `('data', 'fsdp', 'model')` mesh over all (or the given) devices.

    One axis size may be -1: it takes whatever the other two leave. Axes are `Auto`
    (GSPMD-style propagation), not jax's default Explicit axes.

    Example: `make_mesh(data=4, model=2)` on 8 devices gives a 4x1x2 mesh.
    """
    devices = list(jax.devices() if devices is None else devices)
    sizes = [data, fsdp, model]
    if sizes.count(-1) > 1:
        raise ValueError(
            f"make_mesh: at most one axis may be -1, got {dict(zip(MESH_AXES, sizes))}"
        )
    known = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(
                f"make_mesh: {len(devices)} devices cannot be split into axes "
                f"{dict(zip(MESH_AXES, sizes))}"
            )
        sizes[sizes.index(-1)] = len(devices) // known
    if int(np.prod(sizes)) != len(devices):
        raise ValueError(
            f"make_mesh: axes {dict(zip(MESH_AXES, sizes))} need {int(np.prod(sizes))} devices, "
            f"but {len(devices)} are available"
        )
    return jax.make_mesh(
        tuple(sizes),
        MESH_AXES,
        axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES),
        devices=devices,
    )


@gin.configurable
def logical_axis_rules(
    parameter_sharding: str = "data_parallel",
) -> tuple[tuple[str, str | tuple[str, ...] | None], ...]:
    """The table mapping logical axis names to mesh axes.

    `parameter_sharding`:
      - `"data_parallel"`: parameters replicated over `data`/`fsdp`, split over `model`
        (tensor parallelism is free when the model axis has size 1).
      - `"fsdp"`: additionally shards every parameter's `embed` axis over `fsdp`, so
        parameters and optimizer state are split across the data-parallel replicas.

    Activations: `batch` is split over `('data', 'fsdp')`; heads and MLP over `model`.
    """
    if parameter_sharding not in ("data_parallel", "fsdp"):
        raise ValueError(
            f"logical_axis_rules: unknown parameter_sharding {parameter_sharding!r}; "
            "expected 'data_parallel' or 'fsdp'"
        )
    embed = "fsdp" if parameter_sharding == "fsdp" else None
    return (
        ("batch", BATCH_AXES),
        ("length", None),
        ("pos", None),
        ("embed", embed),
        ("embed_out", None),
        ("heads", "model"),
        ("kv", None),
        ("mlp", "model"),
        ("vocab", "model"),
        ("type", None),
    )


def logical_to_shardings(logical_specs, mesh: Mesh, rules: LogicalRules):
    """Maps a tree of logical `PartitionSpec`s to `NamedSharding`s on `mesh`."""
    return nn.logical_to_mesh_sharding(logical_specs, mesh, rules)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of a `[global_batch, ...]` input: rows split over the batch axes."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    """A fully replicated sharding on `mesh` (scalars, metrics)."""
    return NamedSharding(mesh, P())


def num_batch_shards(mesh: Mesh) -> int:
    """How many ways the global batch is split (product of the batch axes)."""
    return int(np.prod([mesh.shape[a] for a in BATCH_AXES]))


def host_local_batch_to_global(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles each host's slice of the batch into global arrays sharded over `BATCH_AXES`.

    Works unchanged with one process (the local slice is the whole batch) and with many,
    where each host feeds the rows that its devices hold.
    """
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
