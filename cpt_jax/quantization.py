"""Shorter and quantised embeddings: how a vector is stored, and how stored vectors are scored.

A `VectorFormat` is a prefix size `D`, a precision and (binary only) a rescoring depth `K`.
Every format first truncates: a float embedding `x [d]` becomes `t = x[:D] / |x[:D]|`
(`truncate`; a Matryoshka-trained prefix is an embedding itself). A float query `q`,
truncated the same way, then scores a stored vector as follows:

    float32  4 D bytes: t itself. Score <q, t>, computed in float64 and rounded to float32
             (so it never depends on the summation order).
    int8     D bytes: codes c(t) = clip(round(t / s), -127, 127) with ONE step `s` for a
             whole collection (`calibrate`: s = max|t| / 127 over it; zero is code 0), so
             code dot products stay proportional to float ones. Score s^2 <c(q), c(t)>,
             the query coded with the collection's step; the integer dot product is exact.
    binary   ceil(D / 8) bytes: the bits [t > 0], packed (numpy's big bit order). Score
             D - 2 Hamming(bits(q), bits(t)) = <sign(q), sign(t)>, the dot product of the
             ±1 vectors (sign(0) = -1); the last byte's padding bits never count.
    binary, rescore=K (sentence-transformers' rescoring)
             the best min(K, n) by that score are re-scored with the float query,
             r = <q, sign(t)> / sqrt(D), in [-1, 1]; every other vector gets its binary
             score - (D + 2), at most -2. Ranking by the scores is thus: the candidates
             by r, then the rest by Hamming distance.

Ties go to the lower stored index wherever a ranking is made here (the K candidates), so
which vectors are rescored never depends on where a relevant one sits among its equals.

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
_BLOCK = 1 << 22  # elements of a temporary block: stored rows are scored this many at a time


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
        dimensions = _dimensions(dimensions)
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
    dimensions = _dimensions(dimensions)
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
            object.__setattr__(self, "dimensions", _dimensions(self.dimensions))
        if self.int8_step is not None:
            if self.precision != "int8":
                raise ValueError(f"int8_step applies to int8, not {self.precision}")
            step = self.int8_step
            if isinstance(step, bool) or not isinstance(
                step, (int, float, np.integer, np.floating)
            ):
                raise ValueError(f"int8_step must be a number, got {step!r}")
            if not (math.isfinite(step) and step > 0):
                raise ValueError(f"int8_step must be positive and finite, got {step}")
            object.__setattr__(self, "int8_step", float(step))
        if self.rescore is not None:
            if self.precision != "binary":
                raise ValueError(f"rescore applies to binary, not {self.precision}")
            rescore = _integer(self.rescore, "rescore")
            if rescore < 1:
                raise ValueError(f"rescore must be at least 1, got {rescore}")
            object.__setattr__(self, "rescore", rescore)

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
        `[n, d]` to 127 (one step for the whole collection; all-zero vectors: 1 / 127);
        other precisions: unchanged.

        Example:
          >>> round(VectorFormat(precision="int8").calibrate([[0.6, -0.8]]).int8_step * 127, 6)
          0.8
        """
        if self.precision != "int8":
            return self
        kept = truncate(vectors, self.dimensions)
        if kept.size == 0:
            raise ValueError("cannot calibrate int8 on no vectors")
        largest = float(np.abs(kept).max())
        return dataclasses.replace(self, int8_step=(largest or 1.0) / _INT8_MAX)

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """`[n, d]` float -> the stored form of `truncate(vectors, dimensions)`: float32
        `[n, D]`, int8 codes `[n, D]` or packed sign bits uint8 `[n, ceil(D / 8)]`.

        Example:
          >>> VectorFormat(12, "binary").encode(np.ones((1, 16))).tolist()
          [[255, 240]]
          >>> VectorFormat(2, "int8", int8_step=0.01).encode([[0.6, 0.8, 5.0]]).tolist()
          [[60, 80]]
        """
        kept = truncate(vectors, self.dimensions)
        if self.precision == "float32":
            return kept
        if self.precision == "int8":
            return self._codes(kept)
        return np.packbits(kept > 0, axis=1)

    def store(self, vectors: np.ndarray) -> tuple[VectorFormat, np.ndarray]:
        """`(format, stored)`: int8 calibrated on `vectors` when it has no step yet, then
        `encode(vectors)`; the call for a collection of documents.

        Example:
          >>> fmt, stored = VectorFormat(precision="int8").store([[0.6, 0.8]])
          >>> stored.tolist(), fmt.name
          ([[95, 127]], 'full-int8')
        """
        fmt = self.calibrate(vectors) if self.int8_step is None else self
        return fmt, fmt.encode(vectors)

    def scores(self, queries: np.ndarray, stored: np.ndarray) -> np.ndarray:
        """Float queries `[m, d]` (full width) against `stored` vectors `[n, ...]` of this
        format -> float32 `[m, n]` scores, higher is better, as the module docstring defines
        them: with `rescore`, the candidates score `r` in [-1, 1], the others their binary
        score - (D + 2) (integers, exact in float32 whatever D).

        Example:
          >>> fmt = VectorFormat(precision="binary")
          >>> stored = fmt.encode([[1.0, 1.0, 1.0], [1.0, -1.0, -1.0]])
          >>> fmt.scores([[1.0, 2.0, 3.0]], stored).tolist()
          [[3.0, -1.0]]
          >>> rescored = VectorFormat(precision="binary", rescore=1).scores([[1, 2, 3]], stored)
          >>> [round(float(s), 4) for s in rescored[0]]  # 6 / sqrt(14 * 3), then -1 - 5
          [0.9258, -6.0]
        """
        kept = truncate(queries, self.dimensions)
        size = kept.shape[1]
        stored = self._check_stored(stored, size)
        if self.precision == "float32":
            return _dots(kept, stored, np.float64).astype(np.float32)
        if self.precision == "int8":
            # Integer codes: float64 products and sums are exact (|sum| < 2^53).
            dots = _dots(self._codes(kept), stored, np.float64)
            return (dots * self.int8_step**2).astype(np.float32)
        signs = lambda bits: np.unpackbits(bits, axis=-1, count=size).astype(np.int8) * 2 - 1
        # Sums of ±1 are integers of at most D: exact in float32 up to 2^24 dimensions.
        exact = np.float32 if size <= 1 << 24 else np.float64
        binary = _dots(np.where(kept > 0, 1, -1), stored, exact, signs)
        if not self.rescore:
            return binary.astype(np.float32)
        out = binary.astype(np.float64) - (size + 2)
        n, k = len(stored), min(self.rescore, len(stored))
        if k == n:
            best = np.broadcast_to(np.arange(n), out.shape)
        else:  # The k smallest unique keys: the best by binary score, then the lowest index.
            key = (size - binary).astype(np.int64) * n + np.arange(n)
            best = np.argpartition(key, k - 1, axis=1)[:, :k]
        rows = max(1, _BLOCK // max(1, k * size))
        for start in range(0, len(kept), rows):
            query = kept[start : start + rows].astype(np.float64)
            candidates = signs(stored[best[start : start + rows]]).astype(np.float64)
            rescored = np.einsum("qd,qkd->qk", query, candidates) / math.sqrt(size)
            np.put_along_axis(out[start : start + rows], best[start : start + rows], rescored, 1)
        return out.astype(np.float32)

    def _codes(self, kept: np.ndarray) -> np.ndarray:
        if self.int8_step is None:
            raise ValueError("int8 needs a step: call calibrate first (or store)")
        codes = np.round(kept.astype(np.float64) / self.int8_step)
        return np.clip(codes, -_INT8_MAX, _INT8_MAX).astype(np.int8)

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
        """The four fields, for the file stored beside the vectors.

        Example:
          >>> VectorFormat(64, "binary", rescore=10).to_json()
          {'dimensions': 64, 'precision': 'binary', 'int8_step': None, 'rescore': 10}
        """
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> VectorFormat:
        """The format of `to_json`; an unknown key or a wrong value is a ValueError.

        Example:
          >>> VectorFormat.from_json({"precision": "int8", "int8_step": 0.01}).name
          'full-int8'
        """
        if not isinstance(data, dict):
            raise ValueError(f"a vector format is a JSON object, got {type(data).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(f"unknown vector format fields {unknown}; expected {sorted(fields)}")
        return cls(**data)


def _dots(left: np.ndarray, stored: np.ndarray, dtype, expand=None) -> np.ndarray:
    """`left [m, D] @ expand(stored).T` in `dtype`, a block of stored rows at a time."""
    left = left.astype(dtype)
    out = np.empty((len(left), len(stored)), dtype)
    rows = max(1, _BLOCK // max(1, left.shape[1]))
    for start in range(0, len(stored), rows):
        block = stored[start : start + rows]
        block = expand(block) if expand is not None else block
        out[:, start : start + rows] = left @ block.astype(dtype).T
    return out


def _check_precision(precision) -> None:
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def _integer(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return int(value)


def _dimensions(dimensions) -> int:
    dimensions = _integer(dimensions, "dimensions")
    if dimensions < 1:
        raise ValueError(f"dimensions must be at least 1, got {dimensions}")
    return dimensions


def _matrix(array, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2-D [n, d] array, got shape {list(array.shape)}")
    return array
