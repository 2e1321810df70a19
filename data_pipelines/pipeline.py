"""Reading pairs: jsonl splits for evaluation, and deterministic batches for training.

`pair_batches` is the training input: global batch `k` of a run depends only on (task,
split, seed, k), and each host keeps its own contiguous rows of it. So a run resumed at step
`k` (`start_step=k`) sees exactly the batches an uninterrupted run would, and a run on 1 host
sees the same global batches as on 2 or 64 (re-sharding changes who reads a row, not which
rows make up a batch).
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

    Global batch `k` is rows `[k * G, (k + 1) * G)` of the shuffled, repeated split, with
    `G = batch_size * num_shards`; shard `s` yields its rows `[s * batch_size, (s + 1) *
    batch_size)`. Concatenating the shards' batches in shard order gives the global batch,
    whatever the number of shards.

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
      shard_index, num_shards: this host's slice of every global batch.
      shuffle, repeat: shuffle examples; repeat epochs forever (else one pass, no partial batch).
    """
    import seqio
    import tensorflow as tf

    from data_pipelines.feature_converters import PairFeatureConverter

    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index={shard_index} must be in [0, num_shards={num_shards})")
    task = seqio.get_mixture_or_task(task_name)
    # Every host tokenises the whole split (cached once per iterator) so that all agree on
    # the global order; at this corpus scale that costs seconds.
    ds = task.get_dataset(
        sequence_length=sequence_lengths,
        split=split,
        use_cached=False,
        shuffle=False,
        num_epochs=1,
    ).cache()
    if shuffle:
        # Each epoch is a fresh permutation, the same in every run with this seed.
        ds = ds.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    converter = PairFeatureConverter(task.output_features["inputs"].vocabulary)
    ds = converter(ds, sequence_lengths)
    ds = ds.batch(batch_size * num_shards, drop_remainder=True).skip(start_step)
    if num_shards > 1:
        rows = slice(shard_index * batch_size, (shard_index + 1) * batch_size)
        ds = ds.map(lambda batch: {key: value[rows] for key, value in batch.items()})
    options = tf.data.Options()
    options.deterministic = True
    ds = ds.with_options(options).prefetch(2)
    return ds.as_numpy_iterator()
