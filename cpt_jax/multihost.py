"""Joining a multi-process (multi-host) job, and which rows of the global batch a host feeds.

A pod job runs one `python -m cpt_jax.train` per host. Each process calls
`jax.distributed.initialize` before touching a device; from then on `jax.devices()` lists
every device of every host, the mesh spans them all, and the contrastive loss gathers its
negatives across all of them. Each host reads only its slice of every global batch (see
`host_batch_rows`) and `partitioning.host_local_batch_to_global` assembles the global array.

The flags are named as in t5x: `--coordinator_address`, `--process_count`,
`--process_index`; the environment variables `COORDINATOR_ADDRESS`, `PROCESS_COUNT` and
`PROCESS_INDEX` stand in for absent flags.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import traceback
from collections.abc import Mapping

import jax
import numpy as np
from jax.sharding import Mesh

from cpt_jax import partitioning

# JAX's default is 100 s. A minute is long enough for a busy host's heartbeat thread (a C++
# thread: a Python stall does not stop it) and stops a job with a lost host sooner.
DEFAULT_HEARTBEAT_TIMEOUT_S = 60


@dataclasses.dataclass(frozen=True)
class DistributedOptions:
    """How this process joins the job.

    Attributes:
      coordinator_address: `host:port` of process 0's coordination service.
      process_count: number of processes in the job.
      process_index: this process's index in `[0, process_count)`.
      initialization_timeout_s: how long to wait for every process to join.
      heartbeat_timeout_s: a peer silent this long is declared dead and the job stops
        (with an error naming the missing task) rather than hanging in a collective.
    """

    coordinator_address: str
    process_count: int
    process_index: int
    initialization_timeout_s: int = 300
    heartbeat_timeout_s: int = DEFAULT_HEARTBEAT_TIMEOUT_S

    def __post_init__(self):
        if self.process_count < 1:
            raise ValueError(f"--process_count must be at least 1, got {self.process_count}")
        if not 0 <= self.process_index < self.process_count:
            raise ValueError(
                f"--process_index={self.process_index} must be in [0, {self.process_count})"
            )
        host, sep, port = self.coordinator_address.rpartition(":")
        if not (host and sep and port.isdigit()):
            raise ValueError(
                f"--coordinator_address={self.coordinator_address!r} must be host:port"
            )


def options_from(
    coordinator_address: str | None,
    process_count: int | None,
    process_index: int | None,
    *,
    environ: Mapping[str, str] = os.environ,
    **timeouts,
) -> DistributedOptions | None:
    """The job's options from flags, falling back to the environment; None: one process.

    Raises `ValueError` naming what is missing when only some of the three are given.
    """
    values = {
        "coordinator_address": coordinator_address or environ.get("COORDINATOR_ADDRESS"),
        "process_count": process_count
        if process_count is not None
        else _int_env(environ, "PROCESS_COUNT"),
        "process_index": process_index
        if process_index is not None
        else _int_env(environ, "PROCESS_INDEX"),
    }
    given = {k for k, v in values.items() if v is not None}
    if not given:
        return None
    if given != set(values):
        missing = ", ".join(f"--{k}" for k in values if k not in given)
        raise ValueError(f"a multi-process job needs all three flags; missing {missing}")
    return DistributedOptions(**values, **timeouts)


def _int_env(environ: Mapping[str, str], name: str) -> int | None:
    value = environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def initialize(options: DistributedOptions | None) -> None:
    """Joins the job (`jax.distributed.initialize`); a single process needs nothing.

    Must run before anything touches a device.
    """
    if options is None or options.process_count == 1:
        return
    # Said before joining: if a peer never comes, jax's own error (a deadline exceeded in
    # RegisterTask) does not say what was being waited for.
    print(
        f"Process {options.process_index} of {options.process_count}: joining the job at "
        f"{options.coordinator_address}, waiting up to {options.initialization_timeout_s} s "
        f"for every process; a peer silent for {options.heartbeat_timeout_s} s stops the job.",
        file=sys.stderr,
        flush=True,
    )
    jax.distributed.initialize(
        coordinator_address=options.coordinator_address,
        num_processes=options.process_count,
        process_id=options.process_index,
        initialization_timeout=options.initialization_timeout_s,
        heartbeat_timeout_seconds=options.heartbeat_timeout_s,
    )


def abandon_job(error: BaseException, exit_status: int = 1) -> None:
    """Ends this process of a multi-process job that failed, at once: the traceback of
    `error` to stderr, then `os._exit(exit_status)`.

    A normal exit runs JAX's `atexit` hook, `jax.distributed.shutdown`, whose shutdown
    barrier waits for every peer. With a peer dead or hung (the usual reason for a failed
    step) it can block for good: jaxlib 0.10 was seen waiting in
    `CoordinationServiceAgent::Shutdown` after its own fatal-error report, and the job never
    ended. The peers learn of this process's end from the coordination service either way.
    """
    traceback.print_exception(error, file=sys.stderr)
    print(
        f"Process {jax.process_index()} of {jax.process_count()}: stopping without the "
        "distributed shutdown (its barrier may wait for a lost peer forever).",
        file=sys.stderr,
        flush=True,
    )
    sys.stdout.flush()
    os._exit(exit_status)


def host_batch_rows(mesh: Mesh, global_batch_size: int) -> tuple[int, int]:
    """The contiguous rows `[start, stop)` of a global batch that this process's devices hold.

    `host_local_batch_to_global` places a host's rows on its own devices in global order, so
    the host must read exactly these rows of each global batch. With the mesh's devices in
    process-major order (as `jax.make_mesh` lays them out), host p holds rows
    `[p * B / P, (p + 1) * B / P)`; any other layout is computed here, not assumed.
    """
    sharding = partitioning.batch_sharding(mesh)
    index_map = sharding.addressable_devices_indices_map((global_batch_size,))
    rows = sorted(
        {
            (s[0].start or 0, global_batch_size if s[0].stop is None else s[0].stop)
            for s in index_map.values()
        }
    )
    start, stop = rows[0][0], rows[-1][1]
    covered = np.zeros(global_batch_size, bool)
    for a, b in rows:
        covered[a:b] = True
    if not covered[start:stop].all() or covered.sum() != stop - start:
        raise ValueError(
            f"process {jax.process_index()}'s devices hold non-contiguous rows {rows} of the "
            "global batch; build the mesh with its devices in process-major order"
        )
    return start, stop
