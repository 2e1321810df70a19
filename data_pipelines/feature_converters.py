"""The pair feature converter: SeqIO task features -> the encoders' model features.

Task features: `inputs` (query tokens), `targets` (document tokens), `query_id`,
`document_id`. Model features, each side padded to its own length:

    queries   [Lq] int32  <sos_x> inputs[:Lq-2] <eos_x> 0 ...
    documents [Ld] int32  <sos_y> targets[:Ld-2] <eos_y> 0 ...
    query_ids, document_ids  int32 scalars (text hashes, for false-negative masking)

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


class PairFeatureConverter(seqio.FeatureConverter):
    """Adds each side's delimiters and pads it to its own length (no packing).

    Call it with `{'inputs': Lq, 'targets': Ld}`; the rank-0 id features need no length.
    """

    def __call__(self, ds: tf.data.Dataset, task_feature_lengths) -> tf.data.Dataset:
        lengths = {"query_id": 0, "document_id": 0, **task_feature_lengths}
        return super().__call__(ds, lengths)

    TASK_FEATURES = {
        "inputs": seqio.FeatureConverter.FeatureSpec(dtype=tf.int32),
        "targets": seqio.FeatureConverter.FeatureSpec(dtype=tf.int32),
        "query_id": seqio.FeatureConverter.FeatureSpec(dtype=tf.int32, rank=0),
        "document_id": seqio.FeatureConverter.FeatureSpec(dtype=tf.int32, rank=0),
    }
    MODEL_FEATURES = {
        "queries": seqio.FeatureConverter.FeatureSpec(dtype=tf.int32),
        "documents": seqio.FeatureConverter.FeatureSpec(dtype=tf.int32),
        "query_ids": seqio.FeatureConverter.FeatureSpec(dtype=tf.int32, rank=0),
        "document_ids": seqio.FeatureConverter.FeatureSpec(dtype=tf.int32, rank=0),
    }
    PACKING_FEATURE_DTYPES = {}

    def __init__(self, vocabulary: seqio.SentencePieceVocabulary, **kwargs):
        super().__init__(pack=False, **kwargs)
        processor = vocabulary.tokenizer
        self._ids = {
            kind: tuple(processor.piece_to_id(p) for p in pieces)
            for kind, pieces in DELIMITERS.items()
        }

    def _convert_features(self, ds: tf.data.Dataset, task_feature_lengths) -> tf.data.Dataset:
        query_length = task_feature_lengths["inputs"]
        document_length = task_feature_lengths["targets"]
        (q_sos, q_eos), (d_sos, d_eos) = self._ids["query"], self._ids["document"]

        def convert(ex):
            return {
                "queries": _delimit(ex["inputs"], q_sos, q_eos, query_length),
                "documents": _delimit(ex["targets"], d_sos, d_eos, document_length),
                "query_ids": ex["query_id"],
                "document_ids": ex["document_id"],
            }

        return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def get_model_feature_lengths(self, task_feature_lengths):
        # Rank-0 features have no length; seqio skips their length checks.
        return {
            "queries": task_feature_lengths["inputs"],
            "documents": task_feature_lengths["targets"],
            "query_ids": 0,
            "document_ids": 0,
        }
