r"""An OpenAI-compatible embeddings server for a cpt-jax model directory.

  python -m cpt_jax.serve --checkpoint runs/quickstart [--host 127.0.0.1] [--port 8000] \
      [--api_key KEY] [--model_name NAME] [--default_input_type document]

Endpoints (OpenAI's shapes; errors as `{"error": {"message", "type", "param", "code"}}`):
  POST /v1/embeddings  `input` (a string or a list of strings), `model`, `encoding_format`
                       ("float" or "base64": little-endian float32), `dimensions` (the first
                       N components, re-normalised), and `input_type` ("query" or
                       "document", an extension: cpt models encode the two sides with
                       different delimiters).
  GET  /v1/models      the one model served.
  GET  /health         200 once warmed up (no key needed).

`input_type` defaults to "document": clients that cannot send it (most OpenAI clients) then
index documents correctly, and the vectors they store stay valid when they later learn to
send `input_type="query"` for their queries; a query sent as a document still retrieves, a
little worse. `--default_input_type query` changes it.

Limits (each a flag; past one: 400, or 413 for the body): 256 inputs per request, 100,000
characters per input (longer inputs are truncated to the model's sequence length anyway),
a 4 MiB body. With `--api_key`, every /v1 request needs `Authorization: Bearer KEY` (401
otherwise). Binds to 127.0.0.1 unless `--host` says otherwise. Concurrent requests are
batched together and no request compiles after the warm-up (`cpt_jax.serving`).
"""

from __future__ import annotations

import os

# A command-line entry point: keep TensorFlow's C++ start-up chatter off the console.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse
import asyncio
import base64
import dataclasses
import hmac
import json
import sys
import time

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cpt_jax import quantization
from cpt_jax.embed import KINDS, Embedder
from cpt_jax.serving import Batcher


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may hold."""

    max_inputs: int = 256
    max_characters: int = 100_000
    max_body_bytes: int = 4 * 1024 * 1024


class RequestError(Exception):
    """A bad request: `status`, OpenAI's error `type`, the offending `param` and a `code`."""

    def __init__(self, status, message, param=None, code=None, kind="invalid_request_error"):
        super().__init__(message)
        self.status, self.param, self.code, self.kind = status, param, code, kind


def error_response(error: RequestError) -> JSONResponse:
    body = {"message": str(error), "type": error.kind, "param": error.param, "code": error.code}
    return JSONResponse({"error": body}, status_code=error.status)


