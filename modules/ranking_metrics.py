"""The ranking metrics' one home: a registry, and the Keras metric that computes any of them.

``METRICS`` lists every metric the project reports, in the order tables show them. The Trainer's validation,
TFMA (the Evaluators' eval and test splits), ``evaluate``'s eval.json, the pusher's metadata, the report and the
benchmark tables all iterate it; adding a metric is one line here (and a value function in ``VALUES`` for a new
kind). ``GATE`` is the one the blessing and early stopping watch.

Every metric is a mean over examples of a value of the target's rank: the number of classes scoring strictly
higher. Entries masked to a very low score (padding, items unseen in training, already-seen items) never
outrank it; a target that is itself masked counts as a miss. With one target per example recall@K equals hit
rate@K; NDCG@K is ``1 / log2(rank + 2)`` inside the top K, MRR@K ``1 / (rank + 1)`` there. Integer targets
``y_true`` ([B] or [B, 1]), scores ``y_pred`` ([B, C]).

TensorFlow is imported only when a metric is computed: the registry is read by the report and the command line.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Iterable, Tuple

from . import features


def _recall(rank, k: int):
    import tensorflow as tf
    return tf.cast(rank < k, tf.float32)


def _ndcg(rank, k: int):
    import tensorflow as tf
    gain = 1.0 / (tf.math.log(tf.cast(rank, tf.float32) + 2.0) / tf.math.log(2.0))
    return tf.where(rank < k, gain, 0.0)


def _mrr(rank, k: int):
    import tensorflow as tf
    return tf.where(rank < k, 1.0 / (tf.cast(rank, tf.float32) + 1.0), 0.0)


# kind -> the value of one example from its target's rank [B] and the cut-off K
VALUES: Dict[str, Callable] = {"recall": _recall, "ndcg": _ndcg, "mrr": _mrr}


@dataclasses.dataclass(frozen=True)
class RankingMetric:
    kind: str  # a key of VALUES
    k: int  # the cut-off
    title: str  # its column header in tables

    @property
    def name(self) -> str:
        """The key in every output (Keras logs, TFMA, eval.json, metadata, benchmark JSON): ``kind@k``."""
        return f"{self.kind}@{self.k}"

    def values(self, rank):
        return VALUES[self.kind](rank, self.k)

    def keras(self):
        """This metric as a Keras metric (the Trainer's validation)."""
        return __getattr__(KERAS_CLASS)(kind=self.kind, k=self.k)


METRICS: Tuple[RankingMetric, ...] = (
    RankingMetric("recall", 1, "recall@1"),
    RankingMetric("recall", 5, "recall@5"),
    RankingMetric("recall", 10, "recall@10"),
    RankingMetric("ndcg", 10, "NDCG@10"),
    RankingMetric("mrr", 10, "MRR@10"),
)
NAMES: Tuple[str, ...] = tuple(m.name for m in METRICS)
BY_NAME: Dict[str, RankingMetric] = {m.name: m for m in METRICS}
GATE: RankingMetric = BY_NAME["recall@10"]  # the blessing threshold and early stopping
KERAS_CLASS = "RankMetric"  # what TFMA's MetricConfig names (module: this one)


def target_rank(y_true, y_pred):
    import tensorflow as tf
    y_true = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
    target_score = tf.gather(y_pred, y_true, axis=1, batch_dims=1)
    rank = tf.reduce_sum(tf.cast(y_pred > target_score[:, tf.newaxis], tf.int32), axis=1)
    # A masked target can never be recommended: count it as a miss.
    return tf.where(target_score > features.MASKED_BELOW, rank, tf.fill(tf.shape(rank), tf.int32.max))


def _keras_metric_class():
    import tf_keras as keras

    class RankMetric(keras.metrics.Mean):  # pylint: disable=redefined-outer-name
        """Any registered metric (``kind`` of VALUES, cut-off ``k``) as a Keras mean over examples."""

        def __init__(self, kind: str = GATE.kind, k: int = GATE.k, name=None, dtype=None, **kwargs):
            if kind not in VALUES:
                raise ValueError(f"unknown ranking metric {kind!r}; known: {', '.join(VALUES)}")
            super().__init__(name=name or f"{kind}@{k}", dtype=dtype)
            self.kind, self.k = kind, k

        def update_state(self, y_true, y_pred, sample_weight=None):
            rank = target_rank(y_true, y_pred)
            return super().update_state(VALUES[self.kind](rank, self.k), sample_weight=sample_weight)

        def get_config(self):
            return {**super().get_config(), "kind": self.kind, "k": self.k}

    RankMetric.__module__ = __name__
    return RankMetric


_CLASSES: Dict[str, type] = {}


def __getattr__(name: str):
    """``RankMetric``, defined on first use (TFMA and Keras find it as an attribute of this module)."""
    if name == KERAS_CLASS:
        if name not in _CLASSES:
            _CLASSES[name] = _keras_metric_class()
        return _CLASSES[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def evaluate(scores, targets, metrics: Iterable[RankingMetric] = METRICS) -> Dict[str, float]:
    """Every metric of ``metrics`` of a score matrix ``[B, C]`` (numpy or tensor) against integer targets
    ``[B]``: ``{"recall@1": ..., "ndcg@10": ...}``."""
    return evaluate_ranks(target_rank(targets, scores), metrics)


def evaluate_ranks(ranks, metrics: Iterable[RankingMetric] = METRICS) -> Dict[str, float]:
    """``evaluate`` from the targets' ranks ``[B]`` (``target_rank``): scores can then be ranked batch by batch
    and dropped (44K users x 48K items of float scores are 8.4 GB)."""
    import tensorflow as tf
    ranks = tf.constant(ranks, tf.int32)
    return {m.name: float(tf.reduce_mean(m.values(ranks)).numpy()) for m in metrics}


def table_header(prefix: str = "") -> str:
    """The metrics' columns of a Markdown table row: ``| recall@1 | ... | NDCG@10 |``, each title prefixed."""
    return "".join(f" {prefix}{m.title} |" for m in METRICS)


def table_cells(values: Dict[str, float], digits: int = 4) -> str:
    """The metrics' cells of a Markdown table row (``–`` for a metric a result does not hold: an older file)."""
    return "".join(f" {values[m.name]:.{digits}f} |" if values.get(m.name) is not None else " – |"
                   for m in METRICS)
