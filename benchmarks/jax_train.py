"""Worker: training throughput of one cpt-jax train step configuration.

Builds `cpt_jax.trainer.Trainer` through its public API (mesh over all local devices,
default logical-axis rules, AdamW from `make_optimizer`), feeds one fixed global batch of
full-length random token ids (no padding; ids 3..vocab, unique pair ids), runs warm-up steps
(the first one compiles), then times `steps` steps, each waited on with
`jax.block_until_ready`. Reports pairs/s, model FLOPs per pair (`common.train_flops_per_pair`),
peak resident memory and, on accelerators, peak device memory.

Settings (JSON): model (EncoderConfig fields), batch, query_length, document_length, warmup,
steps, and optionally remat, grad_cache_chunk_size (global rows per encoder pass) and
loss_chunk_size (loss rows per device per block).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import common  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from cpt_jax import partitioning  # noqa: E402
from cpt_jax.models import EncoderConfig  # noqa: E402
from cpt_jax.trainer import LossConfig, Trainer, make_optimizer  # noqa: E402


def make_batch(batch: int, query_length: int, document_length: int, vocab_size: int) -> dict:
    """A host batch of full-length random token ids and distinct pair ids."""
    rng = np.random.default_rng(0)
    tokens = lambda length: rng.integers(3, vocab_size, (batch, length), dtype=np.int32)
    ids = np.arange(batch, dtype=np.int32)
    return {
        "queries": tokens(query_length),
        "documents": tokens(document_length),
        "query_ids": ids,
        "document_ids": ids + batch,
    }


def build_trainer(config: dict) -> Trainer:
    """The Trainer of a settings dict; gradient caching / loss chunking only when asked for."""
    model = {**config["model"], "remat": bool(config.get("remat", False))}
    loss_options = {}
    if config.get("loss_chunk_size"):
        loss_options["chunk_size"] = config["loss_chunk_size"]
    trainer_options = {}
    if config.get("grad_cache_chunk_size"):
        trainer_options["grad_cache_chunk_size"] = config["grad_cache_chunk_size"]
    return Trainer(
        model_config=EncoderConfig(**model),
        loss_config=LossConfig(**loss_options),
        optimizer=make_optimizer(total_steps=1000)[0],
        mesh=partitioning.make_mesh(),
        rules=partitioning.logical_axis_rules(),
        dropout_seed=0,
        **trainer_options,
    )


def device_peak_gib() -> float | None:
    """Peak bytes in use on the first device (accelerators only; None on CPU)."""
    stats = jax.local_devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / common.GIB


def main() -> None:
    config = common.settings()
    jax.config.update("jax_threefry_partitionable", True)  # as cpt_jax.train does
    batch = config["batch"]
    trainer = build_trainer(config)
    state = trainer.init_state(seed=0)
    host_batch = make_batch(
        batch, config["query_length"], config["document_length"], config["model"]["vocab_size"]
    )
    global_batch = partitioning.host_local_batch_to_global(host_batch, trainer.mesh)
    rss_after_init = common.current_rss_gib()
    metrics = {}

    def step():
        nonlocal state, metrics
        state, metrics = trainer.train_step(state, global_batch)
        jax.block_until_ready((state, metrics))

    durations = common.time_steps(
        step, config["warmup"], config["steps"], config.get("min_seconds", 0.0)
    )
    loss = float(metrics["loss"])
    if not np.isfinite(loss):
        raise SystemExit(f"non-finite loss {loss}")
    flops = common.train_flops_per_pair(
        config["model"], config["query_length"], config["document_length"], batch
    )
    result = common.throughput(batch, durations)
    common.emit(
        {
            **result,
            "flops_per_pair": flops,
            "model_flops_per_s": flops * result["pairs_per_s"],
            "loss": loss,
            "rss_after_init_gib": rss_after_init,
            "device_peak_gib": device_peak_gib(),
            "device": jax.devices()[0].device_kind,
            "num_devices": jax.device_count(),
        }
    )


if __name__ == "__main__":
    main()
