"""The benchmarks of cpt-jax: one command, a table, and `benchmarks/results.json`.

    make bench                                    # ~30 min on 2 CPU cores
    .venv/bin/python benchmarks/run.py --quick    # smoke test, a few minutes
    .venv/bin/python benchmarks/run.py --only minilm small --output /tmp/r.json

Sections (see benchmarks/README.md):
  ceiling  the float32 matmul ceiling that JAX reaches (`matmul.py`), at the start and the end
           of the run; MFU is model FLOP/s over the higher of the two.
  minilm   training pairs/s of a MiniLM-sized encoder (6 layers, d 384, 12 heads, MLP 1536,
           128 tokens both sides): cpt-jax (plain, rematerialised, gradient-cached) beside
           sentence-transformers MNRL and CachedMNRL, same shape, tokens and batch.
  small    the from-scratch quickstart model with gradient caching, batch 256 up to 12,288:
           pairs/s and peak resident memory.
  loss     the loss alone, global batch 65,536 over 8 simulated devices: peak memory with and
           without chunking.
  pipeline pairs/s the data pipeline serves (`pipeline_throughput.py`, real stdlib pairs)
           against what the train step consumes, for the from-scratch quickstart model and
           MiniLM, each pair of figures measured in this run.

Every measurement runs in its own subprocess (a worker script beside this one), so that its
peak resident memory (`os.wait4`'s ru_maxrss of that child) is its own; each has a timeout
and, on the CPU, an address-space limit so that a run out of memory fails alone instead of
waking the kernel's OOM killer. Workers' logs go to `benchmarks/out/logs/`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
GIB = 2.0**30
SECTIONS = ("ceiling", "minilm", "small", "loss", "pipeline")

# all-MiniLM-L6-v2's shape (gin_configs/models/minilm.gin) in the BERT layout of
# gin_configs/architectures/bidirectional.gin, with the from-scratch quickstart's dropout.
MINILM = {
    "vocab_size": 30522,
    "num_layers": 6,
    "d_model": 384,
    "num_heads": 12,
    "d_ff": 1536,
    "max_length": 512,
    "causal": False,
    "pooling": "mean",
    "layer_norm": "post",
    "activation": "gelu_exact",
    "layer_norm_eps": 1e-12,
    "dropout_rate": 0.1,
}
# The quickstart's model (gin_configs/runs/quickstart_scratch.gin: models/small.gin with one layer,
# bidirectional, an 8,000-piece vocabulary) and its query/document lengths.
SMALL = {
    **MINILM,
    "vocab_size": 8000,
    "num_layers": 1,
    "d_model": 256,
    "num_heads": 4,
    "d_ff": 1024,
}
SMALL_LENGTHS = (32, 128)

# Step counts and sizes. `steps[batch] = (warm-up steps, timed steps)`; the first warm-up
# step compiles. Timed steps also go on until `min_seconds` have passed (fast accelerators).
FULL = {
    "ceiling": {
        "n": 4096,
        "repeats": 2,
        "accelerator_n": 16384,
        "accelerator_repeats": 10,
        "trials": 5,
    },
    "minilm": {
        "batches": {
            64: ("plain", "mnrl", "cached_mnrl", "grad_cache"),
            256: ("plain", "mnrl", "remat", "cached_mnrl", "grad_cache"),
        },
        "steps": {64: (1, 3), 256: (1, 2)},
        # sentence-transformers' default mini-batch. cpt-jax's chunk: on 2 CPU cores small
        # chunks run fastest (b256, s/step: chunk 128 40.9, 64 28.8, 32 26.1, 16 25.4, 8 24.5),
        # their activations staying in cache.
        "cached_mini_batch_size": 32,
        "grad_cache_chunk_size": 8,
        "timeout_s": 900,
    },
    "small": {
        "batches": (256, 1024, 4096, 12288),
        "steps": {256: (2, 5), 1024: (1, 3), 4096: (1, 2), 12288: (1, 2)},
        "grad_cache_chunk_size": 256,
        "loss_chunk_size": 1024,
        "timeout_s": 1200,
    },
    "loss": {
        # 65,536 unchunked does not fit (XLA: ~89 GiB) and is only estimated; chunked, one
        # call takes ~1.5 min on 2 cores, so it is timed without a warm-up (compiling the
        # loss takes seconds). 16,384 is measured both ways.
        "global_batches": (16384, 65536),
        "steps": {16384: (1, 1), 65536: (0, 1)},
        "dim": 256,
        "chunk_size": 256,
        "num_devices": 8,
        "timeout_s": 900,
    },
    # Each model's train step (its fastest configuration at that batch) beside the pipeline
    # feeding the same batch and lengths.
    "pipeline": {"batches": 200, "vocab_size": 8000, "steps": (1, 3), "timeout_s": 900},
    "min_seconds": 5.0,
}
QUICK = {
    "ceiling": {**FULL["ceiling"], "n": 2048, "accelerator_n": 8192, "trials": 3},
    "minilm": {
        **FULL["minilm"],
        "batches": {8: ("plain", "mnrl"), 16: FULL["minilm"]["batches"][256]},
        "steps": {8: (1, 1), 16: (1, 1)},
        "cached_mini_batch_size": 8,
        "grad_cache_chunk_size": 8,
        "timeout_s": 300,
    },
    "small": {
        "batches": (32, 128),
        "steps": {32: (1, 2), 128: (1, 1)},
        "grad_cache_chunk_size": 32,
        "loss_chunk_size": 32,
        "timeout_s": 300,
    },
    "loss": {
        **FULL["loss"],
        "global_batches": (2048,),
        "steps": {2048: (1, 1)},
        "chunk_size": 64,
        "timeout_s": 300,
    },
    "pipeline": {**FULL["pipeline"], "batches": 20, "steps": (1, 1), "timeout_s": 300},
    "min_seconds": 0.0,
}

VARIANT_NAMES = {
    "plain": "plain step",
    "remat": "remat",
    "grad_cache": "gradient caching, chunk {grad_cache_chunk_size}",
    "mnrl": "MNRL",
    "cached_mnrl": "CachedMNRL, mini-batch {cached_mini_batch_size}",
}


@dataclasses.dataclass
class Job:
    """One measurement: a worker script run once with its settings."""

    section: str
    name: str
    worker: str
    settings: dict
    timeout_s: float
    labels: dict
    outcome: dict = dataclasses.field(default_factory=dict)


# -- the plan -----------------------------------------------------------------------------------
def ceiling_job(profile: dict, when: str) -> Job:
    return Job("ceiling", f"ceiling_{when}", "matmul.py", profile["ceiling"], 300, {"when": when})


def train_settings(profile: dict, section: str, model: dict, batch: int, lengths) -> dict:
    """Settings shared by the training workers (jax_train.py, st_train.py)."""
    warmup, steps = profile[section]["steps"][batch]
    return {
        "model": model,
        "batch": batch,
        "query_length": lengths[0],
        "document_length": lengths[1],
        "warmup": warmup,
        "steps": steps,
        "min_seconds": profile["min_seconds"],
    }


def minilm_jobs(profile: dict) -> list[Job]:
    """cpt-jax and sentence-transformers variants, interleaved, at each batch size."""
    p, jobs = profile["minilm"], []
    for batch, variants in p["batches"].items():
        for variant in variants:
            st = variant in ("mnrl", "cached_mnrl")
            settings = train_settings(profile, "minilm", MINILM, batch, (128, 128))
            if st:
                settings.update(loss=variant, mini_batch_size=p["cached_mini_batch_size"])
            else:
                settings["remat"] = variant == "remat"
                if variant == "grad_cache":
                    settings["grad_cache_chunk_size"] = p["grad_cache_chunk_size"]
            labels = {
                "batch": batch,
                "impl": "sentence-transformers" if st else "cpt-jax",
                "variant": variant,
                "description": VARIANT_NAMES[variant].format(**p),
            }
            worker = "st_train.py" if st else "jax_train.py"
            name = f"minilm_{variant}_b{batch}"
            jobs.append(Job("minilm", name, worker, settings, p["timeout_s"], labels))
    return jobs


def small_jobs(profile: dict) -> list[Job]:
    """The smallest batch without gradient caching, then every batch with it."""
    p, jobs = profile["small"], []
    batches = p["batches"]
    for batch, grad_cache in [(batches[0], False)] + [(b, True) for b in batches]:
        settings = train_settings(profile, "small", SMALL, batch, SMALL_LENGTHS)
        if grad_cache:
            settings["grad_cache_chunk_size"] = min(p["grad_cache_chunk_size"], batch)
            settings["loss_chunk_size"] = min(p["loss_chunk_size"], batch)
        variant = "grad_cache" if grad_cache else "plain"
        labels = {"batch": batch, "variant": variant}
        name = f"small_{variant}_b{batch}"
        jobs.append(Job("small", name, "jax_train.py", settings, p["timeout_s"], labels))
    return jobs


def loss_jobs(profile: dict) -> list[Job]:
    """Unchunked and chunked loss at each global batch."""
    p, jobs = profile["loss"], []
    for batch in p["global_batches"]:
        for chunk in (None, p["chunk_size"]):
            settings = {
                "global_batch": batch,
                "dim": p["dim"],
                "num_devices": p["num_devices"],
                "chunk_size": chunk,
                "warmup": p["steps"][batch][0],
                "steps": p["steps"][batch][1],
                "max_fraction": 0.7,
            }
            name = f"loss_b{batch}_{'chunk' + str(chunk) if chunk else 'unchunked'}"
            labels = {"global_batch": batch, "chunk_size": chunk}
            jobs.append(Job("loss", name, "loss_memory.py", settings, p["timeout_s"], labels))
    return jobs


# (name, model, batch, lengths, gradient-caching chunk): the quickstart as configured
# (gin_configs/runs/quickstart_scratch.gin), and MiniLM in its fastest configuration at batch 64.
PIPELINE_CASES = (
    ("quickstart", SMALL, 128, SMALL_LENGTHS, None),
    ("minilm", MINILM, 64, (128, 128), 8),
)


def pipeline_jobs(profile: dict) -> list[Job]:
    """For each case: the train step's consumption, then the pipeline at the same shape."""
    p, jobs = profile["pipeline"], []
    for name, model, batch, lengths, chunk in PIPELINE_CASES:
        warmup, steps = p["steps"]
        settings = {
            "model": model,
            "batch": batch,
            "query_length": lengths[0],
            "document_length": lengths[1],
            "warmup": warmup,
            "steps": steps,
            "min_seconds": profile["min_seconds"],
        }
        if chunk:
            settings["grad_cache_chunk_size"] = chunk
        labels = {"case": name, "batch": batch, "lengths": lengths}
        jobs.append(
            Job(
                "pipeline",
                f"pipeline_{name}_step",
                "jax_train.py",
                settings,
                p["timeout_s"],
                {**labels, "kind": "step"},
            )
        )
        reader = {
            "batch": batch,
            "query_length": lengths[0],
            "document_length": lengths[1],
            "batches": p["batches"],
            "vocab_size": p["vocab_size"],
        }
        jobs.append(
            Job(
                "pipeline",
                f"pipeline_{name}_reader",
                "pipeline_throughput.py",
                reader,
                p["timeout_s"],
                {**labels, "kind": "reader"},
            )
        )
    return jobs


