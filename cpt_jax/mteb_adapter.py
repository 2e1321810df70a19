"""Run MTEB (https://github.com/embeddings-benchmark/mteb) on a cpt-jax model.

Two lines, given `pip install cpt-jax[mteb]` and internet access for MTEB's data sets:
  model = MTEBEncoder.from_checkpoint("runs/cpt_code")
  results = mteb.evaluate(model, mteb.get_tasks(tasks=["SciFact"]))

`MTEBEncoder` satisfies `mteb.models.EncoderProtocol` of mteb 2.x (`encode` of a DataLoader of
text batches with a `prompt_type`, `similarity`, `similarity_pairwise`, `mteb_model_meta`), and
also takes a plain list of strings (mteb 1.x's `encode(sentences, prompt_type=...)`).

Queries and documents get different delimiters in cpt-jax, so MTEB's prompt type picks the
`kind`: `PromptType.query` -> "query", `PromptType.document` (1.x: "passage") -> "document".
Symmetric tasks (classification, clustering, STS, pair classification, bitext mining) pass no
prompt type; both sides are then encoded as "query", the same for every text, so their
embeddings are comparable. MTEB's task instructions are not used (cpt-jax models have none).

MTEB caches results by model name and revision (in ~/.cache/mteb; `cache=None` turns that off)
and skips what it has cached: the revision of `from_checkpoint` is the step and a hash of the
weights, so a retrained model is never mistaken for an earlier one with the same name.

mteb is imported only when MTEB needs it (`mteb_model_meta`, `similarity`), so this module
imports without it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cpt_jax import checkpoints, pretrained
from cpt_jax.embed import Embedder

INSTALL_HINT = "pip install 'cpt-jax[mteb]' (or: pip install mteb)"
# MTEB prompt type (2.x `PromptType` values, and 1.x's "passage") -> `Embedder.encode` kind.
PROMPT_KINDS = {None: "query", "query": "query", "document": "document", "passage": "document"}


def _require_mteb():
    try:
        import mteb
        import mteb.models
        import mteb.similarity_functions
    except ImportError as e:
        raise ImportError(f"cpt_jax.mteb_adapter needs the mteb package: {INSTALL_HINT}") from e
    return mteb


def prompt_kind(prompt_type: Any) -> str:
    """The `Embedder.encode` kind of an MTEB prompt type (enum, string or None)."""
    value = getattr(prompt_type, "value", prompt_type)
    if value not in PROMPT_KINDS:
        raise ValueError(f"unknown MTEB prompt type {prompt_type!r} (known: query, document)")
    return PROMPT_KINDS[value]


def batch_texts(inputs: Any) -> list[str]:
    """The texts of MTEB's encoder input: a DataLoader (any iterable) of batches with a "text"
    list (mteb 2.x; documents arrive as "title text", queries with any instruction appended),
    or a plain sequence of strings (mteb 1.x)."""
    if isinstance(inputs, str):
        raise TypeError("encode() takes a sequence of strings or text batches, not a string")
    if isinstance(inputs, Sequence) and all(isinstance(t, str) for t in inputs):
        return list(inputs)
    texts = []
    for batch in inputs:
        if not (isinstance(batch, Mapping) and "text" in batch):
            keys = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise TypeError(f"expected batches with a 'text' field (text tasks), got {keys}")
        texts.extend(batch["text"])
    return texts


def params_fingerprint(params: Any) -> str:
    """A short sha256 of a parameter pytree's shapes, dtypes and values."""
    import jax

    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(params):
        array = np.asarray(leaf)
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:12]


