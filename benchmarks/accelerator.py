"""The one-command accelerator check (`make bench-accelerator`): training throughput and MFU
of the MiniLM shape and of an S-size (300M) encoder at batches that fill the chip.

On a lent GPU or TPU machine, `make bench-accelerator` installs JAX for the accelerator
into `.venv` and runs this script; it prints a table and writes
`benchmarks/results_accelerator.json` (not with `--quick`, the CPU smoke test the test suite
can run). Each configuration is one in-process `Trainer` step (`jax_train.build_trainer`:
full-length random tokens, warm-up steps absorb compilation), bfloat16 activations on
accelerators. Batches grow until the device runs out of memory or the time budget
(`--budget_s`, 420 s: the whole check stays within 8 minutes with the installation) is spent;
every configuration started before the deadline is reported.

MFU = model FLOPs per pair (`common.train_flops_per_pair`) x pairs/s / the chip's dense
bfloat16 peak (`PEAK_FLOPS` by device kind; unknown kinds print no MFU).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import common  # noqa: E402
import jax  # noqa: E402
import jax_train  # noqa: E402
from run import MINILM  # noqa: E402  (the shape `make bench` times on the CPU)

from cpt_jax import partitioning  # noqa: E402

# gin_configs/models/S.gin, bidirectional like MiniLM.
S_SIZE = {**MINILM, "vocab_size": 32000, "num_layers": 24, "d_model": 1024, "num_heads": 16,
          "d_ff": 4096, "max_length": 2048}  # fmt: skip

# Dense bfloat16 peak FLOP/s per chip, by `device_kind` prefix (vendor data sheets).
PEAK_FLOPS = {
    "NVIDIA H200": 989e12,
    "NVIDIA H100": 989e12,
    "NVIDIA A100": 312e12,
    "NVIDIA L4": 121e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
}

# (section, model, query/document lengths, batches tried in order, extra settings)
PLAN = [
    ("minilm", MINILM, (128, 128), [256, 1024, 4096, 16384], {}),
    ("S (300M)", S_SIZE, (128, 256), [64, 256, 1024], {"remat": True}),
    ("S (300M), grad cache", S_SIZE, (128, 256), [4096], {"grad_cache_chunk_size": 512}),
]
QUICK_PLAN = [
    ("minilm", {**MINILM, "num_layers": 1, "vocab_size": 1000}, (16, 16), [8, 16], {}),
    (
        "S (300M)",
        {**S_SIZE, "num_layers": 1, "d_model": 64, "num_heads": 4, "d_ff": 128, "vocab_size": 1000},
        (16, 32),
        [8],
        {"remat": True},
    ),  # fmt: skip
]


def peak_flops(device_kind: str) -> float | None:
    for prefix, peak in PEAK_FLOPS.items():
        if device_kind.startswith(prefix):
            return peak
    return None


def is_out_of_memory(error: Exception) -> bool:
    text = str(error)
    return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "out of memory" in text


def run_one(model: dict, batch: int, lengths, extra: dict, warmup: int, steps: int) -> dict:
    """One configuration's throughput (pairs/s, model FLOP/s, device peak memory)."""
    on_accelerator = jax.devices()[0].platform != "cpu"
    config = {
        "model": {**model, "dtype": "bfloat16" if on_accelerator else "float32"},
        "batch": batch,
        "query_length": lengths[0],
        "document_length": lengths[1],
        **extra,
    }
    trainer = jax_train.build_trainer(config)
    state = trainer.init_state(seed=0)
    host = jax_train.make_batch(batch, lengths[0], lengths[1], model["vocab_size"])
    global_batch = partitioning.host_local_batch_to_global(host, trainer.mesh)

    def step():
        nonlocal state
        state, metrics = trainer.train_step(state, global_batch)
        jax.block_until_ready((state, metrics))

    durations = common.time_steps(step, warmup, steps)
    result = common.throughput(batch, durations)
    flops = common.train_flops_per_pair(model, lengths[0], lengths[1], batch)
    return {
        "pairs_per_s": result["pairs_per_s"],
        "model_flops_per_s": flops * result["pairs_per_s"],
        "step_s_min": result["step_s_min"],
        "device_peak_gib": jax_train.device_peak_gib(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes: a CPU smoke test")
    parser.add_argument("--budget_s", type=float, default=420.0)
    parser.add_argument(
        "--output", default=os.path.join(os.path.dirname(__file__), "results_accelerator.json")
    )
    args = parser.parse_args(argv)
    jax.config.update("jax_threefry_partitionable", True)
    device = jax.devices()[0]
    peak = peak_flops(device.device_kind) if device.platform != "cpu" else None
    count = jax.device_count()
    print(f"device: {device.device_kind} x {count} ({device.platform}); jax {jax.__version__}")
    deadline = time.monotonic() + args.budget_s
    warmup, steps = (1, 2) if args.quick else (2, 5)
    rows = []
    for section, model, lengths, batches, extra in QUICK_PLAN if args.quick else PLAN:
        for batch in batches:
            if time.monotonic() > deadline:
                rows.append({"section": section, "batch": batch, "skipped": "time budget spent"})
                continue
            try:
                outcome = run_one(model, batch, lengths, extra, warmup, steps)
            except Exception as error:  # an OOM ends the section; anything else is a failure
                if not is_out_of_memory(error):
                    raise
                rows.append({"section": section, "batch": batch, "skipped": "out of memory"})
                break
            mfu = (
                None if peak is None else outcome["model_flops_per_s"] / (peak * jax.device_count())
            )
            rows.append({"section": section, "batch": batch, **outcome, "mfu": mfu})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| section | batch | pairs/s | TFLOP/s | MFU | device peak GiB |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        if "skipped" in row:
            print(f"| {row['section']} | {row['batch']} | {row['skipped']} | | | |")
            continue
        mfu = "-" if row["mfu"] is None else f"{100 * row['mfu']:.1f}%"
        memory = "-" if row["device_peak_gib"] is None else f"{row['device_peak_gib']:.1f}"
        print(f"| {row['section']} | {row['batch']} | {row['pairs_per_s']:.1f} | "
              f"{row['model_flops_per_s'] / 1e12:.2f} | {mfu} | {memory} |")  # fmt: skip
    if not args.quick:
        record = {"device": device.device_kind, "num_devices": jax.device_count(),
                  "jax": jax.__version__, "peak_flops": peak, "rows": rows}  # fmt: skip
        with open(args.output, "w") as f:
            json.dump(record, f, indent=1)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
