"""The two-tower next-movie model: a context encoder over the recent history, dotted with label embeddings.

``scores = query(history) · label_embedding[index] + bias[index]`` over the whole vocabulary, trained with
full softmax cross-entropy. Index 0 (padding / unknown) always scores ``MASKED_SCORE``.
"""

from __future__ import annotations

import os
from typing import Callable, Dict

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from . import features  # noqa: E402
from .config import ModelConfig  # noqa: E402,F401  (re-exported)
from .vocabulary import Vocabulary  # noqa: E402

MASKED_SCORE = -1e9


class IdToIndex(keras.layers.Layer):
    """Maps raw movie ids to vocabulary indices with a dense table; unknown and padding ids map to 0."""

    def __init__(self, id_to_index: np.ndarray, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self._size = int(len(id_to_index))
        self.table = self.add_weight(
            name="id_to_index", shape=(self._size,), dtype=tf.int32, trainable=False,
            initializer=keras.initializers.Constant(np.asarray(id_to_index, np.int32)))

    def call(self, ids):
        ids = tf.cast(ids, tf.int32)
        in_range = tf.logical_and(ids >= 0, ids < self._size)
        return tf.gather(self.table, tf.where(in_range, ids, tf.zeros_like(ids)))


class MaskedMean(keras.layers.Layer):
    """Bag-of-words encoder: the mean of the non-padding context embeddings."""

    def call(self, embeddings, mask):
        weights = tf.cast(mask, embeddings.dtype)[..., tf.newaxis]
        total = tf.reduce_sum(embeddings * weights, axis=1)
        return total / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)


def _bag_of_words(config: ModelConfig) -> Callable:
    layer = MaskedMean(name="bow_encoder")
    return lambda embeddings, mask: layer(embeddings, mask)


ENCODERS: Dict[str, Callable[[ModelConfig], Callable]] = {"bow": _bag_of_words}


class DotProductScores(keras.layers.Layer):
    """Scores a query against every label embedding; index 0 is masked out."""

    def __init__(self, vocabulary_size: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.label_embedding = self.add_weight(
            name="label_embedding", shape=(vocabulary_size, dim),
            initializer=keras.initializers.RandomNormal(stddev=0.05))
        self.label_bias = self.add_weight(name="label_bias", shape=(vocabulary_size,), initializer="zeros")
        mask = np.zeros(vocabulary_size, np.float32)
        mask[features.PADDING_ID] = MASKED_SCORE
        self._padding_mask = tf.constant(mask)

    def call(self, query):
        return tf.matmul(query, self.label_embedding, transpose_b=True) + self.label_bias + self._padding_mask


def build_model(config: ModelConfig, vocab: Vocabulary) -> keras.Model:
    """Returns a Keras model: ``{context_movie_id: int32[B, N]}`` -> scores over vocabulary indices."""
    if config.encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {config.encoder!r}; available: {', '.join(sorted(ENCODERS))}")
    keras.utils.set_random_seed(config.seed)
    ids = keras.Input(shape=(config.history_length,), dtype=tf.int32, name=features.CONTEXT_MOVIE_ID)
    index = IdToIndex(vocab.id_to_index(), name="id_to_index")(ids)
    embeddings = keras.layers.Embedding(vocab.size, config.embedding_dim, name="context_embedding")(index)
    mask = keras.layers.Lambda(lambda i: tf.not_equal(i, features.PADDING_ID), name="padding_mask")(index)
    query = ENCODERS[config.encoder](config)(embeddings, mask)
    for layer in range(config.hidden_layers):
        query = keras.layers.Dense(config.embedding_dim, activation="relu", name=f"hidden_{layer}")(query)
    query = keras.layers.Dense(config.embedding_dim, name="query")(query)
    scores = DotProductScores(vocab.size, config.embedding_dim, name="scores")(query)
    return keras.Model({features.CONTEXT_MOVIE_ID: ids}, scores, name=f"{config.encoder}_recommender")


def compile_model(model: keras.Model, config: ModelConfig) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseTopKCategoricalAccuracy(k=10, name="recall@10")])
    return model
