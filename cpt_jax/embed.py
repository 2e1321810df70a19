"""Embedding API and CLI: a model directory in, unit-norm float32 embeddings out.

Example:
  embedder = Embedder.from_checkpoint("runs/quickstart")
  q = embedder.encode(["sort a list in place"], kind="query")          # [1, d]
  d = embedder.encode([source_code], kind="document")                # [1, d]
  scores = q @ d.T                                                   # cosine similarity

Shorter and quantised vectors (`cpt_jax.quantization`):
  embedder.encode(texts, kind="document", dimensions=128)           # [n, 128], unit norm
  embedder.encode(texts, kind="document", precision="binary")       # [n, d/8] uint8 bits
A model trained with Matryoshka sizes (`embedder.embedding_sizes`) keeps its quality when cut
to those sizes; any other model loses some (docs/experiments.md, "Smaller embeddings").

CLI:
  python -m cpt_jax.embed --checkpoint runs/quickstart --input texts.jsonl --field text \
      --kind query --output embeddings.npy
  ... --dimensions 128 --precision int8 --output docs.npy    # also writes docs.npy.format.json
  ... --kind query --format_from docs.npy.format.json --output queries.npy   (same format)

Queries and documents get different delimiters (`[SOS]_x ... [EOS]_x` vs `[SOS]_y ... [EOS]_y`,
as in the paper), so `kind` matters even for a shared encoder. Texts longer than the model's
sequence length for that side are truncated (the head is kept); empty strings are fine.
"""

from __future__ import annotations

import os

# A command-line entry point: keep TensorFlow's C++ start-up chatter (it only reads data
# here, and some dependencies import it) off the console. Set before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse
import functools
import json
import sys
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cpt_jax import checkpoints, files
from cpt_jax.models import Encoder, EncoderConfig
from cpt_jax.quantization import PRECISIONS, VectorFormat
from cpt_jax.tokenization import Tokenizer

KINDS = ("query", "document")
# The embed CLI writes the vector format of OUTPUT (with its int8 step) to OUTPUT + this.
FORMAT_SUFFIX = ".format.json"
# Batches are trimmed to the longest row, rounded up to one of these lengths, so that short
# inputs run fast while only a handful of shapes get compiled.
_MIN_BUCKET = 16


def abstract_saved_params(config: EncoderConfig, meta: dict | None = None) -> dict:
    """The shapes of a checkpoint's `params` item, `{"encoder": ..., "log_scale": ...}`, as
    `jax.ShapeDtypeStruct`s on the default device: what `checkpoints.restore_params` takes.
    `meta` (the model's `model.json`) gives the log-scale's shape (one per Matryoshka size)."""
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    boxed = jax.eval_shape(Encoder(config).init, jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
    return {
        "encoder": jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
            nn.unbox(boxed)["params"],
        ),
        "log_scale": jax.ShapeDtypeStruct(
            checkpoints.log_scale_shape(meta or {}), jnp.float32, sharding=device
        ),
    }


