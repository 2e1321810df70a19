"""The pair feature converter: SeqIO task features -> the encoders' model features.

Task features: `inputs` (query tokens), `targets` (document tokens), `query_id`,
`document_id`, and with hard negatives `negative_targets` ([N, None]) and `negative_ids`.
Model features, each side padded to its own length:

    queries   [Lq] int32     <sos_x> inputs[:Lq-2] <eos_x> 0 ...
    documents [Ld] int32     <sos_y> targets[:Ld-2] <eos_y> 0 ...
    negatives [N, Ld] int32  each hard negative delimited and padded like a document
    query_ids, document_ids  int32 scalars; negative_ids [N] int32 (text hashes, for
                             false-negative masking)

`cpt_jax.tokenization.PairTokenizer.encode` produces the same rows at inference time.
"""

from __future__ import annotations

import seqio
import tensorflow as tf

from cpt_jax.tokenization import DELIMITERS


def _delimit(tokens: tf.Tensor, sos: int, eos: int, length: int) -> tf.Tensor:
    body = tf.cast(tokens[: length - 2], tf.int32)
    row = tf.concat([[sos], body, [eos]], axis=0)
    return tf.pad(row, [[0, length - tf.shape(row)[0]]])


def _delimit_rows(tokens: tf.RaggedTensor, sos: int, eos: int, length: int) -> tf.Tensor:
    """`_delimit` of every row of a ragged `[N, None]` tensor -> dense `[N, length]`."""
    body = tf.cast(tokens[:, : length - 2], tf.int32)
    n = body.nrows()
    rows = tf.concat([tf.fill([n, 1], sos), body, tf.fill([n, 1], eos)], axis=1)
    return rows.to_tensor(default_value=0, shape=[None, length])


_SPEC = seqio.FeatureConverter.FeatureSpec


class PairFeatureConverter(seqio.FeatureConverter):
    """Adds each side's delimiters and pads it to its own length (no packing).

    Call it with `{'inputs': Lq, 'targets': Ld}`; the id features need no length, and hard
    negatives (`num_negatives > 0`) take the documents' length.
    """

    TASK_FEATURES = {
        "inputs": _SPEC(dtype=tf.int32),
        "targets": _SPEC(dtype=tf.int32),
        "query_id": _SPEC(dtype=tf.int32, rank=0),
        "document_id": _SPEC(dtype=tf.int32, rank=0),
    }
    MODEL_FEATURES = {
        "queries": _SPEC(dtype=tf.int32),
        "documents": _SPEC(dtype=tf.int32),
        "query_ids": _SPEC(dtype=tf.int32, rank=0),
        "document_ids": _SPEC(dtype=tf.int32, rank=0),
    }
    PACKING_FEATURE_DTYPES = {}

    def __init__(self, vocabulary: seqio.Vocabulary, num_negatives: int = 0, **kw):
        super().__init__(pack=False, **kw)
        self.num_negatives = num_negatives
        if num_negatives:
            # Instance attributes: the class's features stay those of plain pairs.
            self.TASK_FEATURES = {
                **type(self).TASK_FEATURES,
                "negative_targets": _SPEC(dtype=tf.int32, rank=2),
                "negative_ids": _SPEC(dtype=tf.int32),
            }
            self.MODEL_FEATURES = {
                **type(self).MODEL_FEATURES,
                "negatives": _SPEC(dtype=tf.int32, rank=2),
                "negative_ids": _SPEC(dtype=tf.int32),
            }
        # The vocabularies of `data_pipelines.tasks` carry the inference tokenizer.
        tokenizer = vocabulary.pair_tokenizer
        self._ids = {kind: tokenizer.delimiter_ids(kind) for kind in DELIMITERS}

    def __call__(self, ds: tf.data.Dataset, task_feature_lengths) -> tf.data.Dataset:
        lengths = {"query_id": 0, "document_id": 0, **task_feature_lengths}
        if self.num_negatives:
            lengths.update(negative_targets=self.num_negatives, negative_ids=self.num_negatives)
        return super().__call__(ds, lengths)

    def _convert_features(self, ds: tf.data.Dataset, task_feature_lengths) -> tf.data.Dataset:
        query_length = task_feature_lengths["inputs"]
        document_length = task_feature_lengths["targets"]
        (q_sos, q_eos), (d_sos, d_eos) = self._ids["query"], self._ids["document"]
        num_negatives = self.num_negatives

        def convert(ex):
            out = {
                "queries": _delimit(ex["inputs"], q_sos, q_eos, query_length),
                "documents": _delimit(ex["targets"], d_sos, d_eos, document_length),
                "query_ids": ex["query_id"],
                "document_ids": ex["document_id"],
            }
            if num_negatives:
                negatives = ex["negative_targets"]
                if not isinstance(negatives, tf.RaggedTensor):
                    negatives = tf.RaggedTensor.from_tensor(negatives, padding=0)
                out["negatives"] = _delimit_rows(negatives, d_sos, d_eos, document_length)
                out["negative_ids"] = ex["negative_ids"]
            return out

        return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def get_model_feature_lengths(self, task_feature_lengths):
        # Rank-0 features have no length; seqio skips their length checks.
        lengths = {
            "queries": task_feature_lengths["inputs"],
            "documents": task_feature_lengths["targets"],
            "query_ids": 0,
            "document_ids": 0,
        }
        if self.num_negatives:
            lengths.update(negatives=self.num_negatives, negative_ids=self.num_negatives)
        return lengths