class MTEBEncoder:
    """An MTEB encoder around anything with `encode(texts, kind=, batch_size=)` -> unit-norm
    float32 `[n, d]` (`cpt_jax.embed.Embedder`).

    Args:
      embedder: the model; its `dim`, `max_lengths` and `params`, where present, fill in the
        model metadata.
      name: MTEB's model name ("organization/model"; "cpt-jax/" is put in front of a bare name).
      revision: MTEB's model revision (results are cached under name and revision).
      batch_size: texts per forward pass; None follows MTEB's `encode_kwargs["batch_size"]`.
    """

    def __init__(
        self,
        embedder: Any,
        name: str = "cpt-jax/model",
        revision: str | None = None,
        *,
        batch_size: int | None = None,
    ):
        self.embedder = embedder
        self.name = name if "/" in name else f"cpt-jax/{name}"
        self.revision = revision
        self.batch_size = batch_size
        self._meta = None

    @classmethod
    def from_checkpoint(
        cls,
        model_dir: str,
        step: int | None = None,
        *,
        name: str | None = None,
        revision: str | None = None,
        batch_size: int | None = None,
    ) -> MTEBEncoder:
        """The latest (or given) checkpoint of a training run's model directory, by default
        named "cpt-jax/<directory name>", revision "step-<step>-<weights hash>"."""
        if step is None:  # read first: the revision names the weights loaded, mid-training too
            step = checkpoints.latest_saved_step(model_dir)
        embedder = Embedder.from_checkpoint(model_dir, step)
        name = name or os.path.basename(os.path.normpath(os.path.abspath(model_dir)))
        revision = revision or f"step-{step}-{params_fingerprint(embedder.params)}"
        return cls(embedder, name, revision, batch_size=batch_size)

    @classmethod
    def from_pretrained(
        cls,
        source: str = "minilm",
        *,
        name: str | None = None,
        revision: str | None = None,
        batch_size: int | None = None,
    ) -> MTEBEncoder:
        """A pretrained model, zero-shot, as `cpt_jax.pretrained.load` names it ("minilm"),
        by default named "cpt-jax/<source>", revision "<weights hash>"."""
        embedder = pretrained.embedder(pretrained.load(source))
        name = name or os.path.basename(os.path.normpath(source))
        revision = revision or params_fingerprint(embedder.params)
        return cls(embedder, name, revision, batch_size=batch_size)

    def encode(
        self,
        inputs: Any,
        *,
        task_metadata: Any = None,
        hf_split: str | None = None,
        hf_subset: str | None = None,
        prompt_type: Any = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Embeds MTEB's inputs -> float32 `[n, d]`, unit-norm rows in input order.

        Args:
          inputs: a DataLoader of {"text": [...]} batches (mteb 2.x) or a list of strings.
          task_metadata, hf_split, hf_subset: unused (no task-specific prompts).
          prompt_type: `PromptType.query` / "query" -> kind "query"; `PromptType.document` /
            "document" / "passage" -> "document"; None (symmetric tasks) -> "query".
          **kwargs: MTEB's encode_kwargs; `batch_size` is used unless set on the encoder.
        """
        del task_metadata, hf_split, hf_subset
        kind = prompt_kind(prompt_type)
        texts = batch_texts(inputs)
        batch_size = self.batch_size or kwargs.get("batch_size") or 64
        # Similar lengths batched together: each batch is trimmed to its longest row.
        order = np.argsort([len(t) for t in texts], kind="stable")
        embeddings = self.embedder.encode(
            [texts[i] for i in order], kind=kind, batch_size=batch_size
        )
        out = np.empty_like(embeddings)
        out[order] = embeddings
        return out

    def similarity(self, embeddings1, embeddings2):
        """Cosine similarities `[n1, n2]` (a torch tensor, as mteb's own encoders return)."""
        return _require_mteb().similarity_functions.cos_sim(embeddings1, embeddings2)

    def similarity_pairwise(self, embeddings1, embeddings2):
        """Cosine similarities of row pairs `[n]` (a torch tensor)."""
        return _require_mteb().similarity_functions.pairwise_cos_sim(embeddings1, embeddings2)

    @property
    def mteb_model_meta(self):
        """`mteb.models.ModelMeta`: name, revision, dimension, parameters, JAX, cosine."""
        if self._meta is None:
            params = getattr(self.embedder, "params", None)
            max_lengths = getattr(self.embedder, "max_lengths", None)
            self._meta = _require_mteb().models.ModelMeta(
                loader=None,
                name=self.name,
                revision=self.revision,
                release_date=None,
                languages=None,
                n_parameters=None if params is None else _count(params),
                memory_usage_mb=None,
                max_tokens=max(max_lengths.values()) if max_lengths else None,
                embed_dim=getattr(self.embedder, "dim", None),
                license=None,
                open_weights=None,
                public_training_code=None,
                public_training_data=None,
                framework=["JAX"],
                similarity_fn_name="cosine",
                use_instructions=False,
                training_datasets=None,
                modalities=["text"],
            )
        return self._meta


def _count(params) -> int:
    import jax

    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(params)))