def plan(profile: dict, sections: list[str]) -> list[Job]:
    """The jobs of the chosen sections, in running order."""
    jobs = []
    if "ceiling" in sections:
        jobs.append(ceiling_job(profile, "start"))
    if "minilm" in sections:
        jobs += minilm_jobs(profile)
    if "small" in sections:
        jobs += small_jobs(profile)
    if "loss" in sections:
        jobs += loss_jobs(profile)
    if "pipeline" in sections:
        jobs += pipeline_jobs(profile)
    if "ceiling" in sections:
        jobs.append(ceiling_job(profile, "end"))
    return jobs


# -- running ------------------------------------------------------------------------------------
OUT_OF_MEMORY = re.compile(
    r"RESOURCE_EXHAUSTED|MemoryError|bad_alloc|can't allocate memory|out of memory", re.I
)


def run_job(job: Job, log_dir: str, memory_limit: int | None) -> dict:
    """Runs one worker; returns its result plus `ok`, `wall_s`, `peak_rss_gib` (or `error`)."""
    log_path = os.path.join(log_dir, job.name + ".log")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }

    def limit_memory():
        if memory_limit:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    command = [sys.executable, os.path.join(HERE, job.worker), json.dumps(job.settings)]
    start = time.monotonic()
    with open(log_path, "w") as log:
        log.write(" ".join(command[:2]) + " '" + command[2] + "'\n")
        log.flush()
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=limit_memory,
        )
        status, usage, timed_out = wait_with_timeout(process, job.timeout_s)
    outcome = {"wall_s": time.monotonic() - start, "log": os.path.relpath(log_path, REPO)}
    # ru_maxrss of this child alone: KiB on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    outcome["peak_rss_gib"] = usage.ru_maxrss * scale / GIB
    with open(log_path) as f:
        text = f.read()
    results = [line for line in text.splitlines() if line.startswith("BENCH_RESULT ")]
    if results and not timed_out and status == 0:
        worker = json.loads(results[-1][len("BENCH_RESULT ") :])
        outcome["worker_peak_rss_gib"] = worker.pop("peak_rss_gib")
        return {"ok": True, **worker, **outcome}
    error = describe_failure(status, timed_out, text, job, memory_limit)
    return {"ok": False, "error": error, **outcome}


