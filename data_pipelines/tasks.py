"""SeqIO Tasks and Mixtures over pair corpora (`data_pipelines.corpus` directories).

A pairs task reads a corpus's TFRecord shards and produces the task features

    inputs            [None] int32  the query's tokens
    targets           [None] int32  the document's tokens
    query_id, document_id   int32   text hashes (false-negative masking)
    negative_targets  [N, None] int32, negative_ids [N] int32   only with `num_negatives=N`

all sides tokenised with one SentencePiece vocabulary (`data_pipelines.vocabulary`). A mixture
combines tasks (code, text, or both) at rates proportional to their training examples,
optionally tempered. `PairFeatureConverter` turns these features into model features.

Example:
  task = tasks.register_pairs_task("pairs_stdlib_code", "data/stdlib_code", "data/vocab/spm.model")
  mixture = tasks.register_pairs_mixture("code_text", ["data/stdlib_code", "data/debian_text"],
                                         "data/vocab/spm.model")
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

import numpy as np
import sentencepiece as spm
import seqio
import tensorflow as tf

from cpt_jax.tokenization import HuggingFaceTokenizer, PairTokenizer, load_tokenizer
from data_pipelines import corpus

TEXT_FIELDS = ("query", "document")
# The built-in corpora (`python -m data_pipelines.build <name>`) of the default mixtures.
CODE_CORPORA = ("pypi_code", "stdlib_code", "tree_sitter_code")
TEXT_CORPORA = ("debian_text", "python_docs", "wordnet")
DEFAULT_MIXTURES = {
    "cpt_code": CODE_CORPORA,
    "cpt_text": TEXT_CORPORA,
    "cpt_code_text": CODE_CORPORA + TEXT_CORPORA,
}
# task name -> (corpus directory, vocabulary path) of the pairs tasks registered here, so
# that readers can cache a task's tokenised split beside its corpus.
_REGISTERED: dict[str, tuple[str, str]] = {}


def corpus_of(task_name: str) -> tuple[str, str] | None:
    """`(data_dir, vocabulary_path)` of a pairs task registered by this module, else None."""
    return _REGISTERED.get(task_name)


class SentencePieceVocabulary(seqio.SentencePieceVocabulary):
    """seqio's SentencePiece vocabulary, encoding inside TF graphs with the `sentencepiece`
    library itself, the one `cpt_jax.tokenization.PairTokenizer` runs at inference.

    seqio's own in-graph encoder (tensorflow-text's bundled SentencePiece) can segment a
    text differently where two segmentations score alike: training and inference would
    then see different tokens for the same text.
    """

    @property
    def pair_tokenizer(self) -> PairTokenizer:
        """The inference tokenizer of this vocabulary (delimiters included)."""
        if getattr(self, "_pair_tokenizer", None) is None:
            self._pair_tokenizer = PairTokenizer.from_file(self.sentencepiece_model_file)
        return self._pair_tokenizer

    @property
    def _processor(self) -> spm.SentencePieceProcessor:
        if getattr(self, "_python_processor", None) is None:
            self._python_processor = spm.SentencePieceProcessor(
                model_file=self.sentencepiece_model_file
            )
        return self._python_processor

    def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
        """A scalar string -> `[n]` int32; a `[k]` string vector -> ragged `[k, None]`."""
        return _encode_in_graph(self._processor.encode, s)


def _encode_in_graph(pieces_fn, s: tf.Tensor) -> tf.Tensor:
    """Runs `pieces_fn(list of str) -> list of id lists` inside a TF graph: a scalar string
    -> `[n]` int32, a `[k]` string vector -> ragged `[k, None]`."""

    def encode(texts):
        # A scalar arrives as `bytes`, a vector as an object array of `bytes`.
        texts = [texts] if isinstance(texts, bytes) else list(np.asarray(texts).reshape(-1))
        ids = pieces_fn([t.decode("utf-8") for t in texts])
        lengths = np.array([len(row) for row in ids], np.int64)
        flat = np.array([i for row in ids for i in row], np.int32)
        return flat, lengths

    flat, lengths = tf.numpy_function(encode, [s], (tf.int32, tf.int64), stateful=False)
    flat.set_shape([None])
    if s.shape.rank == 0:
        return flat
    return tf.RaggedTensor.from_row_lengths(flat, tf.reshape(lengths, [-1]))


class HuggingFaceVocabulary(seqio.Vocabulary):
    """A pretrained checkpoint's `tokenizer.json` as a SeqIO vocabulary (encoding in graph
    with `tokenizers`, through `cpt_jax.tokenization.HuggingFaceTokenizer`, without the
    `[CLS]`/`[SEP]` delimiters, which the feature converter adds as for SentencePiece)."""

    def __init__(self, path: str):
        self.path = path
        self.pair_tokenizer = HuggingFaceTokenizer.from_file(path)
        super().__init__(extra_ids=0)

    @property
    def eos_id(self) -> int:
        return self.pair_tokenizer.delimiter_ids("document")[1]

    @property
    def unk_id(self) -> int | None:
        return self.pair_tokenizer.unk_id

    @property
    def _base_vocab_size(self) -> int:
        return self.pair_tokenizer.vocab_size

    def _encode(self, s: str) -> list[int]:
        return self.pair_tokenizer.pieces([s])[0]

    def _decode(self, ids) -> str:
        return self.pair_tokenizer.decode(ids)

    def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
        return _encode_in_graph(self.pair_tokenizer.pieces, s)

    def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError("decoding is not needed to train contrastive pairs")

    def __eq__(self, other) -> bool:
        return isinstance(other, HuggingFaceVocabulary) and (
            self.pair_tokenizer.serialized_model == other.pair_tokenizer.serialized_model
        )


def vocabulary_from_file(path: str) -> seqio.Vocabulary:
    """The SeqIO vocabulary of a SentencePiece `.model` or a Hugging Face `tokenizer.json`."""
    if isinstance(load_tokenizer(path), HuggingFaceTokenizer):
        return HuggingFaceVocabulary(path)
    return SentencePieceVocabulary(path)


def task_name_for(data_dir: str, num_negatives: int = 0) -> str:
    """The default task name of a corpus directory: `pairs_<dir name>[_neg<N>]`."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", os.path.basename(os.path.normpath(data_dir)))
    return f"pairs_{base}" + (f"_neg{num_negatives}" if num_negatives else "")


