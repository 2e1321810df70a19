"""The embeddings server through the real `openai` client on 127.0.0.1: values equal to the
Embedder's, `dimensions`, base64, the API key, bad requests answered in OpenAI's error shape
(the server stays up), a bounded load test, and no compilation after the warm-up."""

import base64
import concurrent.futures
import socket
import threading
import time

import httpx2 as httpx
import numpy as np
import openai
import pytest
import uvicorn

from cpt_jax import serve
from cpt_jax.embed import Embedder
from cpt_jax.serve import Limits, make_app
from cpt_jax.serving import Batcher, batch_buckets, length_buckets

KEY = "test-key-123"
TEXTS = ["read a file line by line", "", "sort a list in place " * 40, "parse a date"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_run):
    embedder = Embedder.from_checkpoint(tiny_run)
    batcher = Batcher(embedder, max_batch=16)
    batcher.warm_up()
    app = make_app(
        batcher,
        "tiny",
        api_key=KEY,
        limits=Limits(max_inputs=32, max_characters=5000, max_body_bytes=200_000),
    )
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    yield {"url": f"http://127.0.0.1:{port}", "embedder": embedder, "batcher": batcher}
    uv.should_exit = True
    thread.join(timeout=30)
    batcher.close()


def client(server, key=KEY):
    return openai.OpenAI(api_key=key, base_url=server["url"] + "/v1", max_retries=0)


def vectors(response):
    assert [d.index for d in response.data] == list(range(len(response.data)))
    return np.array([d.embedding for d in response.data], np.float32)


@pytest.mark.parametrize("kind", ["query", "document"])
def test_the_openai_client_gets_the_embedders_vectors(server, kind):
    want = server["embedder"].encode(TEXTS, kind=kind)
    response = client(server).embeddings.create(
        input=TEXTS, model="tiny", encoding_format="float", extra_body={"input_type": kind}
    )
    np.testing.assert_allclose(vectors(response), want, atol=1e-5)
    assert response.model == "tiny"
    tokens = (server["embedder"].tokenize(TEXTS, kind) != 0).sum()
    assert response.usage.prompt_tokens == response.usage.total_tokens == tokens


def test_documents_by_default_base64_and_dimensions(server):
    embedder = server["embedder"]
    full = embedder.encode(TEXTS[:2], kind="document")
    # The client asks for base64 when no format is given, and decodes it to floats.
    got = vectors(client(server).embeddings.create(input=TEXTS[:2], model="tiny"))
    np.testing.assert_allclose(got, full, atol=1e-5)
    raw = httpx.post(
        server["url"] + "/v1/embeddings",
        headers={"Authorization": f"Bearer {KEY}"},
        json={"input": TEXTS[0], "encoding_format": "base64"},
    ).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), "<f4")
    np.testing.assert_allclose(decoded, full[0], atol=1e-5)
    short = vectors(client(server).embeddings.create(input=TEXTS[:2], model="tiny", dimensions=8))
    want = full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True)
    np.testing.assert_allclose(short, want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(short, axis=1), 1.0, atol=1e-5)


def test_models_health_and_the_api_key(server):
    assert [m.id for m in client(server).models.list().data] == ["tiny"]
    assert httpx.get(server["url"] + "/health").json()["status"] == "ok"  # no key needed
    with pytest.raises(openai.AuthenticationError) as e:
        client(server, key="wrong").embeddings.create(input="x", model="tiny")
    assert e.value.body["code"] == "invalid_api_key"
    bare = httpx.post(server["url"] + "/v1/embeddings", json={"input": "x"})
    assert bare.status_code == 401 and "API key" in bare.json()["error"]["message"]


BAD = [
    ({"input": []}, 400, "input"),
    ({"input": [1, 2, 3]}, 400, "input"),
    ({"input": ["x"] * 33}, 400, "input"),
    ({"input": "x" * 5001}, 400, "input"),
    ({"input": "x", "model": "text-embedding-3-small"}, 404, "model"),
    ({"input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
    ({"input": "x", "dimensions": 0}, 400, "dimensions"),
    ({"input": "x", "dimensions": 10_000}, 400, "dimensions"),
    ({"input": "x", "dimensions": True}, 400, "dimensions"),
    ({"input": "x", "input_type": "passage"}, 400, "input_type"),
]


@pytest.mark.parametrize("body, status, param", BAD)
def test_bad_requests_get_openai_errors_and_the_server_stays_up(server, body, status, param):
    response = httpx.post(
        server["url"] + "/v1/embeddings", headers={"Authorization": f"Bearer {KEY}"}, json=body
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert error["message"]
    assert client(server).embeddings.create(input="still up", model="tiny").data


def test_malformed_bodies_and_unknown_routes(server):
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    url = server["url"] + "/v1/embeddings"
    assert httpx.post(url, headers=headers, content=b"{not json").status_code == 400
    assert httpx.post(url, headers=headers, content=b'["a list"]').status_code == 400
    big = httpx.post(url, headers=headers, content=b'{"input": "' + b"x" * 300_000 + b'"}')
    assert big.status_code == 413 and "error" in big.json()
    assert httpx.get(url, headers=headers).status_code == 405
    missing = httpx.get(server["url"] + "/v1/nothing", headers=headers)
    assert missing.status_code == 404 and "error" in missing.json()


def test_sixteen_clients_times_25_requests_all_answered_without_compiling(server):
    embedder = server["embedder"]
    rng = np.random.default_rng(0)
    words = ["read", "write", "sort", "parse", "list", "file", "date", "string", "open"]
    requests = [
        [" ".join(rng.choice(words, rng.integers(0, 60))) for _ in range(rng.integers(1, 6))]
        for _ in range(16 * 25)
    ]

    # The references first (batches of 64: shapes the server, at most 16, never runs).
    want = [embedder.encode(texts, kind="document") for texts in requests]
    compiled = embedder._apply._cache_size()
    batcher = server["batcher"]
    requests_before, passes_before = batcher.requests_done, batcher.forward_passes

    def one_client(index):
        api = client(server)
        for number in range(index * 25, (index + 1) * 25):
            got = vectors(api.embeddings.create(input=requests[number], model="tiny"))
            np.testing.assert_allclose(got, want[number], atol=1e-5)
        return index

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert sorted(pool.map(one_client, range(16))) == list(range(16))
    assert embedder._apply._cache_size() == compiled  # no shape compiled under load
    served = batcher.requests_done - requests_before
    passes = batcher.forward_passes - passes_before
    print(f"\n{served} requests in {passes} forward passes")
    assert served == 400 and passes < served  # concurrent requests shared batches


def test_the_command_line_names_a_bad_model_directory(tmp_path, capsys):
    assert serve.main(["--checkpoint", str(tmp_path / "nothing")]) == 2
    assert str(tmp_path / "nothing") in capsys.readouterr().err


def test_buckets():
    assert batch_buckets(64) == (1, 4, 16, 64)
    assert batch_buckets(16) == (1, 4, 16)
    assert batch_buckets(20) == (1, 4, 16, 20)
    assert length_buckets(128) == (16, 32, 64, 128)
    assert length_buckets(100) == (16, 32, 64, 100)
    with pytest.raises(ValueError, match="max_batch must be positive"):
        batch_buckets(0)
