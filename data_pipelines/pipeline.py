"""Training batches in a deterministic order indexed by step.

Global batch `k` of a run is a pure function of (task or mixture, split, seed, k): the
examples it holds are computed from `k`, not replayed from the start. So a run resumed at
step `k` sees exactly the batches an uninterrupted run would, in O(1), and a run on 1 host
sees the same global batches as on 2 or 64: each host (`seqio.ShardInfo(index, num_shards)`)
keeps its own contiguous rows of every global batch, and re-sharding changes who reads a row,
not which rows make up a batch.

How the order is defined (`StepIndexedOrder`):
- Each task is a stream of its examples, epoch after epoch, each epoch a fresh permutation
  seeded by (seed, task, epoch). Row `r` of the stream is `perm_{r // N}[r % N]`.
- Grouped epochs (`groups`, e.g. each code pair's package; `grouped_epoch`): an epoch's
  permutation shuffles each group, cuts it into blocks of one global batch and shuffles
  the blocks, so most batches hold one or two groups: in-batch negatives from the same
  code base are the near misses a search over it must tell apart.
- One task: global batch `k` is rows `[k G, (k + 1) G)` of its stream (`G` the global batch).
- A mixture, mixed batches: batch `k` takes `n_t(k)` rows from task `t`, with cumulative
  counts `C_t(k) = floor(k G W_t) - floor(k G W_{t-1})` (`W` the cumulative rates), so every
  batch has exactly `G` rows and each task gets its rate's share to within one row; the rows
  of a batch are then permuted (seeded by (seed, k)) so that hosts see every task.
- A mixture, single-task batches (`single_task_batches=True`; harder in-batch negatives and
  no source shortcuts): batch `k` comes entirely from one task drawn with the mixture's
  rates (seeded by (seed, k)), continuing that task's stream.

Every host tokenises the whole split once (with the inference tokenizer, in batches),
keeps it in memory and caches it beside the corpus (`tokenized_split`), so a restarted run
starts at once: simple and exact at the corpus sizes built here (a million pairs of 64 + 256
tokens is 1.3 GB of int32).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterator, Sequence

import numpy as np

from cpt_jax import files
from cpt_jax.tokenization import load_tokenizer
from data_pipelines import corpus

MODEL_FEATURES = ("queries", "documents", "query_ids", "document_ids")
NEGATIVE_FEATURES = ("negatives", "negative_ids")
_CHOICE_BLOCK = 4096
# Bump when tokenisation or feature conversion changes: it keys the tokenised-split caches.
TOKENIZED_CACHE_VERSION = 1  # single-task choices are drawn in blocks: choice(k) is O(1) to find


def load_pairs(data_dir: str, split: str, required: Sequence[str] = ("query", "document")):
    """The records of one split of a corpus directory (TFRecord shards) or of a `split.jsonl`.

    jsonl files are what users bring (errors name the file, line and field); built corpora
    are read with `corpus.read_split`.
    """
    if os.path.exists(os.path.join(data_dir, corpus.MANIFEST)):
        return corpus.read_split(data_dir, split)
    path = os.path.join(data_dir, f"{split}.jsonl")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such split file (and no {corpus.MANIFEST})")
    return [record for _, record in files.iter_records(path, required)]


class StepIndexedOrder:
    """Which examples make up each global batch: `(task, example)` indices, from the step.

    Args:
      sizes: examples per task.
      rates: mixing rates (normalised here); ignored for one task.
      global_batch: rows per global batch.
      seed: the run's data seed.
      single_task_batches: draw each batch from one task (see the module docstring).
      shuffle: False keeps each task's examples in corpus order (epochs repeat it).
      groups: per task, None or an int array `[size]` of each example's group: its epochs
        are then `grouped_epoch`s (needs `shuffle`).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        rates: Sequence[float] | None = None,
        *,
        global_batch: int,
        seed: int = 0,
        single_task_batches: bool = False,
        shuffle: bool = True,
        groups: Sequence[np.ndarray | None] | None = None,
    ):
        if not sizes or any(n <= 0 for n in sizes):
            raise ValueError(f"every task needs examples, got sizes {list(sizes)}")
        if global_batch <= 0:
            raise ValueError(f"global_batch must be positive, got {global_batch}")
        rates = np.ones(len(sizes)) if rates is None else np.asarray(rates, dtype=np.float64)
        if rates.shape != (len(sizes),) or (rates < 0).any() or rates.sum() <= 0:
            raise ValueError(f"rates {list(rates)} do not match {len(sizes)} tasks")
        self.sizes = list(sizes)
        self.rates = rates / rates.sum()
        self.cumulative = np.concatenate([[0.0], np.cumsum(self.rates)])
        self.cumulative[-1] = 1.0
        self.global_batch = global_batch
        self.seed = seed
        self.single_task_batches = single_task_batches and len(sizes) > 1
        self.shuffle = shuffle
        self.groups = list(groups) if groups is not None else [None] * len(sizes)
        if len(self.groups) != len(sizes):
            raise ValueError(f"groups for {len(self.groups)} tasks, but {len(sizes)} tasks")
        for task, (size, labels) in enumerate(zip(self.sizes, self.groups)):
            if labels is not None and np.shape(labels) != (size,):
                raise ValueError(
                    f"task {task}: groups of shape {np.shape(labels)}, expected ({size},)"
                )
        if not shuffle and any(labels is not None for labels in self.groups):
            raise ValueError("groups need shuffle=True (they define how an epoch is shuffled)")
        # Batches each task served before block i of single-task choices (grows lazily).
        self._served_before_block = [np.zeros(len(sizes), dtype=np.int64)]

    # -- each task's stream
    @functools.lru_cache(maxsize=8)  # noqa: B019 (a handful of orders live per process)
    def _permutation(self, task: int, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.sizes[task])
        rng = np.random.default_rng([self.seed, task, epoch])
        if self.groups[task] is not None:
            return grouped_epoch(self.groups[task], self.global_batch, rng)
        return rng.permutation(self.sizes[task])

    def stream(self, task: int, start: int, stop: int) -> np.ndarray:
        """Example indices of rows `[start, stop)` of task `task`'s stream."""
        n = self.sizes[task]
        rows = np.arange(start, stop)
        out = np.empty(len(rows), dtype=np.int64)
        for epoch in np.unique(rows // n):
            in_epoch = rows // n == epoch
            out[in_epoch] = self._permutation(task, int(epoch))[rows[in_epoch] % n]
        return out

    # -- batches
    def _mixed_counts(self, step: int) -> np.ndarray:
        """Rows each task contributed to batches `[0, step)`: `C_t(step)`."""
        edges = np.floor(step * self.global_batch * self.cumulative).astype(np.int64)
        return np.diff(edges)

    @functools.lru_cache(maxsize=2)  # noqa: B019
    def _choices(self, block: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 1_000_003, block])
        return np.searchsorted(self.cumulative[1:-1], rng.random(_CHOICE_BLOCK), side="right")

    def _single_task_state(self, step: int) -> tuple[int, np.ndarray]:
        """The task of batch `step` and the batches each task served before it.

        Per-block task counts are summed once and kept, so consecutive steps cost O(1);
        the first call at step k (a resume) draws the k // 4096 blocks before it, once.
        """
        full, rest = divmod(step, _CHOICE_BLOCK)
        while len(self._served_before_block) <= full:
            block = len(self._served_before_block) - 1
            counts = np.bincount(self._choices(block), minlength=len(self.sizes))
            self._served_before_block.append(self._served_before_block[-1] + counts)
        choices = self._choices(full)
        before = self._served_before_block[full] + np.bincount(
            choices[:rest], minlength=len(self.sizes)
        )
        return int(choices[rest]), before

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """`(task, example)` index arrays `[global_batch]` of global batch `step`."""
        if step < 0:
            raise ValueError(f"step must be non-negative, got {step}")
        g = self.global_batch
        if self.single_task_batches:
            task, before = self._single_task_state(step)
            examples = self.stream(task, before[task] * g, (before[task] + 1) * g)
            return np.full(g, task), examples
        start, stop = self._mixed_counts(step), self._mixed_counts(step + 1)
        tasks = np.concatenate([np.full(b - a, t) for t, (a, b) in enumerate(zip(start, stop))])
        examples = np.concatenate(
            [self.stream(t, a, b) for t, (a, b) in enumerate(zip(start, stop))]
        )
        if len(self.sizes) > 1:
            rows = np.random.default_rng([self.seed, 2_000_003, step]).permutation(g)
            tasks, examples = tasks[rows], examples[rows]
        return tasks, examples