class Embedder:
    """Encodes texts with a trained cpt-jax encoder on the default device."""

    def __init__(
        self,
        model_config: EncoderConfig,
        encoder_params,
        tokenizer: Tokenizer,
        sequence_lengths: dict[str, int],
        embedding_sizes: Sequence[int] | None = None,
    ):
        self.model_config = model_config
        # The prefix lengths the model was trained to embed with (Matryoshka), largest first.
        self.embedding_sizes = tuple(embedding_sizes or (model_config.embedding_dim,))
        self.tokenizer = tokenizer
        self.max_lengths = {
            "query": int(sequence_lengths["queries"]),
            "document": int(sequence_lengths["documents"]),
        }
        self._params = encoder_params
        self._apply = _jitted_apply(model_config)

    @property
    def dim(self) -> int:
        return self.model_config.embedding_dim

    @property
    def params(self):
        """The encoder's parameters (a pytree of device arrays)."""
        return self._params

    @classmethod
    def from_checkpoint(cls, model_dir: str, step: int | None = None) -> Embedder:
        """Loads the latest (or given) checkpoint of a model directory written by training.

        Needs nothing but the directory: the encoder config, sequence lengths and vocabulary
        are stored in it (see `cpt_jax.checkpoints`). Pretrained weights converted with
        `python -m cpt_jax.pretrained` load the same way.
        """
        meta, config, tokenizer = checkpoints.load_model_files(model_dir)
        params = checkpoints.restore_params(model_dir, abstract_saved_params(config, meta), step)
        sizes = checkpoints.embedding_sizes(meta, config.embedding_dim)
        return cls(config, params["encoder"], tokenizer, meta["sequence_lengths"], sizes)

    def encode(
        self,
        texts: Sequence[str],
        kind: str = "query",
        batch_size: int = 64,
        *,
        dimensions: int | None = None,
        precision: str = "float32",
        int8_step: float | None = None,
    ) -> np.ndarray:
        """Embeds `texts` -> float32 `[len(texts), dim]`, rows of unit L2 norm.

        Args:
          texts: strings (empty allowed; long ones are truncated to the side's length).
          kind: "query" (the x side: natural language) or "document" (the y side: code/text).
          batch_size: rows per forward pass.
          dimensions: keep the first `dimensions` coordinates, re-normalised: `[n,
            dimensions]` (best at one of `embedding_sizes`).
          precision: "float32"; "int8" (int8 codes `round(x / int8_step)`, clipped to
            +-127); or "binary" (the signs as packed bits, uint8 `[n, ceil(dimensions/8)]`).
            See `cpt_jax.quantization.VectorFormat`.
          int8_step: int8's step; None calibrates it on these texts (`max|x| / 127`): pass
            the step of the vectors these will be compared with (a stored collection's).
        """
        vector_format = VectorFormat(dimensions, precision, int8_step)
        if dimensions is not None and dimensions > self.dim:
            raise ValueError(f"dimensions={dimensions} exceeds the model's width {self.dim}")
        vectors = self._encode_float(texts, kind, batch_size)
        if vector_format == VectorFormat():
            return vectors
        if not len(vectors):
            vector_format = vector_format.calibrate(np.ones((1, self.dim), np.float32))
        return vector_format.store(vectors)[1]

    def _encode_float(self, texts: Sequence[str], kind: str, batch_size: int) -> np.ndarray:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        tokens = self.tokenize(texts, kind)
        # Batches of similar lengths (longest first, so the widest shape compiles first): a
        # short text then shares its batch with short ones and is trimmed to a narrow bucket
        # instead of padded to the longest text of the input.
        order = np.argsort(-_token_counts(tokens), kind="stable")
        out = np.zeros((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self.embed_tokens(tokens[rows], batch_size)
        return out

    def tokenize(self, texts: Sequence[str], kind: str) -> np.ndarray:
        """`texts` as int32 token ids `[len(texts), max_length of kind]` with the side's
        delimiters, right-padded with 0 (truncated to the side's length)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of strings, not a single string")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
        max_length = self.max_lengths[kind]
        if not len(texts):
            return np.zeros((0, max_length), np.int32)
        return np.asarray(self.tokenizer.encode(list(texts), kind, max_length), np.int32)

    def embed_tokens(self, tokens: np.ndarray, batch_size: int) -> np.ndarray:
        """Embeds at most `batch_size` rows of `tokenize`'s output -> float32 `[n, dim]`.

        The forward pass runs on `[batch_size, width]`: the rows padded with all-padding rows
        (computed and dropped) and the width trimmed to a power of two of at least 16 that
        holds the longest row. So one compiled shape serves every batch of that size and
        bucket; right padding does not change an embedding.
        """
        n = len(tokens)
        if n > batch_size:
            raise ValueError(f"{n} rows for a batch of {batch_size}")
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        tokens = _trim_to_bucket(tokens, tokens.shape[1])
        if tokens.max() >= self.model_config.vocab_size or tokens.min() < 0:
            raise ValueError(
                f"token ids up to {tokens.max()} for an embedding table of "
                f"{self.model_config.vocab_size} rows: the vocabulary is not this model's"
            )
        padded = np.zeros((batch_size, tokens.shape[1]), np.int32)
        padded[:n] = tokens
        out = np.asarray(self._apply(self._params, padded))[:n]
        bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
        if bad.size:
            raise FloatingPointError(
                f"the model gives non-finite embeddings for {bad.size} of {n} texts "
                f"(first: row {bad[0]}): its parameters are damaged"
            )
        return out


@functools.lru_cache(maxsize=8)
def _jitted_apply(config: EncoderConfig):
    """The jitted forward pass of one architecture, shared by its Embedders (a reloaded model
    compiles nothing)."""
    model = Encoder(config)
    return jax.jit(
        lambda params, tokens: model.apply({"params": params}, tokens, deterministic=True)
    )


def _token_counts(tokens: np.ndarray) -> np.ndarray:
    """Tokens per row of right-padded ids `[n, L]` (padding is id 0) -> int `[n]`."""
    return (tokens != 0).sum(axis=1)


def _trim_to_bucket(tokens: np.ndarray, max_length: int) -> np.ndarray:
    """Drops trailing all-padding columns, keeping a power-of-two width (<= max_length).

    Right padding does not change the embedding (padding is masked; positions are absolute),
    so this only saves compute.
    """
    longest = int(_token_counts(tokens).max(initial=1))
    width = _MIN_BUCKET
    while width < longest:
        width *= 2
    return tokens[:, : min(width, max_length)]


# -- command line -------------------------------------------------------------------------
def read_jsonl_field(path: str, field: str) -> list[str]:
    """Reads one string field from every line of a JSONL file.

    Raises ValueError naming the file, line and field for unreadable JSON, a missing field or
    a non-string value; OSError (with the path) when the file cannot be read.
    """
    texts = []
    for line_number, record in files.iter_records(path, required=[field]):
        if not isinstance(record[field], str):
            raise ValueError(
                f"{path}:{line_number}: field {field!r} is "
                f"{type(record[field]).__name__}, expected a string"
            )
        texts.append(record[field])
    return texts


def read_vector_format(path: str) -> VectorFormat:
    """The `VectorFormat` of a `FORMAT_SUFFIX` file; errors name the file."""
    try:
        with open(path, encoding="utf-8") as f:
            return VectorFormat.from_json(json.load(f))
    except (ValueError, TypeError, AttributeError) as e:  # JSON errors are ValueErrors
        raise ValueError(f"{path}: not a vector format file ({e})") from e


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cpt_jax.embed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, help="model directory written by training")
    parser.add_argument("--input", required=True, help="JSONL file, one object per line")
    parser.add_argument("--field", default="text", help="the JSON field holding the text")
    parser.add_argument("--kind", choices=KINDS, default="query")
    parser.add_argument("--output", required=True, help="where to write the [n, d] .npy array")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--dimensions", type=int, help="keep the first N coordinates")
    parser.add_argument("--precision", choices=PRECISIONS, help="float32 (default), int8, binary")
    parser.add_argument(
        "--format_from",
        help=f"a {FORMAT_SUFFIX} file written beside earlier output: the same size, precision "
        "and int8 step (for queries against stored documents)",
    )
    args = parser.parse_args(argv)
    if args.format_from and (args.dimensions is not None or args.precision is not None):
        parser.error("--format_from sets the format: give no --dimensions or --precision")
    try:
        vector_format = VectorFormat(args.dimensions, args.precision or "float32")
        if args.format_from:
            vector_format = read_vector_format(args.format_from)
        texts = read_jsonl_field(args.input, args.field)
        embedder = Embedder.from_checkpoint(args.checkpoint)
        vectors = embedder.encode(texts, kind=args.kind, batch_size=args.batch_size)
        if vector_format != VectorFormat():
            vector_format, vectors = vector_format.store(vectors)
            files.write_json_atomic(args.output + FORMAT_SUFFIX, vector_format.to_json())
        with files.atomic_open(args.output, "wb") as f:
            np.save(f, vectors)
    except (OSError, ValueError, FloatingPointError) as e:  # ModelDirectoryError included
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"wrote {vectors.shape[0]} x {vectors.shape[1]} {vectors.dtype} vectors "
        f"({vector_format.name}) to {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