def wait_with_timeout(process: subprocess.Popen, timeout_s: float):
    """Waits for `process` (killing its process group at the timeout); its rusage too."""
    deadline = time.monotonic() + timeout_s
    timed_out = False
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline and not timed_out:
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
        time.sleep(0.2)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage, timed_out


def describe_failure(status, timed_out, text, job, memory_limit) -> str:
    """One line on why a worker gave no result: timeout, out of memory, signal or error."""
    if timed_out:
        return f"timed out after {job.timeout_s:.0f} s"
    if OUT_OF_MEMORY.search(text):
        asked = re.search(r"allocating (\d+) bytes", text)
        details = [f"asked for {int(asked.group(1)) / GIB:.1f} GiB"] if asked else []
        if memory_limit:
            details.append(f"limit {memory_limit / GIB:.1f} GiB")
        return "out of memory" + (f" ({', '.join(details)})" if details else "")
    if status < 0:
        return f"killed by signal {-status}" + (" (out of memory?)" if -status == 9 else "")
    lines = [line for line in text.splitlines() if line.strip()]
    return f"exit {status}: {lines[-1][:160] if lines else ''}"


# -- the report ---------------------------------------------------------------------------------
def table(header: list[str], rows: list[list]) -> str:
    """A markdown table; None shows as an empty cell."""
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def fmt(value, digits=1, suffix=""):
    """A number with `digits` decimals and a suffix; None stays None (an empty cell)."""
    return None if value is None else f"{value:.{digits}f}{suffix}"