def grouped_epoch(groups: np.ndarray, block: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation of `range(len(groups))` that keeps groups together in blocks.

    Each group's members are shuffled and cut into blocks of `block` (its last block may be
    shorter); the blocks of all groups are shuffled and concatenated. With `block` the
    global batch, a batch holds one group, or the tails of a few.

    Args:
      groups: `[n]` integer group of each example.
      block: the block length (> 0).
      rng: the epoch's generator.
    Returns:
      `[n]` int64 example indices.
    """
    groups = np.asarray(groups)
    blocks = []
    for group in np.unique(groups):
        members = rng.permutation(np.flatnonzero(groups == group))
        blocks.extend(np.split(members, np.arange(block, len(members), block)))
    return np.concatenate([blocks[i] for i in rng.permutation(len(blocks))]).astype(np.int64)


def group_labels(task_name: str, split: str, field: str) -> np.ndarray:
    """`[n]` int32 index of each example's value of the corpus field `field`, in corpus order
    (the order of `tokenized_split`); for tasks registered by `data_pipelines.tasks`."""
    from data_pipelines import tasks  # seqio and tensorflow: imported where data is read

    registered = tasks.corpus_of(task_name)
    if registered is None:
        raise ValueError(f"task {task_name!r}: batch groups need a corpus of data_pipelines.tasks")
    data_dir = registered[0]
    schema = corpus.read_manifest(data_dir)["schema"]
    if field not in schema:
        raise ValueError(
            f"{data_dir}: no field {field!r} to group batches by (its fields: {sorted(schema)})"
        )
    values = [record[field] for record in corpus.read_split(data_dir, split)]
    _, labels = np.unique(np.array(values, dtype=object).astype(str), return_inverse=True)
    return labels.astype(np.int32)


def tokenized_split(
    task_name: str,
    split: str,
    sequence_lengths: dict[str, int],
    num_negatives: int = 0,
    *,
    cache: bool = True,
) -> dict[str, np.ndarray]:
    """One task's whole split as model features (`PairFeatureConverter`), in corpus order.

    With `cache`, the arrays are saved beside the corpus (`.tokenized/<key>.npz`, written
    atomically) and read back by later runs: the key hashes the corpus's fingerprint and
    shard hashes, the vocabulary's bytes, the lengths and `num_negatives`, so any change to
    these tokenises again. Tasks not registered by `data_pipelines.tasks` are not cached.
    """
    path = _cache_path(task_name, split, sequence_lengths, num_negatives) if cache else None
    if path and os.path.exists(path):
        with np.load(path) as arrays:
            return {key: arrays[key] for key in arrays.files}
    arrays = _tokenize(task_name, split, sequence_lengths, num_negatives)
    if path:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with files.atomic_open(path, "wb") as f:
            np.savez(f, **arrays)
    return arrays


def _cache_path(task_name, split, sequence_lengths, num_negatives) -> str | None:
    from data_pipelines import tasks  # seqio and tensorflow: imported where data is read

    registered = tasks.corpus_of(task_name)
    if registered is None:
        return None
    data_dir, vocabulary_path = registered
    manifest = corpus.read_manifest(data_dir)
    key = hashlib.sha256()
    key.update(json.dumps([manifest["fingerprint"], manifest["shards"].get(split)]).encode())
    with open(vocabulary_path, "rb") as f:
        key.update(f.read())
    settings = [TOKENIZED_CACHE_VERSION, split, sorted(sequence_lengths.items()), num_negatives]
    key.update(json.dumps(settings).encode())
    return os.path.join(data_dir, ".tokenized", f"{split}-{key.hexdigest()[:20]}.npz")


def _tokenize(task_name, split, sequence_lengths, num_negatives) -> dict[str, np.ndarray]:
    """A pairs task's split as model features.

    Tasks of `data_pipelines.tasks` are read from their corpus and encoded in batches with
    `cpt_jax.tokenization`'s inference tokenizer (fast: one C++ call per
    side); other SeqIO tasks go through SeqIO and `PairFeatureConverter` (`seqio_features`),
    which gives the same arrays.
    """
    from data_pipelines import tasks  # seqio and tensorflow: imported where data is read

    registered = tasks.corpus_of(task_name)
    if registered is None:
        return seqio_features(task_name, split, sequence_lengths, num_negatives)

    data_dir, vocabulary_path = registered
    records = corpus.read_split(data_dir, split)
    if not records:
        raise ValueError(f"task {task_name!r} has no {split!r} examples")
    tokenizer = load_tokenizer(vocabulary_path)
    query_length, document_length = sequence_lengths["inputs"], sequence_lengths["targets"]
    features = {
        "queries": tokenizer.encode([r["query"] for r in records], "query", query_length),
        "documents": tokenizer.encode(
            [r["document"] for r in records], "document", document_length
        ),
        "query_ids": np.array([r["query_id"] for r in records], np.int32),
        "document_ids": np.array([r["document_id"] for r in records], np.int32),
    }
    if num_negatives:
        short = [i for i, r in enumerate(records) if len(r["negatives"]) < num_negatives]
        if short:
            raise ValueError(
                f"{data_dir}: a record has fewer than {num_negatives} negatives "
                f"({len(short)} records, the first is record {short[0]} of {split!r})"
            )
        texts = [t for r in records for t in r["negatives"][:num_negatives]]
        negatives = tokenizer.encode(texts, "document", document_length)
        features["negatives"] = negatives.reshape(len(records), num_negatives, document_length)
        features["negative_ids"] = np.array(
            [r["negative_ids"][:num_negatives] for r in records], np.int32
        )
    return features


def seqio_features(
    task_name: str, split: str, sequence_lengths: dict[str, int], num_negatives: int = 0
) -> dict[str, np.ndarray]:
    """A task's split through SeqIO (`task.get_dataset`) and `PairFeatureConverter`."""
    import seqio

    from data_pipelines.feature_converters import PairFeatureConverter

    task = seqio.get_mixture_or_task(task_name)
    ds = task.get_dataset(
        sequence_length=dict(sequence_lengths),
        split=split,
        use_cached=False,
        shuffle=False,
        num_epochs=1,
    )
    converter = PairFeatureConverter(
        task.output_features["inputs"].vocabulary, num_negatives=num_negatives
    )
    ds = converter(ds, sequence_lengths).batch(4096)
    parts = list(ds.as_numpy_iterator())
    if not parts:
        raise ValueError(f"task {task_name!r} has no {split!r} examples")
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def pair_batches(
    name: str,
    split: str,
    *,
    batch_size: int,
    sequence_lengths: dict[str, int],
    seed: int = 0,
    start_step: int = 0,
    shard_info=None,
    num_negatives: int = 0,
    single_task_batches: bool = False,
    group_field: str | None = None,
    shuffle: bool = True,
    repeat: bool = True,
) -> Iterator[dict[str, np.ndarray]]:
    """Numpy batches of one host: `{'queries', 'documents', 'query_ids', 'document_ids'}`
    (+ `'negatives'` `[b, N, Ld]` and `'negative_ids'` `[b, N]` with `num_negatives=N`).

    Args:
      name: a registered SeqIO task of pairs or a mixture of them (`data_pipelines.tasks`).
      split: which split.
      batch_size: rows per batch of THIS host; the global batch is
        `batch_size * shard_info.num_shards`.
      sequence_lengths: `{'inputs': Lq, 'targets': Ld}`, delimiters included.
      seed: the data seed (see `StepIndexedOrder`).
      start_step: the first global batch to yield (resume).
      shard_info: `seqio.ShardInfo(index, num_shards)` of this host (None: the only host).
      num_negatives: hard negatives per pair.
      single_task_batches: for a mixture, draw each batch from one task.
      group_field: a corpus field (e.g. `'package'`) whose values keep together in
        batches (see `grouped_epoch`); None: plain shuffles.
      shuffle: permute each epoch (False: corpus order).
      repeat: repeat epochs forever; False stops after one epoch (one task only), dropping
        the last partial global batch.
    """
    import seqio

    index, num_shards = (0, 1) if shard_info is None else (shard_info.index, shard_info.num_shards)
    if not 0 <= index < num_shards:
        raise ValueError(f"shard index {index} must be in [0, num_shards={num_shards})")
    provider = seqio.get_mixture_or_task(name)
    if isinstance(provider, seqio.Mixture):
        task_names = [t.name for t in provider.tasks]
        rates = [provider.get_rate(t) for t in provider.tasks]
    else:
        task_names, rates = [name], None
    data = [tokenized_split(t, split, sequence_lengths, num_negatives) for t in task_names]
    groups = None
    if group_field is not None:  # StepIndexedOrder checks each task's groups fit its pairs
        groups = [group_labels(t, split, group_field) for t in task_names]
    order = StepIndexedOrder(
        [len(d["queries"]) for d in data],
        rates,
        global_batch=batch_size * num_shards,
        seed=seed,
        single_task_batches=single_task_batches,
        shuffle=shuffle,
        groups=groups,
    )
    stop = None
    if not repeat:
        if len(data) > 1:
            raise ValueError("repeat=False (one epoch) is defined for a single task only")
        stop = len(data[0]["queries"]) // order.global_batch
    rows = slice(index * batch_size, (index + 1) * batch_size)
    step = start_step
    while stop is None or step < stop:
        tasks, examples = order.batch(step)
        tasks, examples = tasks[rows], examples[rows]
        batch = {}
        for key in data[0]:
            out = np.empty((batch_size,) + data[0][key].shape[1:], data[0][key].dtype)
            for t, d in enumerate(data):
                mine = tasks == t
                if mine.any():
                    out[mine] = d[key][examples[mine]]
            batch[key] = out
        yield batch
        step += 1
