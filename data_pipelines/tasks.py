"""SeqIO tasks of (query, document) pairs.

`register_code_pairs_task` registers a task over a pairs corpus directory (the jsonl splits
written by `data_pipelines.python_code`): `inputs` = the docstring's first paragraph,
`targets` = the function's code, both tokenised with one SentencePiece vocabulary, plus the
text ids precomputed at build time for false-negative masking.
"""

from __future__ import annotations

import functools
import os

import seqio
import tensorflow as tf

from data_pipelines.pipeline import load_pairs

PAIR_FIELDS = {
    "inputs_pretokenized": ("query", tf.string),
    "targets_pretokenized": ("code", tf.string),
    "query_id": ("query_id", tf.int32),
    "document_id": ("code_id", tf.int32),
}


def _pairs_dataset(split: str, shuffle_files: bool, seed: int | None = None, *, data_dir: str):
    """The split as an in-memory tf.data source, in file order (shuffled later by SeqIO)."""
    del shuffle_files, seed  # one file: the example-level shuffle happens in the task
    records = load_pairs(data_dir, split, required=[f for f, _ in PAIR_FIELDS.values()])
    columns = {
        name: tf.constant([r[field] for r in records], dtype=dtype)
        for name, (field, dtype) in PAIR_FIELDS.items()
    }
    return tf.data.Dataset.from_tensor_slices(columns)


@seqio.map_over_dataset
def _copy_pretokenized(ex):
    return {**ex, "inputs": ex["inputs_pretokenized"], "targets": ex["targets_pretokenized"]}


def register_code_pairs_task(name: str, data_dir: str, vocab_model_path: str) -> seqio.Task:
    """Registers (or re-registers: the name is removed first) a pairs task over `data_dir`.

    The source is the jsonl splits present in `data_dir`, read into memory in file order
    (deterministic; `seqio.ShardInfo` shards it by example). `query_id`/`code_id` are read
    from the records, where the corpus build precomputed them with `text_id`.
    """
    if not os.path.exists(vocab_model_path):
        raise FileNotFoundError(f"{vocab_model_path}: SentencePiece model not found")
    vocabulary = seqio.SentencePieceVocabulary(vocab_model_path)
    features = {
        "inputs": seqio.Feature(vocabulary, add_eos=False, dtype=tf.int32),
        "targets": seqio.Feature(vocabulary, add_eos=False, dtype=tf.int32),
    }
    splits = [
        s
        for s in ("train", "validation", "test")
        if os.path.exists(os.path.join(data_dir, f"{s}.jsonl"))
    ]
    if not splits:
        raise FileNotFoundError(f"{data_dir}: no train/validation/test .jsonl files")
    seqio.TaskRegistry.remove(name)
    return seqio.TaskRegistry.add(
        name,
        source=seqio.FunctionDataSource(
            functools.partial(_pairs_dataset, data_dir=data_dir), splits=splits
        ),
        preprocessors=[_copy_pretokenized, seqio.preprocessors.tokenize],
        output_features=features,
    )