def seconds(value):
    """Three significant digits: CPU steps take seconds, accelerator steps milliseconds."""
    return None if value is None else f"{value:.3g}"


def percent(fraction):
    return None if fraction is None else f"{100 * fraction:.1f}%"


def ceiling(jobs: list[Job]) -> float | None:
    """The best matmul FLOP/s measured in the run."""
    values = [j.outcome["flops_per_s"] for j in jobs if j.section == "ceiling" and j.outcome["ok"]]
    return max(values) if values else None


def memory_cell(outcome: dict) -> str | None:
    """Peak resident memory, plus peak device memory where there is a device."""
    if not outcome.get("ok"):
        return None
    cell = f"{outcome['peak_rss_gib']:.2f}"
    if outcome.get("device_peak_gib") is not None:
        cell += f" (device {outcome['device_peak_gib']:.2f})"
    return cell


def report(jobs: list[Job], profile: dict) -> tuple[str, dict]:
    """The printed tables and the headline figures of results.json."""
    peak = ceiling(jobs)
    summary: dict = {"matmul_ceiling_flops_per_s": peak}
    parts = []
    by_section = {s: [j for j in jobs if j.section == s] for s in SECTIONS}

    if by_section["ceiling"]:
        parts.append(ceiling_report(by_section["ceiling"]))
    if by_section["minilm"]:
        parts.append(minilm_report(by_section["minilm"], peak, summary))
    if by_section["small"]:
        parts.append(small_report(by_section["small"], peak, summary))
    if by_section["loss"]:
        parts.append(loss_report(by_section["loss"], summary))
    if by_section["pipeline"]:
        parts.append(pipeline_report(by_section["pipeline"], summary))
    targets = check_targets(summary, profile)
    if targets:
        rows = [[k, fmt(v["value"], 2), v["goal"], v["met"]] for k, v in targets.items()]
        parts.append("### Targets\n\n" + table(["target", "measured", "goal", "met"], rows))
    summary["targets"] = targets
    return "\n\n".join(parts), summary


