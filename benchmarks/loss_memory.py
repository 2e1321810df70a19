"""Worker: peak memory and time of the contrastive loss alone, chunked or not, on a mesh.

Simulates `num_devices` CPU devices in this process (`--xla_force_host_platform_device_count`,
set before jax is imported), makes random unit-norm `[global_batch, dim]` query and document
embeddings split over a `('data',)` mesh, and runs the jitted
`jax.value_and_grad(cpt_jax.losses.sharded_symmetric_info_nce)` with respect to both sides
and the logit scale, with distinct pair ids (duplicate masking on, as in training).
`chunk_size` (loss rows per device per block) chunks the logits; without it every device
holds its whole `[global_batch / num_devices, global_batch]` blocks of logits.

Before running, XLA's compiled memory analysis gives the estimated bytes of the program
(arguments, outputs and temporaries, summed over the devices). When that is more than
`max_fraction` of the memory available now, the step is not run (it would only be killed
for lack of memory) and the estimate is reported alone.

Settings (JSON): global_batch, dim, num_devices, chunk_size (or null), warmup, steps,
max_fraction.
"""

from __future__ import annotations

import json
import os
import sys

if __name__ == "__main__":  # before jax is imported: the simulated devices, always on the CPU
    _devices = json.loads(sys.argv[1])["num_devices"] if len(sys.argv) == 2 else 8
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={_devices}"
    ).strip()
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import common  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from cpt_jax import losses  # noqa: E402


def available_memory_bytes() -> int:
    """Memory available to a new allocation now (MemAvailable; psutil elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil

    return psutil.virtual_memory().available


def estimated_bytes(compiled, num_devices: int) -> int | None:
    """Arguments + outputs + temporaries of a compiled program, over all its devices."""
    analysis = compiled.memory_analysis()
    if analysis is None:
        return None
    per_device = (
        analysis.argument_size_in_bytes
        + analysis.output_size_in_bytes
        + analysis.temp_size_in_bytes
        - analysis.alias_size_in_bytes
    )
    return per_device * num_devices


def main() -> None:
    config = common.settings()
    n, batch, dim = config["num_devices"], config["global_batch"], config["dim"]
    if jax.device_count() != n:
        raise SystemExit(f"expected {n} simulated devices, got {jax.device_count()}")
    mesh = jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    rows = NamedSharding(mesh, P("data"))
    chunk = {"chunk_size": config["chunk_size"]} if config.get("chunk_size") else {}

    def loss(queries, documents, log_scale, query_ids, document_ids):
        return losses.sharded_symmetric_info_nce(
            queries,
            documents,
            logit_scale=losses.logit_scale_from_log(log_scale),
            mesh=mesh,
            batch_axes=("data",),
            query_ids=query_ids,
            document_ids=document_ids,
            **chunk,
        )

    step = jax.jit(
        jax.value_and_grad(loss, argnums=(0, 1, 2)),
        in_shardings=(rows, rows, None, rows, rows),
    )
    rng = np.random.default_rng(0)

    def unit_rows():
        x = rng.standard_normal((batch, dim), dtype=np.float32)
        return jax.device_put(x / np.linalg.norm(x, axis=1, keepdims=True), rows)

    ids = np.arange(batch, dtype=np.int32)
    args = (
        unit_rows(),
        unit_rows(),
        losses.init_log_scale(20.0),
        jax.device_put(ids, rows),
        jax.device_put(ids + batch, rows),
    )
    estimate = estimated_bytes(step.lower(*args).compile(), n)
    available = available_memory_bytes()
    result = {
        "estimated_gib": None if estimate is None else estimate / common.GIB,
        "available_gib": available / common.GIB,
        "global_batch": batch,
        "chunk_size": config.get("chunk_size"),
    }
    if estimate is not None and estimate > config["max_fraction"] * available:
        common.log(
            f"not run: XLA estimates {estimate / common.GIB:.1f} GiB, "
            f"{available / common.GIB:.1f} GiB available"
        )
        common.emit({**result, "ran": False})
        return
    value = None

    def run():
        nonlocal value
        value, grads = step(*args)
        jax.block_until_ready(grads)

    durations = common.time_steps(run, config["warmup"], config["steps"])
    if not np.isfinite(float(value)):
        raise SystemExit(f"non-finite loss {float(value)}")
    common.emit(
        {
            **result,
            "ran": True,
            "loss": float(value),
            "step_s": durations,
            "step_s_min": min(durations),
        }
    )


if __name__ == "__main__":
    main()
