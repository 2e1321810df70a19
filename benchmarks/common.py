"""Helpers shared by the benchmark workers: config in, timing, peak memory, FLOPs, result out.

Each worker is a script run in its own process by `run.py`, so that its peak resident memory
is its own. It takes one argument, a JSON object of settings, and prints its result as one
line `BENCH_RESULT {json}` on stdout (`emit`); everything else it prints is log.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable

RESULT_PREFIX = "BENCH_RESULT "
GIB = 2.0**30


def settings() -> dict:
    """The worker's settings: the JSON object given as its only command-line argument."""
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} '<json settings>'")
    return json.loads(sys.argv[1])


def emit(result: dict) -> None:
    """Prints the worker's result for `run.py`, with its peak resident memory added."""
    result = {**result, "peak_rss_gib": peak_rss_gib()}
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def peak_rss_gib() -> float:
    """This process's peak resident set size in GiB (Linux VmHWM; else ru_maxrss)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / GIB if sys.platform == "darwin" else maxrss * 1024 / GIB


def current_rss_gib() -> float:
    """This process's resident set size now, in GiB (Linux; 0.0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / GIB
    except OSError:
        return 0.0


def time_steps(
    step: Callable[[], None], warmup: int, steps: int, min_seconds: float = 0.0
) -> list[float]:
    """Runs `step` `warmup` times untimed, then timed; returns each timed step's duration.

    Timed steps run until there are `steps` of them *and* they took `min_seconds` together
    (so that fast accelerators time enough steps; at most 1000). `step` must block until its
    work is done (`jax.block_until_ready`, a `.item()` in PyTorch). The warm-up calls absorb
    compilation and first-touch allocation.
    """
    for i in range(warmup):
        start = time.perf_counter()
        step()
        log(f"warm-up step {i + 1}/{warmup}: {time.perf_counter() - start:.2f} s")
    durations: list[float] = []
    while len(durations) < steps or (sum(durations) < min_seconds and len(durations) < 1000):
        start = time.perf_counter()
        step()
        durations.append(time.perf_counter() - start)
        if len(durations) <= steps:
            log(f"timed step {len(durations)}/{steps}: {durations[-1]:.2f} s")
    return durations


def throughput(batch: int, durations: list[float]) -> dict:
    """Pairs per second over the timed steps (total pairs / total time) and step times."""
    return {
        "pairs_per_s": batch * len(durations) / sum(durations),
        "step_s": durations,
        "step_s_min": min(durations),
    }


def encoder_forward_flops(
    *, num_layers: int, d_model: int, d_ff: int, length: int, projection_dim: int | None = None
) -> float:
    """Forward FLOPs of one sequence of `length` tokens through a transformer encoder.

    2 FLOPs per multiply-add of every matmul weight per token (per layer: the query, key,
    value and output projections, 4 * d_model^2, and the MLP, 2 * d_model * d_ff; plus the
    optional pooled projection once per sequence), and the attention scores and the
    weighted sum of values, 2 * 2 * length^2 * d_model per layer. Embedding lookups,
    LayerNorm, softmax, activations and pooling are not counted (they are not matmuls).
    """
    matmul_params = num_layers * (4 * d_model * d_model + 2 * d_model * d_ff)
    attention = num_layers * 4 * length * length * d_model
    projection = 2 * d_model * projection_dim if projection_dim else 0
    return 2.0 * matmul_params * length + attention + projection


def train_flops_per_pair(model: dict, query_length: int, document_length: int, batch: int) -> float:
    """Model FLOPs of one training step, per pair: 3x the forward (forward + backward).

    Forward = one query and one document through the encoder (`encoder_forward_flops`),
    plus this pair's share of the in-batch logits `Q @ D.T` (2 * batch * embedding_dim).
    Recomputation (rematerialisation, gradient caching's second forward) is *not* model
    FLOPs: an implementation that recomputes does more work for the same model FLOPs.
    """
    shape = {k: model.get(k) for k in ("num_layers", "d_model", "d_ff", "projection_dim")}
    forward = encoder_forward_flops(length=query_length, **shape) + encoder_forward_flops(
        length=document_length, **shape
    )
    embedding_dim = model.get("projection_dim") or model["d_model"]
    forward += 2.0 * batch * embedding_dim
    return 3.0 * forward


def log(message: str) -> None:
    """A progress line on stderr (the driver keeps it in the worker's log)."""
    print(f"[{os.path.basename(sys.argv[0])}] {message}", file=sys.stderr, flush=True)