def ceiling_report(jobs: list[Job]) -> str:
    """The matmul ceilings of the run (and at HIGHEST precision, on accelerators)."""
    rows = []
    for j in jobs:
        o = j.outcome
        if not o["ok"]:
            rows.append([j.labels["when"], None, o["error"], None, None])
            continue
        highest = o.get("highest_precision_flops_per_s")
        gflops = [fmt(x / 1e9 if x else None) for x in (o["flops_per_s"], highest)]
        rows.append([j.labels["when"], f"{o['n']}x{o['n']}", *gflops, o["device"]])
    header = ["when", "size", "GFLOP/s (default precision)", "GFLOP/s (HIGHEST)", "device"]
    return "### float32 matmul ceiling (JAX)\n\n" + table(header, rows)


def mfu(outcome: dict, peak: float | None) -> float | None:
    """Model FLOP/s of a successful run over the ceiling."""
    if not outcome.get("ok") or not peak:
        return None
    return outcome["model_flops_per_s"] / peak


def minilm_report(jobs: list[Job], peak: float | None, summary: dict) -> str:
    """The MiniLM table; adds each variant's figures and the best of each side to `summary`."""
    rows = []
    for batch in sorted({j.labels["batch"] for j in jobs}):
        at_batch = [j for j in jobs if j.labels["batch"] == batch]
        ok = [j for j in at_batch if j.outcome["ok"]]
        cpt = [j for j in ok if j.labels["impl"] == "cpt-jax"]
        st = [j for j in ok if j.labels["impl"] == "sentence-transformers"]
        best_st = max((j.outcome["pairs_per_s"] for j in st), default=None)
        for j in at_batch:
            o = j.outcome
            speed = o.get("pairs_per_s")
            ratio = speed / best_st if speed and best_st else None
            rows.append(
                [
                    batch,
                    j.labels["impl"],
                    j.labels["description"],
                    fmt(speed, 2) if o["ok"] else o["error"],
                    fmt(ratio, 2, "x"),
                    percent(mfu(o, peak)),
                    memory_cell(o),
                    seconds(o.get("step_s_min")),
                ]
            )
            key = f"{'cpt' if j.labels['impl'] == 'cpt-jax' else 'st'}_{j.labels['variant']}"
            summary[f"{key}_pairs_per_s_b{batch}"] = speed
            summary[f"{key}_peak_rss_gib_b{batch}"] = o.get("peak_rss_gib") if o["ok"] else None
        if cpt:
            best = max(cpt, key=lambda j: j.outcome["pairs_per_s"])
            summary[f"cpt_pairs_per_s_b{batch}"] = best.outcome["pairs_per_s"]
            summary[f"cpt_variant_b{batch}"] = best.labels["variant"]
            summary[f"cpt_mfu_b{batch}"] = mfu(best.outcome, peak)
        if st:
            summary[f"st_pairs_per_s_b{batch}"] = best_st
        if cpt and st:
            summary[f"cpt_vs_st_b{batch}"] = summary[f"cpt_pairs_per_s_b{batch}"] / best_st
    header = [
        "batch",
        "implementation",
        "variant",
        "pairs/s",
        "vs best ST",
        "MFU",
        "peak RSS GiB",
        "best step s",
    ]
    return "### MiniLM-sized encoder, 128 + 128 tokens per pair\n\n" + table(header, rows)


