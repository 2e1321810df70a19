"""Worker: the machine's float32 matmul ceiling, as JAX reaches it.

Times a jitted `[n, n] @ [n, n]` float32 product at JAX's default matmul precision (the
precision the train step runs at: full float32 on CPU; on NVIDIA GPUs XLA's default for
float32 dots, which may use TF32 tensor cores), `repeats` chained products per timed call so
that dispatch is negligible, best of `trials` calls after a warm-up. FLOPs per product: 2 n^3.
On an accelerator, `accelerator_n` and `accelerator_repeats` apply (a 4096 product does not
fill a GPU), and the same product at `Precision.HIGHEST` is also reported, which tells
whether the default precision is full float32.

Settings (JSON): n, repeats, accelerator_n, accelerator_repeats, trials.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import functools  # noqa: E402
import time  # noqa: E402

import common  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402


@functools.partial(jax.jit, static_argnums=(2, 3))
def chained_products(a, b, repeats: int, precision):
    """`repeats` dependent products (each feeds the next), so none can be skipped."""

    def body(_, x):
        # Rescale to keep values finite; an elementwise op, negligible beside the product.
        return jnp.matmul(x, b, precision=precision) * (1.0 / a.shape[0])

    return jax.lax.fori_loop(0, repeats, body, a)


def best_flops_per_s(a, b, repeats: int, trials: int, precision=None) -> float:
    """FLOP/s of the fastest of `trials` timed calls, after one untimed (compiling) call."""
    jax.block_until_ready(chained_products(a, b, repeats, precision))
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        jax.block_until_ready(chained_products(a, b, repeats, precision))
        best = min(best, time.perf_counter() - start)
    return 2.0 * a.shape[0] ** 3 * repeats / best


def main() -> None:
    config = common.settings()
    device = jax.devices()[0]
    on_cpu = device.platform == "cpu"
    n = config["n"] if on_cpu else config["accelerator_n"]
    repeats = config["repeats"] if on_cpu else config["accelerator_repeats"]
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (n, n), jnp.float32)
    b = jax.random.normal(key_b, (n, n), jnp.float32)
    flops_per_s = best_flops_per_s(a, b, repeats, config["trials"])
    common.log(f"{n}x{n} float32 matmul, default precision: {flops_per_s / 1e9:.1f} GFLOP/s")
    highest = None
    if not on_cpu:
        highest = best_flops_per_s(a, b, repeats, config["trials"], jax.lax.Precision.HIGHEST)
        common.log(f"{n}x{n} float32 matmul, HIGHEST precision: {highest / 1e9:.1f} GFLOP/s")
    common.emit(
        {
            "flops_per_s": flops_per_s,
            "highest_precision_flops_per_s": highest,
            "n": n,
            "repeats": repeats,
            "precision": str(jax.config.jax_default_matmul_precision or "default"),
            "device": device.device_kind,
            "platform": device.platform,
        }
    )


if __name__ == "__main__":
    main()
