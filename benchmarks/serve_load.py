"""The embeddings server under load: requests/s and p50/p99 latency at 1 and 16 clients.

all-MiniLM-L6-v2 (its pinned wheel) as a cpt-jax model directory, served by `cpt_jax.serve`
on 127.0.0.1 after warm-up; each client is a thread with its own `openai` client sending
one short text per request (a search query), back to back. Prints a table and writes
`benchmarks/results_serve.json`.

    .venv/bin/python benchmarks/serve_load.py
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import concurrent.futures  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import openai  # noqa: E402
import uvicorn  # noqa: E402

from cpt_jax import pretrained  # noqa: E402
from cpt_jax.embed import Embedder  # noqa: E402
from cpt_jax.serve import make_app  # noqa: E402
from cpt_jax.serving import Batcher  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WORDS = ["read", "parse", "sort", "write", "file", "list", "string", "date", "open", "value"]
REQUESTS = {1: 200, 16: 800}  # per concurrency level, in total


def serve(embedder: Embedder) -> tuple[str, uvicorn.Server, Batcher]:
    batcher = Batcher(embedder)
    batcher.warm_up()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(make_app(batcher, "minilm"), host="127.0.0.1", port=port, log_level="error")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}/v1", server, batcher


def load(url: str, clients: int, total: int) -> dict:
    rng = np.random.default_rng(clients)
    texts = [" ".join(rng.choice(WORDS, rng.integers(3, 12))) for _ in range(total)]
    latencies: list[float] = []

    def client(index: int) -> None:
        api = openai.OpenAI(api_key="none", base_url=url, max_retries=0)
        for text in texts[index::clients]:
            start = time.perf_counter()
            api.embeddings.create(input=text, model="minilm", extra_body={"input_type": "query"})
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    seconds = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "clients": clients,
        "requests": total,
        "requests_per_second": total / seconds,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def main() -> None:
    minilm = pretrained.load_minilm(log=lambda *_: None)
    with tempfile.TemporaryDirectory() as tmp:
        pretrained.write_model_dir(minilm, tmp, {"queries": 32, "documents": 256})
        url, server, batcher = serve(Embedder.from_checkpoint(tmp))
        load(url, 4, 40)  # the clients' own start-up
        results = []
        for clients, total in REQUESTS.items():
            passes = batcher.forward_passes
            results.append(
                {**load(url, clients, total), "forward_passes": batcher.forward_passes - passes}
            )
        server.should_exit = True
    print("| clients | requests | requests/s | p50 ms | p99 ms | forward passes |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['clients']} | {r['requests']} | {r['requests_per_second']:.1f} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['forward_passes']} |"
        )
    with open(os.path.join(HERE, "results_serve.json"), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