def small_report(jobs: list[Job], peak: float | None, summary: dict) -> str:
    """The gradient-caching sweep, with ratios against its first (smallest) cached batch."""
    cached = [j for j in jobs if j.labels["variant"] == "grad_cache"]
    base = cached[0].outcome if cached and cached[0].outcome["ok"] else {}
    rows = []
    for j in jobs:
        o = j.outcome
        batch, variant = j.labels["batch"], j.labels["variant"]
        speed_ratio = o["pairs_per_s"] / base["pairs_per_s"] if o["ok"] and base else None
        rss_delta = o["peak_rss_gib"] - base["peak_rss_gib"] if o["ok"] and base else None
        chunk = j.settings.get("grad_cache_chunk_size")
        rows.append(
            [
                batch,
                f"gradient caching, chunk {chunk}" if chunk else "plain step",
                fmt(o.get("pairs_per_s"), 1) if o["ok"] else o["error"],
                fmt(speed_ratio, 2, "x"),
                memory_cell(o),
                fmt(rss_delta, 2, " GiB") if rss_delta is not None else None,
                percent(mfu(o, peak)),
                seconds(o.get("step_s_min")),
            ]
        )
        prefix = "small" if variant == "grad_cache" else "small_plain"
        summary[f"{prefix}_pairs_per_s_b{batch}"] = o.get("pairs_per_s")
        summary[f"{prefix}_peak_rss_gib_b{batch}"] = o.get("peak_rss_gib") if o["ok"] else None
    header = [
        "batch",
        "step",
        "pairs/s",
        "vs first cached",
        "peak RSS GiB",
        "RSS vs first cached",
        "MFU",
        "best step s",
    ]
    q, d = SMALL_LENGTHS
    title = f"### Quickstart model (1 layer, d 256, {q} + {d} tokens), gradient caching"
    return title + "\n\n" + table(header, rows)


def loss_report(jobs: list[Job], summary: dict) -> str:
    """The loss-alone table: measured peak where it ran, XLA's estimate always."""
    rows = []
    for j in jobs:
        o = j.outcome
        batch, chunk = j.labels["global_batch"], j.labels["chunk_size"]
        if not o["ok"]:
            status = o["error"]
        elif o["ran"]:
            status = f"{seconds(o['step_s_min'])} s"
            status += "" if j.settings["warmup"] else " (first call)"
        else:
            status = f"not run: over 70% of the {o['available_gib']:.1f} GiB available"
        measured = o.get("peak_rss_gib") if o.get("ran") else None
        rows.append(
            [batch, chunk or "unchunked", status, fmt(measured, 2), fmt(o.get("estimated_gib"), 2)]
        )
        key = f"loss_{'chunk' if chunk else 'unchunked'}_b{batch}"
        summary[f"{key}_peak_rss_gib"] = measured
        summary[f"{key}_estimated_gib"] = o.get("estimated_gib")
    header = [
        "global batch",
        "rows per block",
        "value+grad time",
        "peak RSS GiB",
        "XLA estimate GiB",
    ]
    title = "### The loss alone (value and gradients), 8 simulated CPU devices"
    return title + "\n\n" + table(header, rows)


