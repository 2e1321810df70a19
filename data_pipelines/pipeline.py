"""Reading pairs: jsonl splits for evaluation, and deterministic batches for training.

`pair_batches` is the training input: batch `k` of a run depends only on (task, split,
seed, shard, k), so a run resumed at step `k` (`start_step=k`) sees exactly the batches an
uninterrupted run would, and each host reads only its own shard (`seqio.ShardInfo`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np

from cpt_jax import files

DEFAULT_FIELDS = ("query", "code")
# Larger than the in-memory corpora read here, so that an epoch is a full permutation.
SHUFFLE_BUFFER = 200_000


def load_pairs(data_dir: str, split: str, required: Sequence[str] = DEFAULT_FIELDS) -> list[dict]:
    """Reads `data_dir/split.jsonl`; errors name the file, line and field."""
    path = os.path.join(data_dir, f"{split}.jsonl")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such split file")
    return [record for _, record in files.iter_records(path, required)]


def pair_batches(
    task_name: str,
    split: str,
    *,
    batch_size: int,
    sequence_lengths: dict[str, int],
    seed: int = 0,
    start_step: int = 0,
    shard_index: int = 0,
    num_shards: int = 1,
    shuffle: bool = True,
    repeat: bool = True,
) -> Iterator[dict[str, np.ndarray]]:
    """Numpy batches `{'queries', 'documents', 'query_ids', 'document_ids'}` of one shard.

    Args:
      task_name: a registered SeqIO task of pairs (see `data_pipelines.tasks`).
      split: which split.
      batch_size: rows per batch of THIS shard (a host's part of the global batch).
      sequence_lengths: `{'inputs': Lq, 'targets': Ld}`, delimiters included.
      seed: shuffle seed; epochs are reshuffled deterministically.
      start_step: skip the first `start_step` batches (resume): `ds.skip(start_step)` after
        batching, so the batches equal batches `start_step, ...` of a run from 0, epoch
        boundaries included. Skipping replays the shuffles of the skipped epochs over the
        cached tokenised split (no model work), which is cheap at this corpus scale
        (thousands of pairs); a corpus of millions would want a step-indexed source instead.
      shard_index, num_shards: this host's shard of the examples.
      shuffle, repeat: shuffle examples; repeat epochs forever (else one pass, no partial batch).
    """
    import seqio
    import tensorflow as tf

    from data_pipelines.feature_converters import PairFeatureConverter

    task = seqio.get_mixture_or_task(task_name)
    ds = task.get_dataset(
        sequence_length=sequence_lengths,
        split=split,
        use_cached=False,
        shuffle=False,
        shard_info=seqio.ShardInfo(shard_index, num_shards),
        num_epochs=1,
    ).cache()  # tokenised once per iterator; repeated epochs and resume skips reuse it
    if shuffle:
        # Each epoch is a fresh permutation, the same in every run with this seed.
        ds = ds.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    converter = PairFeatureConverter(task.output_features["inputs"].vocabulary)
    ds = converter(ds, sequence_lengths)
    ds = ds.batch(batch_size, drop_remainder=True).skip(start_step)
    options = tf.data.Options()
    options.deterministic = True
    ds = ds.with_options(options).prefetch(2)
    return ds.as_numpy_iterator()
