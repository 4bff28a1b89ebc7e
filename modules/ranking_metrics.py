"""recall@K and NDCG@K as Keras metrics: one definition for training, TFMA and the quality benchmark.

Both take integer targets ``y_true`` ([B] or [B, 1]) and scores ``y_pred`` ([B, C]). The rank of the target
is the number of classes scoring strictly higher; entries masked to a very low score (padding, movies unseen
in training, already-seen movies) never outrank it. A target that is itself masked counts as a miss.
With one target per example, recall@K equals hit rate@K; NDCG@K is ``1 / log2(rank + 2)`` inside the top K.
"""


from typing import Dict, Iterable

import tensorflow as tf
import tf_keras as keras

from . import features


def target_rank(y_true, y_pred):
    y_true = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
    target_score = tf.gather(y_pred, y_true, axis=1, batch_dims=1)
    rank = tf.reduce_sum(tf.cast(y_pred > target_score[:, tf.newaxis], tf.int32), axis=1)
    # A masked target can never be recommended: count it as a miss.
    return tf.where(target_score > features.MASKED_BELOW, rank, tf.fill(tf.shape(rank), tf.int32.max))


class _RankMetric(keras.metrics.Mean):
    def __init__(self, k: int = 10, name=None, dtype=None, **kwargs):
        super().__init__(name=name or f"{self._prefix}@{k}", dtype=dtype)
        self.k = k

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(self._value(target_rank(y_true, y_pred)), sample_weight=sample_weight)

    def get_config(self):
        return {**super().get_config(), "k": self.k}


class RecallAtK(_RankMetric):
    _prefix = "recall"

    def _value(self, rank):
        return tf.cast(rank < self.k, tf.float32)


class NdcgAtK(_RankMetric):
    _prefix = "ndcg"

    def _value(self, rank):
        gain = 1.0 / (tf.math.log(tf.cast(rank, tf.float32) + 2.0) / tf.math.log(2.0))
        return tf.where(rank < self.k, gain, 0.0)


def evaluate(scores, targets, recall_ks: Iterable[int] = features.RECALL_KS, ndcg_k: int = features.NDCG_K) -> Dict[str, float]:
    """recall@K for each K and NDCG@``ndcg_k`` of a score matrix ``[B, C]`` (numpy or tensor) against integer
    targets ``[B]``, with the metrics above: ``{"recall@1": ..., "ndcg@10": ...}``."""
    return evaluate_ranks(target_rank(targets, scores), recall_ks, ndcg_k)


def evaluate_ranks(ranks, recall_ks: Iterable[int] = features.RECALL_KS,
                   ndcg_k: int = features.NDCG_K) -> Dict[str, float]:
    """``evaluate`` from the targets' ranks ``[B]`` (``target_rank``): scores can then be ranked batch by batch
    and dropped (44K users x 48K items of float scores are 8.4 GB)."""
    ranks = tf.constant(ranks, tf.int32)
    return {metric.name: float(tf.reduce_mean(metric._value(ranks)).numpy())  # pylint: disable=protected-access
            for metric in [RecallAtK(k) for k in recall_ks] + [NdcgAtK(ndcg_k)]}
