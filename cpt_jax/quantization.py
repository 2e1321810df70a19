"""Shorter and quantised embeddings: how a vector is stored, and how stored vectors are scored.

A `VectorFormat` is a prefix size, a precision and (binary only) a rescoring depth. For
unit-norm float embeddings `x [n, d]` and `D` the kept size:

    truncate   x[:, :D] / |x[:, :D]|       (a Matryoshka-trained prefix is an embedding)
    float32    4 D bytes; score <q, x>                    (float64 products, float32 result)
    int8       D bytes; codes c = clip(round(x / step), -127, 127), one `step` for the whole
               collection (`calibrate`: max|x| / 127); score step^2 * <c_q, c_x>, an exact
               integer product, the query coded with the collection's step
    binary     ceil(D / 8) bytes; the signs as packed bits b = [x > 0]; score
               D - 2 * Hamming(b_q, b_x) = <sign(q), sign(x)> (the ±1 dot product)
    binary, rescore=K
               the best K by Hamming, re-ranked by <q, sign(x)> / sqrt(D) with the float query
               (sentence-transformers' rescoring): only the K candidates move, ahead of the rest

Ties keep the stored order (the lower index first) wherever a ranking is made here, so a
rescored list never depends on where the relevant vector sits among its equals.

Example:
  >>> x = truncate(np.array([[3.0, 4.0, 12.0]]), 2)
  >>> [round(float(v), 4) for v in x[0]]
  [0.6, 0.8]
  >>> fmt, stored = VectorFormat(2, "int8").store(x)
  >>> stored.tolist(), round(fmt.int8_step, 6)
  ([[95, 127]], 0.006299)
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

PRECISIONS = ("float32", "int8", "binary")
_INT8_MAX = 127


def truncate(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """`[n, d] -> [n, dimensions]` float32: the first `dimensions` coordinates re-normalised
    to unit L2 norm (a zero row stays zero). None keeps all d (re-normalised too).

    Example:
      >>> [round(float(v), 4) for v in truncate(np.array([[1.0, 1.0, 5.0]]), 2)[0]]
      [0.7071, 0.7071]
    """
    vectors = _matrix(vectors, "vectors")
    width = vectors.shape[1]
    if dimensions is not None:
        _check_dimensions(dimensions)
        if dimensions > width:
            raise ValueError(f"dimensions={dimensions} exceeds the vectors' width {width}")
    kept = vectors[:, :dimensions].astype(np.float64)
    norms = np.linalg.norm(kept, axis=1, keepdims=True)
    return (kept / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def bytes_per_vector(dimensions: int, precision: str) -> int:
    """Bytes one stored vector takes: `4 D` (float32), `D` (int8) or `ceil(D / 8)` (binary).

    Example:
      >>> [bytes_per_vector(384, p) for p in PRECISIONS]
      [1536, 384, 48]
    """
    _check_dimensions(dimensions)
    _check_precision(precision)
    return {"float32": 4 * dimensions, "int8": dimensions, "binary": -(-dimensions // 8)}[precision]


@dataclasses.dataclass(frozen=True)
class VectorFormat:
    """How vectors are stored and scored (see the module docstring).

    Attributes:
      dimensions: the prefix kept; None: the model's full width.
      precision: one of `PRECISIONS`.
      int8_step: int8 only: the quantisation step (None until `calibrate`).
      rescore: binary only: rescore the best `rescore` candidates with the float query.

    Example:
      >>> VectorFormat(64, "binary", rescore=40).name
      '64d-binary-rescore40'
    """

    dimensions: int | None = None
    precision: str = "float32"
    int8_step: float | None = None
    rescore: int | None = None

    def __post_init__(self):
        _check_precision(self.precision)
        if self.dimensions is not None:
            _check_dimensions(self.dimensions)
        if self.int8_step is not None:
            if self.precision != "int8":
                raise ValueError(f"int8_step applies to int8, not {self.precision}")
            step = self.int8_step
            if isinstance(step, bool) or not isinstance(step, (int, float)):
                raise ValueError(f"int8_step must be a number, got {step!r}")
            if not (math.isfinite(step) and step > 0):
                raise ValueError(f"int8_step must be positive and finite, got {step}")
            object.__setattr__(self, "int8_step", float(step))
        if self.rescore is not None:
            if self.precision != "binary":
                raise ValueError(f"rescore applies to binary, not {self.precision}")
            if isinstance(self.rescore, bool) or not isinstance(self.rescore, int):
                raise ValueError(f"rescore must be an integer, got {self.rescore!r}")
            if self.rescore < 1:
                raise ValueError(f"rescore must be at least 1, got {self.rescore}")

    @property
    def name(self) -> str:
        """A label for tables: `256d-int8`, `full-float32`, `64d-binary-rescore40`."""
        size = "full" if self.dimensions is None else f"{self.dimensions}d"
        rescore = f"-rescore{self.rescore}" if self.rescore else ""
        return f"{size}-{self.precision}{rescore}"

    def bytes_per_vector(self, full_dimensions: int) -> int:
        """Bytes per stored vector for a model `full_dimensions` wide."""
        return bytes_per_vector(self.dimensions or full_dimensions, self.precision)

    def calibrate(self, vectors: np.ndarray) -> VectorFormat:
        """int8: a copy whose step maps the largest |coordinate| of the truncated `vectors`
        to 127 (one step for the whole collection); other precisions: unchanged."""
        if self.precision != "int8":
            return self
        kept = truncate(vectors, self.dimensions)
        if kept.size == 0:
            raise ValueError("cannot calibrate int8 on no vectors")
        largest = float(np.abs(kept).max())
        return dataclasses.replace(self, int8_step=(largest or 1.0) / _INT8_MAX)

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """`[n, d]` float -> the stored form of `truncate(vectors, dimensions)`: float32
        `[n, D]`, int8 codes `[n, D]` or packed sign bits uint8 `[n, ceil(D / 8)]`."""
        kept = truncate(vectors, self.dimensions)
        if self.precision == "float32":
            return kept
        if self.precision == "int8":
            if self.int8_step is None:
                raise ValueError("int8 needs a step: call calibrate first (or store)")
            codes = np.round(kept.astype(np.float64) / self.int8_step)
            return np.clip(codes, -_INT8_MAX, _INT8_MAX).astype(np.int8)
        return np.packbits(kept > 0, axis=1)

    def store(self, vectors: np.ndarray) -> tuple[VectorFormat, np.ndarray]:
        """`(format, stored)`: int8 calibrated on `vectors` when it has no step yet, then
        `encode(vectors)`; the call for a collection of documents."""
        fmt = self.calibrate(vectors) if self.int8_step is None else self
        return fmt, fmt.encode(vectors)

    def scores(self, queries: np.ndarray, stored: np.ndarray) -> np.ndarray:
        """Float queries `[m, d]` against `stored` vectors of this format -> float32 `[m, n]`
        scores, higher is better, as the module docstring defines them.

        With `rescore=K`, the best `min(K, n)` by Hamming (ties: lower index) score
        `<q, sign(x)> / sqrt(D) + D + 2`, above every other vector's `D - 2 Hamming` (at
        most D): the candidates by their rescored value, then the rest by Hamming.
        """
        kept = truncate(queries, self.dimensions)
        size = kept.shape[1]
        stored = self._check_stored(stored, size)
        if self.precision == "float32":
            return (kept.astype(np.float64) @ stored.T.astype(np.float64)).astype(np.float32)
        if self.precision == "int8":
            if self.int8_step is None:
                raise ValueError("int8 needs a step: call calibrate first (or store)")
            codes = self.encode(queries).astype(np.int64)
            dots = codes @ stored.T.astype(np.int64)
            return (dots * self.int8_step**2).astype(np.float32)
        signs = np.unpackbits(stored, axis=1, count=size).astype(np.float64) * 2 - 1
        query_signs = np.where(kept > 0, 1.0, -1.0)
        scores = query_signs @ signs.T  # = D - 2 Hamming, exactly (integers)
        if self.rescore:
            k = min(self.rescore, len(stored))
            # A stable sort of -score keeps equal scores in stored order.
            best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            rescored = (kept.astype(np.float64) @ signs.T) / math.sqrt(size) + size + 2
            rows = np.arange(len(kept))[:, None]
            scores[rows, best] = rescored[rows, best]
        return scores.astype(np.float32)

    def _check_stored(self, stored: np.ndarray, size: int) -> np.ndarray:
        stored = _matrix(stored, "stored vectors")
        dtype, width = {
            "float32": (np.float32, size),
            "int8": (np.int8, size),
            "binary": (np.uint8, -(-size // 8)),
        }[self.precision]
        if stored.dtype != dtype or stored.shape[1] != width:
            raise ValueError(
                f"{self.name} vectors of {size} dimensions are stored as {np.dtype(dtype)} "
                f"[n, {width}]; got {stored.dtype} {list(stored.shape)}"
            )
        return stored

    def to_json(self) -> dict:
        """The four fields, for the file stored beside the vectors."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> VectorFormat:
        """The format of `to_json`; an unknown key or a wrong value is a ValueError."""
        if not isinstance(data, dict):
            raise ValueError(f"a vector format is a JSON object, got {type(data).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(f"unknown vector format fields {unknown}; expected {sorted(fields)}")
        return cls(**data)


def _check_precision(precision) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def _check_dimensions(dimensions) -> None:
    if isinstance(dimensions, bool) or not isinstance(dimensions, (int, np.integer)):
        raise ValueError(f"dimensions must be an integer, got {dimensions!r}")
    if dimensions < 1:
        raise ValueError(f"dimensions must be at least 1, got {dimensions}")


def _matrix(array, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2-D [n, d] array, got shape {list(array.shape)}")
    return array