def pairs_source(data_dir: str, *, num_negatives: int = 0) -> seqio.TFExampleDataSource:
    """A SeqIO source over a corpus's shards, in corpus order (one file at a time)."""
    manifest = corpus.read_manifest(data_dir)
    schema = manifest["schema"]
    wanted = ["query", "document", "query_id", "document_id"]
    if num_negatives:
        if "negatives" not in schema:
            raise ValueError(
                f"{data_dir}: num_negatives={num_negatives} but the corpus has no 'negatives' "
                f"field (its fields: {sorted(schema)})"
            )
        wanted += ["negatives", "negative_ids"]
    spec = corpus.feature_spec({field: schema[field] for field in wanted})
    return seqio.TFExampleDataSource(
        split_to_filepattern={s: corpus.split_files(data_dir, s) for s in manifest["shards"]},
        feature_description=spec,
        num_input_examples=manifest["counts"],
        cycle_length=1,  # read the shards in order: the step-indexed order needs a fixed one
        block_length=1,
    )


def _select_features(num_negatives: int, where: str):
    @seqio.map_over_dataset
    def select(ex):
        out = {
            "inputs": ex["query"],
            "targets": ex["document"],
            "query_id": tf.cast(ex["query_id"], tf.int32),
            "document_id": tf.cast(ex["document_id"], tf.int32),
        }
        if num_negatives:
            negatives = tf.sparse.to_dense(ex["negatives"])
            ids = tf.cast(tf.sparse.to_dense(ex["negative_ids"]), tf.int32)
            check = tf.debugging.assert_greater_equal(
                tf.size(negatives),
                num_negatives,
                message=f"{where}: a record has fewer than {num_negatives} negatives",
            )
            with tf.control_dependencies([check]):
                out["negative_targets"] = negatives[:num_negatives]
            out["negative_ids"] = ids[:num_negatives]
        return out

    return select


def register_pairs_task(
    name: str | None,
    data_dir: str,
    vocabulary_path: str,
    *,
    num_negatives: int = 0,
) -> seqio.Task:
    """Registers (or re-registers: the name is removed first) a task over one corpus.

    Args:
      name: the task name (None: `task_name_for(data_dir, num_negatives)`).
      data_dir: a finished corpus directory (has `manifest.json`).
      vocabulary_path: the vocabulary shared by every side: a SentencePiece `.model`, or a
        pretrained model's `tokenizer.json`.
      num_negatives: hard negatives per pair to read (the corpus needs a `negatives` field
        with at least that many per record; a record with fewer is an error, not skipped).
    """
    if not os.path.exists(vocabulary_path):
        raise FileNotFoundError(f"{vocabulary_path}: vocabulary not found")
    name = name or task_name_for(data_dir, num_negatives)
    vocabulary = vocabulary_from_file(vocabulary_path)
    features = {
        key: seqio.Feature(vocabulary, add_eos=False, dtype=tf.int32)
        for key in ("inputs", "targets")
    }
    if num_negatives:
        features["negative_targets"] = seqio.Feature(vocabulary, add_eos=False, rank=2)
    seqio.TaskRegistry.remove(name)
    _REGISTERED[name] = (data_dir, vocabulary_path)
    return seqio.TaskRegistry.add(
        name,
        source=pairs_source(data_dir, num_negatives=num_negatives),
        preprocessors=[_select_features(num_negatives, data_dir), seqio.preprocessors.tokenize],
        output_features=features,
    )