def pipeline_report(jobs: list[Job], summary: dict) -> str:
    """Pipeline pairs/s over the train step's, per case (both measured in this run)."""
    rows = []
    for name, _, batch, lengths, _ in PIPELINE_CASES:
        step, reader = (
            next(j.outcome for j in jobs if (j.labels["case"], j.labels["kind"]) == (name, kind))
            for kind in ("step", "reader")
        )
        consumed = step.get("pairs_per_s") if step["ok"] else None
        ratios = {
            key: reader[key] / consumed if consumed and reader["ok"] else None
            for key in ("serve_pairs_per_s", "epoch_pairs_per_s")
        }
        rows.append(
            [
                name,
                batch,
                f"{lengths[0]} + {lengths[1]}",
                fmt(consumed, 1) if step["ok"] else step["error"],
                fmt(reader.get("serve_pairs_per_s"), 0) if reader["ok"] else reader["error"],
                fmt(ratios["serve_pairs_per_s"], 0, "x"),
                fmt(reader.get("tokenize_pairs_per_s"), 0),
                fmt(ratios["epoch_pairs_per_s"], 0, "x"),
                seconds(reader.get("tokenize_s")),
            ]
        )
        summary[f"pipeline_{name}_step_pairs_per_s"] = consumed
        for key in ("serve_pairs_per_s", "tokenize_pairs_per_s", "epoch_pairs_per_s", "tokenize_s"):
            summary[f"pipeline_{name}_{key}"] = reader.get(key)
        summary[f"pipeline_{name}_epoch_ratio"] = ratios["epoch_pairs_per_s"]
    header = [
        "model",
        "batch",
        "tokens",
        "train step pairs/s",
        "pipeline serves pairs/s",
        "ratio",
        "tokenises pairs/s",
        "ratio, tokenising every epoch",
        "tokenising s (once; cached)",
    ]
    title = "### Data pipeline vs the train step (stdlib code pairs, 8,000-piece vocabulary)"
    return title + "\n\n" + table(header, rows)


def check_targets(summary: dict, profile: dict) -> dict:
    """The issue's targets, on the largest MiniLM batch and the small sweep's ends."""
    targets = {}
    minilm_batch = max(profile["minilm"]["batches"])
    low, high = profile["small"]["batches"][0], profile["small"]["batches"][-1]

    def add(name, value, goal_text, met):
        if value is not None:
            targets[name] = {"value": value, "goal": goal_text, "met": bool(met(value))}

    add(
        f"cpt / ST pairs/s, batch {minilm_batch}",
        summary.get(f"cpt_vs_st_b{minilm_batch}"),
        ">= 1.5",
        lambda v: v >= 1.5,
    )
    add(
        f"cpt MFU, batch {minilm_batch}",
        summary.get(f"cpt_mfu_b{minilm_batch}"),
        ">= 0.40",
        lambda v: v >= 0.40,
    )
    rss_low, rss_high = (summary.get(f"small_peak_rss_gib_b{b}") for b in (low, high))
    if rss_low is not None and rss_high is not None:
        add(f"peak RSS b{high} - b{low} (GiB)", rss_high - rss_low, "<= 1.0", lambda v: v <= 1.0)
    speed_low, speed_high = (summary.get(f"small_pairs_per_s_b{b}") for b in (low, high))
    if speed_low and speed_high:
        add(f"pairs/s b{high} / b{low}", speed_high / speed_low, ">= 0.6", lambda v: v >= 0.6)
    for name, *_ in PIPELINE_CASES:
        add(
            f"pipeline / train step pairs/s, {name} (tokenising every epoch)",
            summary.get(f"pipeline_{name}_epoch_ratio"),
            ">= 5",
            lambda v: v >= 5,
        )
    return targets


# -- machine ------------------------------------------------------------------------------------
def machine(jobs: list[Job]) -> dict:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    versions = {}
    for package in (
        "jax",
        "jaxlib",
        "flax",
        "optax",
        "numpy",
        "torch",
        "sentence-transformers",
        "transformers",
        "tokenizers",
    ):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    ceilings = [j.outcome for j in jobs if j.section == "ceiling" and j.outcome.get("ok")]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": total_memory() / GIB if total_memory() else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "accelerator": ceilings[0]["device"] if ceilings else None,
        "jax_platform": ceilings[0]["platform"] if ceilings else None,
        "versions": versions,
        "commit": commit,
    }