def make_app(
    batcher: Batcher,
    model_name: str,
    *,
    api_key: str | None = None,
    limits: Limits = Limits(),
    default_input_type: str = "document",
) -> Starlette:
    """The Starlette application over a (warmed-up) `batcher`."""
    if default_input_type not in KINDS:
        raise ValueError(f"default_input_type must be one of {KINDS}, got {default_input_type!r}")
    dim = batcher.embedder.dim
    created = int(time.time())

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), api_key.encode()):
            raise RequestError(
                401,
                "Incorrect or missing API key: send `Authorization: Bearer <key>`",
                code="invalid_api_key",
            )

    async def read_json(request: Request) -> dict:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise RequestError(413, f"the body is over {limits.max_body_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limits.max_body_bytes:
                raise RequestError(413, f"the body is over {limits.max_body_bytes} bytes")
        try:
            parsed = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RequestError(400, f"the body is not valid JSON ({e})") from None
        if not isinstance(parsed, dict):
            raise RequestError(400, "the body must be a JSON object")
        return parsed

    def parse(body: dict) -> tuple[list[str], str, str, int | None]:
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts:
            raise RequestError(
                400, "'input' must be a string or a non-empty list of strings", "input"
            )
        if len(texts) > limits.max_inputs:
            raise RequestError(
                400, f"'input' has {len(texts)} items; at most {limits.max_inputs}", "input"
            )
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise RequestError(
                    400,
                    f"input[{i}] is not a string (token arrays are not supported: send text)",
                    "input",
                )
            if len(text) > limits.max_characters:
                raise RequestError(
                    400,
                    f"input[{i}] has {len(text)} characters; at most {limits.max_characters}",
                    "input",
                )
        model = body.get("model")
        if model is not None and model != model_name:
            raise RequestError(
                404,
                f"The model {model!r} does not exist; this server has {model_name!r}",
                "model",
                "model_not_found",
            )
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise RequestError(
                400, "'encoding_format' must be 'float' or 'base64'", "encoding_format"
            )
        kind = body.get("input_type") or default_input_type
        if kind not in KINDS:
            raise RequestError(400, f"'input_type' must be one of {list(KINDS)}", "input_type")
        dimensions = body.get("dimensions")
        if dimensions is not None and (
            isinstance(dimensions, bool)
            or not isinstance(dimensions, int)
            or not 1 <= dimensions <= dim
        ):
            raise RequestError(400, f"'dimensions' must be an integer in [1, {dim}]", "dimensions")
        return texts, kind, encoding, dimensions

    async def embeddings(request: Request) -> JSONResponse:
        check_key(request)
        texts, kind, encoding, dimensions = parse(await read_json(request))
        # Tokenising a large request must not hold up the event loop.
        future = await run_in_threadpool(batcher.submit, texts, kind)
        vectors, counts = await asyncio.wrap_future(future)
        if dimensions is not None and dimensions < dim:
            vectors = quantization.truncate(vectors, dimensions)
        data = [
            {"object": "embedding", "index": i, "embedding": encode_vector(v, encoding)}
            for i, v in enumerate(vectors)
        ]
        tokens = int(counts.sum())
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return JSONResponse({"object": "list", "data": data, "model": model_name, "usage": usage})

    async def models(request: Request) -> JSONResponse:
        check_key(request)
        card = {"id": model_name, "object": "model", "created": created, "owned_by": "cpt-jax"}
        return JSONResponse({"object": "list", "data": [card]})

    async def health(request: Request) -> JSONResponse:
        sizes = list(batcher.embedder.embedding_sizes)
        return JSONResponse(
            {"status": "ok", "model": model_name, "dimensions": dim, "embedding_sizes": sizes}
        )

    async def on_request_error(request: Request, error: RequestError) -> JSONResponse:
        return error_response(error)

    async def on_http_error(request: Request, error: HTTPException) -> JSONResponse:
        return error_response(RequestError(error.status_code, str(error.detail)))

    async def on_any_error(request: Request, error: Exception) -> JSONResponse:
        message = f"internal error: {type(error).__name__}: {error}"
        return error_response(RequestError(500, message, kind="server_error"))

    return Starlette(
        routes=[
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        exception_handlers={
            RequestError: on_request_error,
            HTTPException: on_http_error,
            Exception: on_any_error,
        },
    )


def encode_vector(vector: np.ndarray, encoding: str):
    """A vector as OpenAI sends it: a list of floats, or base64 of little-endian float32."""
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, "<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


# -- command line --------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cpt_jax.serve",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, help="model directory written by training")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--api_key",
        default=os.environ.get("CPT_JAX_API_KEY"),
        help="required bearer key (default: $CPT_JAX_API_KEY; none: open)",
    )
    parser.add_argument("--model_name", help="the model's id (default: the directory's name)")
    parser.add_argument("--default_input_type", choices=KINDS, default="document")
    parser.add_argument("--max_batch", type=int, default=64, help="rows per forward pass")
    parser.add_argument("--max_inputs", type=int, default=Limits.max_inputs)
    parser.add_argument("--max_characters", type=int, default=Limits.max_characters)
    parser.add_argument("--max_body_bytes", type=int, default=Limits.max_body_bytes)
    args = parser.parse_args(argv)
    try:
        embedder = Embedder.from_checkpoint(args.checkpoint)
    except (OSError, ValueError) as e:  # ModelDirectoryError included
        print(f"error: {e}", file=sys.stderr)
        return 2
    batcher = Batcher(embedder, max_batch=args.max_batch)
    started = time.monotonic()
    shapes = batcher.warm_up()
    name = args.model_name or os.path.basename(os.path.normpath(args.checkpoint))
    print(
        f"{name}: {shapes} shapes compiled in {time.monotonic() - started:.1f} s; serving on "
        f"http://{args.host}:{args.port}/v1",
        flush=True,
    )
    limits = Limits(args.max_inputs, args.max_characters, args.max_body_bytes)
    app = make_app(
        batcher,
        name,
        api_key=args.api_key,
        limits=limits,
        default_input_type=args.default_input_type,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