def mixture_rates(
    data_dirs: Sequence[str], *, temperature: float = 1.0, split: str = "train"
) -> list[float]:
    """Rates proportional to each corpus's `split` examples to the power `1 / temperature`.

    Temperature 1 samples every example equally often; larger temperatures up-weight the
    small corpora (T -> infinity: uniform over corpora), as in multilingual mixtures.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    counts = []
    for data_dir in data_dirs:
        count = corpus.read_manifest(data_dir)["counts"].get(split, 0)
        if count == 0:
            raise ValueError(f"{data_dir}: no {split!r} examples to mix")
        counts.append(count)
    weights = [c ** (1.0 / temperature) for c in counts]
    return [w / sum(weights) for w in weights]


def register_pairs_mixture(
    name: str,
    data_dirs: Sequence[str],
    vocabulary_path: str,
    *,
    rates: Sequence[float] | Mapping[str, float] | None = None,
    temperature: float = 1.0,
    num_negatives: int = 0,
) -> seqio.Mixture:
    """Registers one task per corpus and a mixture of them (all share one vocabulary).

    Args:
      name: the mixture name.
      data_dirs: corpus directories; each becomes the task `task_name_for(data_dir)`.
      vocabulary_path: the shared SentencePiece model.
      rates: explicit rates (a list in `data_dirs` order, or a dict by directory); None
        derives them from the corpora's training examples with `mixture_rates`.
      temperature: see `mixture_rates`.
      num_negatives: hard negatives per pair, the same for every task.
    """
    if not data_dirs:
        raise ValueError(f"mixture {name!r} needs at least one corpus")
    if rates is None:
        rates = mixture_rates(data_dirs, temperature=temperature)
    elif isinstance(rates, Mapping):
        missing = [d for d in data_dirs if d not in rates]
        if missing:
            raise ValueError(f"mixture {name!r}: no rate for {missing}")
        rates = [rates[d] for d in data_dirs]
    if len(rates) != len(data_dirs) or any(r < 0 for r in rates) or sum(rates) <= 0:
        raise ValueError(f"mixture {name!r}: bad rates {list(rates)} for {list(data_dirs)}")
    names = [task_name_for(d, num_negatives) for d in data_dirs]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        # seqio keeps one task per name: a second corpus would silently replace the first.
        raise ValueError(
            f"mixture {name!r}: corpora {list(data_dirs)} share task names {clashes} "
            "(their directories have the same name); rename one directory"
        )
    task_names = []
    for data_dir in data_dirs:
        task = register_pairs_task(None, data_dir, vocabulary_path, num_negatives=num_negatives)
        task_names.append(task.name)
    seqio.MixtureRegistry.remove(name)
    return seqio.MixtureRegistry.add(name, list(zip(task_names, rates)))


def register_default_mixtures(
    vocabulary_path: str, data_root: str = "data", *, temperature: float = 2.0
) -> dict[str, seqio.Mixture]:
    """Registers `cpt_code`, `cpt_text` and `cpt_code_text` over the built-in corpora in
    `data_root` (tasks `pairs_<corpus>`), rates by size with `temperature`.

    Every corpus must be built (an error names the missing one and its build command).
    """
    mixtures = {}
    for name, corpora in DEFAULT_MIXTURES.items():
        data_dirs = [os.path.join(data_root, c) for c in corpora]
        for corpus_name, data_dir in zip(corpora, data_dirs):
            if not os.path.exists(os.path.join(data_dir, corpus.MANIFEST)):
                raise FileNotFoundError(
                    f"{data_dir}: corpus {corpus_name!r} is not built "
                    f"(python -m data_pipelines.build {corpus_name} --out_dir {data_dir})"
                )
        mixtures[name] = register_pairs_mixture(
            name, data_dirs, vocabulary_path, temperature=temperature
        )
    return mixtures