def total_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


# -- main ---------------------------------------------------------------------------------------
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny batches/steps")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="sections to run")
    parser.add_argument(
        "--output",
        help="results JSON (default benchmarks/results.json; "
        "with --quick benchmarks/out/results_quick.json)",
    )
    parser.add_argument(
        "--memory-limit-gib",
        type=float,
        help="address-space limit of each CPU worker (default: the machine's memory; 0: none)",
    )
    parser.add_argument(
        "--match", help="run only the measurements whose name matches this regex (see --list)"
    )
    parser.add_argument("--list", action="store_true", help="print the plan and exit")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    profile = QUICK if args.quick else FULL
    sections = list(args.only or SECTIONS)
    if ("minilm" in sections or "small" in sections) and "ceiling" not in sections:
        sections.append("ceiling")  # MFU needs the ceiling of this run
    jobs = plan(profile, sections)
    if args.match:
        jobs = [j for j in jobs if re.search(args.match, j.name) or j.section == "ceiling"]
    if args.list:
        for job in jobs:
            print(f"{job.name:32s} {job.worker:16s} timeout {job.timeout_s:5.0f} s  {job.labels}")
        return 0
    output = args.output or os.path.join(
        HERE, "out/results_quick.json" if args.quick else "results.json"
    )
    log_dir = os.path.join(HERE, "out", "logs")
    os.makedirs(log_dir, exist_ok=True)
    if args.memory_limit_gib is None:
        # No limit beside an accelerator: its runtime maps far more address space than memory.
        memory_limit = None if accelerator_present() else total_memory()
    else:
        memory_limit = int(args.memory_limit_gib * GIB) or None
    started, section_start, elapsed = time.monotonic(), {}, {}
    print(f"{len(jobs)} measurements; logs in {os.path.relpath(log_dir)}", flush=True)
    for i, job in enumerate(jobs):
        section_start.setdefault(job.section, time.monotonic())
        job.outcome = run_job(job, log_dir, memory_limit)
        elapsed[job.section] = elapsed.get(job.section, 0.0) + job.outcome.get("wall_s", 0.0)
        o = job.outcome
        shown = (
            o["error"]
            if not o["ok"]
            else ", ".join(
                f"{k} {o[k]:.3g}"
                for k in ("pairs_per_s", "flops_per_s", "step_s_min", "estimated_gib")
                if o.get(k) is not None
            )
            + f", peak RSS {o['peak_rss_gib']:.2f} GiB"
        )
        clock = time.monotonic() - started
        print(f"[{i + 1}/{len(jobs)} {clock / 60:5.1f} min] {job.name}: {shown}", flush=True)
    text, summary = report(jobs, profile)
    results = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        **summary,
        "machine": machine(jobs),
        "section_seconds": elapsed,
        "total_seconds": time.monotonic() - started,
        "runs": [dataclasses.asdict(job) for job in jobs],
    }
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    m = results["machine"]
    print(f"\n## cpt-jax benchmarks ({results['date']})\n")
    print(
        f"{m['cpu']}, {m['usable_cores']} cores, {fmt(m['memory_gib'], 0)} GiB; "
        f"accelerator {m['accelerator']}; jax {m['versions']['jax']}, "
        f"torch {m['versions']['torch']}"
    )
    print("\n" + text + "\n")
    times = ", ".join(f"{k} {v / 60:.1f} min" for k, v in elapsed.items())
    print(f"Total {results['total_seconds'] / 60:.1f} min ({times}). Results: {output}")
    return 0


def accelerator_present() -> bool:
    """Whether this host has an NVIDIA GPU or a TPU (by their device files)."""
    return os.path.exists("/dev/nvidiactl") or any(
        name.startswith("accel") for name in os.listdir("/dev")
    )


if __name__ == "__main__":
    sys.exit(main())
