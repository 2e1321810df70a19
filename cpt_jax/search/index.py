"""`CodeIndex`: the functions of a source tree, embedded as documents, searched in plain English.

Example:
  index, report = CodeIndex.build("runs/quickstart", "path/to/project")
  index.save("runs/project_index")
  for hit in CodeIndex.open("runs/project_index").search("parse a date string", top_k=5):
      print(f"{hit.path}:{hit.line}  {hit.name}  {hit.score:.3f}")

The index is one file, `INDEX_DIR/index.npz`: the embeddings `[n, d]` float32 (or, with a
`vector_format`, shorter, int8 or packed-bit vectors: `cpt_jax.quantization`) and a JSON
record of the model, the vector format, the source directory, every file seen (its sha256,
and its functions or why it was skipped) and every function (path, line, name, language,
text). It is replaced atomically, so an interrupted index run leaves the previous index whole.

Building over a previous index (`previous=`) embeds only files whose content changed; files
that are gone are dropped. New vectors take the previous index's format (its int8 step
too); asking for another format embeds everything again. The model is loaded only when
something needs embedding.

Ranking (`RANKINGS`): `dense` (cosine similarity), `bm25` (lexical, code-aware tokens),
`score_fusion` (z-scored cosine + `weight` x z-scored BM25 over the whole index) and `rrf`
(reciprocal rank fusion); see `cpt_jax.evaluation.fusion`. The default is the hybrid that
measured best on the `pypi_code` validation split (docs/experiments.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from cpt_jax import checkpoints, files, pretrained
from cpt_jax.embed import Embedder
from cpt_jax.evaluation import bm25, fusion
from cpt_jax.quantization import VectorFormat
from data_pipelines import source_functions

INDEX_FILE = "index.npz"
FORMAT_VERSION = 2  # 2 added `vector_format`; version 1 files (float32) are read too
RANKINGS = ("dense", "bm25", "score_fusion", "rrf")
DEFAULT_RANKING = "score_fusion"
DEFAULT_WEIGHT = 0.15
DEFAULT_RRF_K = 60.0
# Files larger than this are generated or data, not code to search (counted as too_large).
MAX_FILE_BYTES = 2 * 2**20
# Directories never entered besides hidden ones (.git, .venv) and virtual environments.
SKIPPED_DIRS = {"__pycache__", "node_modules", "site-packages"}
SNIPPET_LINES = 3
_ENCODE_CHUNK = 256  # texts per progress-bar update


@dataclasses.dataclass(frozen=True)
class Function:
    """One indexed function; `path` is relative to the source directory, `/`-separated."""

    path: str
    line: int
    end_line: int
    name: str
    language: str
    text: str


@dataclasses.dataclass(frozen=True)
class Hit:
    """A search result: the function and its score under the ranking used."""

    path: str
    line: int
    end_line: int
    name: str
    language: str
    score: float
    snippet: str

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class BuildReport:
    """What a build did. `files`: source files seen (skipped ones included); `changed_files`:
    new or changed since the previous index, read again; `unchanged_files`: reused;
    `removed_files`: in the previous index, gone now; `skipped`: files by reason."""

    files: int
    changed_files: int
    unchanged_files: int
    removed_files: int
    functions: int
    embedded_functions: int
    skipped: dict[str, int]

    def summary(self) -> str:
        skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
        return (
            f"{self.functions} functions in {self.files} files ({self.changed_files} new or "
            f"changed: {self.embedded_functions} functions embedded; {self.unchanged_files} "
            f"unchanged; {self.removed_files} removed); skipped files: {skipped or 'none'}"
        )


# -- the model ----------------------------------------------------------------------------
def model_record(checkpoint: str) -> dict:
    """What identifies the embeddings a model makes: a model directory (absolute path,
    latest step, model.json's sha256) or a pretrained name (`pretrained.PRETRAINED`)."""
    if checkpoint in pretrained.PRETRAINED:
        return {"pretrained": checkpoint}
    path = os.path.abspath(checkpoint)
    checkpoints.read_model_metadata(path)  # a clear error for a directory that is not a model
    return {
        "checkpoint": path,
        "step": checkpoints.latest_saved_step(path),
        "model_json_sha256": files.sha256_of(os.path.join(path, checkpoints.MODEL_METADATA_FILE)),
    }


def load_embedder(record: dict) -> Embedder:
    """The embedder of a `model_record`, at the recorded step."""
    if "pretrained" in record:
        return pretrained.embedder(pretrained.load(record["pretrained"]))
    path = record["checkpoint"]
    sha = files.sha256_of(os.path.join(path, checkpoints.MODEL_METADATA_FILE))
    if sha != record["model_json_sha256"]:
        raise ValueError(
            f"{path}: model.json changed since the index was built; re-index with this model"
        )
    step_dir = os.path.join(path, checkpoints.CHECKPOINT_SUBDIR, str(record["step"]))
    if not os.path.isdir(step_dir):
        raise ValueError(
            f"{path}: the index was built with step {record['step']}, which is no longer "
            "saved there; re-index with the model's latest step"
        )
    return Embedder.from_checkpoint(path, step=record["step"])


# -- the source tree ----------------------------------------------------------------------
def source_files(source_dir: str) -> list[str]:
    """The `/`-separated relative paths of the source files below `source_dir` (languages
    of `source_functions.language_of`), sorted; hidden directories, `SKIPPED_DIRS` and
    virtual environments (a `pyvenv.cfg` inside) are not entered, links not followed."""
    if not os.path.isdir(source_dir):
        raise NotADirectoryError(f"{source_dir}: not a directory")
    found = []
    for directory, subdirs, names in os.walk(source_dir):
        subdirs[:] = sorted(
            d
            for d in subdirs
            if not d.startswith(".")
            and d not in SKIPPED_DIRS
            and not os.path.islink(os.path.join(directory, d))
            and not os.path.exists(os.path.join(directory, d, "pyvenv.cfg"))
        )
        for name in names:
            full = os.path.join(directory, name)
            if source_functions.language_of(name) and not os.path.islink(full):
                found.append(os.path.relpath(full, source_dir).replace(os.sep, "/"))
    return sorted(found)


def _read_file(path: str) -> tuple[bytes, str, str | None]:
    """`(contents, sha256, skip reason)`; the reason is `unreadable` or `too_large`."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError:
        return b"", "", "unreadable"
    sha = hashlib.sha256(data).hexdigest()
    return data, sha, "too_large" if len(data) > MAX_FILE_BYTES else None


# -- the index ----------------------------------------------------------------------------
class CodeIndex:
    """The functions of a source tree and their embeddings; searchable (see module doc)."""

    def __init__(
        self,
        *,
        source_dir: str,
        model: dict,
        functions: Sequence[Function],
        embeddings: np.ndarray,
        file_records: dict[str, dict],
        embedder: Embedder | None = None,
        vector_format: VectorFormat | None = None,
    ):
        self.vector_format = vector_format or VectorFormat()
        if self.vector_format.precision == "float32":
            embeddings = np.asarray(embeddings, np.float32)
        if embeddings.ndim != 2 or len(embeddings) != len(functions):
            raise ValueError(f"{len(functions)} functions but embeddings of {embeddings.shape}")
        self.source_dir = source_dir
        self.model = model
        self.functions = list(functions)
        self.embeddings = embeddings
        self.file_records = file_records
        self._embedder = embedder
        self._bm25 = None

    # -- building -------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        checkpoint: str,
        source_dir: str,
        *,
        previous: CodeIndex | None = None,
        embedder: Embedder | None = None,
        progress: Callable[[Iterable, int], Iterable] | None = None,
        vector_format: VectorFormat | None = None,
    ) -> tuple[CodeIndex, BuildReport]:
        """Indexes every function below `source_dir` with the model `checkpoint` (a model
        directory or a pretrained name).

        `previous`: an index of the same model and source directory whose unchanged files
        are reused, not embedded again (ignored when either differs, or when
        `vector_format` asks for another size, precision or rescoring). `embedder`: the
        model, already loaded (else loaded when something needs embedding). `progress`:
        wraps the embedding loop, `progress(chunks, total_functions)` (e.g. tqdm).
        `vector_format`: how the vectors are stored (default: the previous index's, else
        full float32); int8 is calibrated on the first build's vectors.
        """
        source_dir = os.path.abspath(source_dir)
        model = model_record(checkpoint)
        if previous is not None and (previous.model, previous.source_dir) != (model, source_dir):
            previous = None
        if previous is not None and vector_format is not None:
            kept = dataclasses.replace(previous.vector_format, int8_step=None)
            if dataclasses.replace(vector_format, int8_step=None) != kept:
                previous = None  # stored vectors cannot be re-quantised: embed all again
        if previous is not None:
            vector_format = previous.vector_format
        vector_format = vector_format or VectorFormat()
        old_files = previous.file_records if previous is not None else {}
        old_rows = previous._rows_by_path() if previous is not None else {}
        records: dict[str, dict] = {}
        kept_rows: list[int] = []
        new_functions: list[Function] = []
        for relative in source_files(source_dir):
            data, sha, reason = _read_file(os.path.join(source_dir, relative))
            if relative in old_files and old_files[relative]["sha256"] == sha:
                records[relative] = old_files[relative]
                kept_rows += old_rows.get(relative, [])
                continue
            if reason is None:
                try:
                    found = source_functions.functions_in_file(data, relative)
                except source_functions.UnreadableSource as e:
                    reason = e.reason
                else:
                    new_functions += [
                        Function(relative, f.line, f.end_line, f.name, f.language, f.text)
                        for f in found
                    ]
            records[relative] = {"sha256": sha, **({"skipped": reason} if reason else {})}

        parts = [previous.embeddings[kept_rows]] if kept_rows else []
        if new_functions:
            embedder = embedder or load_embedder(model)
            new = _embed_documents(embedder, [f.text for f in new_functions], progress)
            vector_format, stored = vector_format.store(new)
            parts.append(stored)
        embeddings = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
        functions = [previous.functions[row] for row in kept_rows] + new_functions
        order = sorted(range(len(functions)), key=lambda i: _sort_key(functions[i]))
        index = cls(
            source_dir=source_dir,
            model=model,
            functions=[functions[i] for i in order],
            embeddings=embeddings[order],
            file_records=records,
            embedder=embedder,
            vector_format=vector_format,
        )
        changed = [path for path in records if records[path] is not old_files.get(path)]
        report = BuildReport(
            files=len(records),
            changed_files=len(changed),
            unchanged_files=len(records) - len(changed),
            removed_files=sum(1 for path in old_files if path not in records),
            functions=len(functions),
            embedded_functions=len(new_functions),
            skipped=dict(Counter(r["skipped"] for r in records.values() if "skipped" in r)),
        )
        return index, report

    def _rows_by_path(self) -> dict[str, list[int]]:
        rows: dict[str, list[int]] = {}
        for row, f in enumerate(self.functions):
            rows.setdefault(f.path, []).append(row)
        return rows

    # -- storage --------------------------------------------------------------------------
    def save(self, index_dir: str) -> str:
        """Writes `index_dir/index.npz` atomically (the previous file stays whole until the
        new one is complete); returns its path."""
        os.makedirs(index_dir, exist_ok=True)
        record = {
            "format_version": FORMAT_VERSION,
            "source_dir": self.source_dir,
            "model": self.model,
            "vector_format": self.vector_format.to_json(),
            "files": self.file_records,
            "functions": [dataclasses.asdict(f) for f in self.functions],
        }
        buffer = io.BytesIO()
        np.savez(
            buffer,
            embeddings=self.embeddings,
            record=np.frombuffer(json.dumps(record).encode("utf-8"), np.uint8),
        )
        path = os.path.join(index_dir, INDEX_FILE)
        files.write_bytes_atomic(path, buffer.getvalue())
        return path

    @classmethod
    def open(cls, index_dir: str, *, embedder: Embedder | None = None) -> CodeIndex:
        """Reads an index written by `save`; errors name the file and what is wrong."""
        path = os.path.join(index_dir, INDEX_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{index_dir}: no code index ({INDEX_FILE} is missing)")
        try:
            with np.load(path, allow_pickle=False) as stored:
                embeddings = stored["embeddings"]
                record = json.loads(stored["record"].tobytes().decode("utf-8"))
            functions = [Function(**f) for f in record["functions"]]
            if record["format_version"] not in (1, FORMAT_VERSION):
                raise ValueError(
                    f"format version {record['format_version']} is not {FORMAT_VERSION}"
                )
            vector_format = VectorFormat.from_json(record.get("vector_format", {}))
            return cls(
                source_dir=record["source_dir"],
                model=record["model"],
                functions=functions,
                embeddings=embeddings,
                file_records=record["files"],
                embedder=embedder,
                vector_format=vector_format,
            )
        except (KeyError, TypeError, ValueError, OSError) as e:
            raise ValueError(f"{path}: not a readable code index ({type(e).__name__}: {e})") from e

    # -- searching ------------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = load_embedder(self.model)
        return self._embedder

    def scores(
        self,
        queries: Sequence[str],
        ranking: str = DEFAULT_RANKING,
        *,
        weight: float = DEFAULT_WEIGHT,
        rrf_k: float = DEFAULT_RRF_K,
    ) -> np.ndarray:
        """`[len(queries), len(functions)]` float64 scores of every function (higher is
        better) under `ranking`; dense scores as the index's vector format scores them."""
        if ranking not in RANKINGS:
            raise ValueError(f"ranking must be one of {RANKINGS}, got {ranking!r}")
        if self.vector_format.rescore and ranking not in ("dense", "bm25"):
            raise ValueError(
                f"the index stores {self.vector_format.name} vectors: rescored binary scores "
                f"rank but do not fuse; use ranking 'dense' or 'bm25', not {ranking!r}"
            )
        queries = list(queries)
        dense = lexical = None
        if ranking != "bm25":
            q = self.embedder.encode(queries, kind="query")
            if self.vector_format == VectorFormat():
                dense = q.astype(np.float64) @ self.embeddings.T.astype(np.float64)
            elif self.functions:
                dense = self.vector_format.scores(q, self.embeddings).astype(np.float64)
            else:
                dense = np.zeros((len(queries), 0))
        if ranking != "dense":
            lexical = (
                np.stack([self._bm25_scores(q) for q in queries])
                if queries
                else np.zeros((0, len(self.functions)))
            )
        if ranking == "dense":
            return dense
        if ranking == "bm25":
            return lexical
        if ranking == "score_fusion":
            return fusion.score_fusion(dense, lexical, weight)
        return fusion.reciprocal_rank_fusion([dense, lexical], rrf_k)

    def search(self, query: str, top_k: int = 10, **ranking) -> list[Hit]:
        """The `top_k` best functions for one query (see `search_many`)."""
        return self.search_many([query], top_k, **ranking)[0]

    def search_many(
        self, queries: Sequence[str], top_k: int = 10, ranking: str = DEFAULT_RANKING, **options
    ) -> list[list[Hit]]:
        """The `top_k` best functions of each query, best first (ties by path and line).

        `ranking` is one of `RANKINGS`; `weight` (score fusion) and `rrf_k` (rrf) set the
        hybrids. The model is loaded once, on the first query that needs it.
        """
        if isinstance(queries, str):
            raise TypeError("search_many() takes a sequence of queries, not a single string")
        if top_k < 1:
            raise ValueError(f"top_k must be positive, got {top_k}")
        if not self.functions:
            return [[] for _ in queries]
        scores = self.scores(queries, ranking, **options)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
        return [
            [self._hit(j, float(row_scores[j])) for j in row]
            for row, row_scores in zip(order, scores)
        ]

    def _bm25_scores(self, query: str) -> np.ndarray:
        if self._bm25 is None:
            self._bm25 = bm25.build_bm25_index([bm25.code_tokenize(f.text) for f in self.functions])
        return bm25.bm25_scores(self._bm25, bm25.code_tokenize(query)).astype(np.float64)

    def _hit(self, row: int, score: float) -> Hit:
        f = self.functions[row]
        return Hit(f.path, f.line, f.end_line, f.name, f.language, score, snippet(f))


def snippet(function: Function, lines: int = SNIPPET_LINES) -> str:
    """The first `lines` non-blank lines of a function's text (its signature and the start
    of its documentation, typically)."""
    shown = [line.rstrip() for line in function.text.splitlines() if line.strip()]
    return "\n".join(shown[:lines])


def _sort_key(function: Function) -> tuple:
    return function.path, function.line, function.name


def _embed_documents(
    embedder: Embedder,
    texts: Sequence[str],
    progress: Callable[[Iterable, int], Iterable] | None,
) -> np.ndarray:
    """Document embeddings of `texts`, encoded shortest first (the embedder trims each batch
    to its longest row, so batches of similar lengths waste least) and returned in order."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), embedder.dim), np.float32)
    chunks = [order[i : i + _ENCODE_CHUNK] for i in range(0, len(order), _ENCODE_CHUNK)]
    for chunk in progress(chunks, len(texts)) if progress else chunks:
        out[chunk] = embedder.encode([texts[i] for i in chunk], kind="document")
    return out
