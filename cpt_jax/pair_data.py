"""`PairData`: where a training run's pairs come from, as gin configures it (`PairData.*`).

An application module, since it reads the data through `data_pipelines` (SeqIO tasks over
built corpora, and the step-indexed batch order that makes a resumed run see the batches
an uninterrupted one would).
"""

from __future__ import annotations

import dataclasses

import gin

from data_pipelines import pipeline


@gin.configurable
@dataclasses.dataclass(frozen=True)
class PairData:
    """Where the training pairs come from: SeqIO tasks over built corpora.

    Attributes:
      data_dir: one corpus directory (`python -m data_pipelines.build ...`), or several:
        then a mixture of them (see `data_pipelines.tasks.register_pairs_mixture`).
      vocabulary_path: the vocabulary shared by every side and corpus: a SentencePiece
        model, or a pretrained `tokenizer.json`. None with `train(init_from=...)`: the
        pretrained model's own vocabulary.
      task_name: name to register the task (or mixture) under.
      query_length, document_length: token lengths of each side, delimiters included.
      split: which split to train on.
      seed: the data seed; the batch at step `k` depends only on (seed, k).
      mixture_rates: rates of the corpora (in `data_dir` order); None: proportional to
        their training examples to the power `1 / mixture_temperature`.
      mixture_temperature: see `data_pipelines.tasks.mixture_rates`.
      single_task_batches: draw each batch of a mixture from one corpus (harder in-batch
        negatives, no source shortcuts).
      group_batches_by: a corpus field (e.g. `'package'` of code pairs) whose values keep
        together in batches: harder in-batch negatives from within one code base (see
        `data_pipelines.pipeline.grouped_epoch`). None: plain shuffles.
      num_negatives: hard negatives per pair (the corpus needs a `negatives` field); they
        add columns to the loss.
    """

    data_dir: str | tuple[str, ...] = gin.REQUIRED
    vocabulary_path: str | None = None
    task_name: str = "code_pairs"
    query_length: int = 64
    document_length: int = 256
    split: str = "train"
    seed: int = 0
    mixture_rates: tuple[float, ...] | None = None
    mixture_temperature: float = 1.0
    single_task_batches: bool = False
    group_batches_by: str | None = None
    num_negatives: int = 0

    @property
    def sequence_lengths(self) -> dict[str, int]:
        """Token lengths by side: `{'queries': query_length, 'documents': document_length}`."""
        return {"queries": self.query_length, "documents": self.document_length}

    @property
    def data_dirs(self) -> list[str]:
        """The corpus directories, a list even of one."""
        return [self.data_dir] if isinstance(self.data_dir, str) else list(self.data_dir)

    def register(self) -> str:
        """Registers the task or mixture; returns its name."""
        from data_pipelines import tasks  # seqio/tensorflow only where data is read

        if len(self.data_dirs) == 1:
            tasks.register_pairs_task(
                self.task_name,
                self.data_dirs[0],
                self.vocabulary_path,
                num_negatives=self.num_negatives,
            )
        else:
            tasks.register_pairs_mixture(
                self.task_name,
                self.data_dirs,
                self.vocabulary_path,
                rates=self.mixture_rates,
                temperature=self.mixture_temperature,
                num_negatives=self.num_negatives,
            )
        return self.task_name

    def batches(self, *, batch_size: int, start_step: int, shard_index: int, num_shards: int):
        """This host's rows of global batches `start_step, start_step + 1, ...`: an endless
        iterator of numpy dicts, `batch_size` rows each (see `pipeline.pair_batches`), this
        host being shard `shard_index` of `num_shards`."""
        import seqio

        return pipeline.pair_batches(
            self.register(),
            self.split,
            batch_size=batch_size,
            sequence_lengths={"inputs": self.query_length, "targets": self.document_length},
            seed=self.seed,
            start_step=start_step,
            shard_info=seqio.ShardInfo(shard_index, num_shards),
            num_negatives=self.num_negatives,
            single_task_batches=self.single_task_batches,
            group_field=self.group_batches_by,
        )
