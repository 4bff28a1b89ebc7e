"""Keras layers of the recommender: constant lookup tables, causal pooling, attention masks and the
dot-product scoring layer (TensorFlow-only building blocks; the encoders in ``encoders/`` and ``model``
assemble them)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras

from . import successors
from .features import MASKED_SCORE, PADDING_ID


def narrowest_int_dtype(table) -> np.dtype:
    """The smallest of int8 / int16 / int32 that holds every value of ``table`` (the lookup tables are
    shipped in the on-device model: int8 genre and year tables and int16 index tables take a third of int32)."""
    table = np.asarray(table)
    low, high = (int(table.min()), int(table.max())) if table.size else (0, 0)
    for dtype in (np.int8, np.int16):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return np.dtype(dtype)
    return np.dtype(np.int32)


class ConstantLookup(keras.layers.Layer):
    """``table[index]`` as int32 for a constant integer table (a non-trainable weight, frozen into TFLite and
    stored there in the narrowest integer type that holds its values)."""

    def __init__(self, table: np.ndarray, dtype_of=None, **kwargs):
        """``dtype_of``: values the stored type must also hold (a table ``assign``ed later), besides ``table``'s."""
        super().__init__(trainable=False, **kwargs)
        self._shape = tuple(int(d) for d in np.shape(table))
        self._table_dtype = narrowest_int_dtype(table if dtype_of is None else np.append(np.ravel(table), dtype_of))
        self._table = np.asarray(table).astype(self._table_dtype)
        self.table = self.add_weight(name="table", shape=self._shape, dtype=tf.as_dtype(self._table_dtype),
                                     trainable=False, initializer=keras.initializers.Constant(self._table))

    def assign(self, table: np.ndarray) -> None:
        """Replaces the table's values (same shape, within the stored type)."""
        table = np.asarray(table)
        if table.shape != self._shape or narrowest_int_dtype(table).itemsize > self._table_dtype.itemsize:
            raise ValueError(f"a {table.shape} table of {narrowest_int_dtype(table)} does not replace a {self._shape} "
                             f"table of {self._table_dtype}")
        self.table.assign(table.astype(self._table_dtype))

    def lookup(self, index):
        values = tf.gather(self.table, index)
        return values if self._table_dtype == np.int32 else tf.cast(values, tf.int32)

    def call(self, index):
        return self.lookup(index)


class PrefixMean(keras.layers.Layer):
    """Mean of the unmasked entries up to and including each position (0 where there are none)."""

    def call(self, values, mask):
        weights = tf.cast(mask, values.dtype)[..., tf.newaxis]
        return tf.cumsum(values * weights, axis=1) / tf.maximum(tf.cumsum(weights, axis=1), 1.0)


class PrefixMax(keras.layers.Layer):
    """Max of the unmasked entries up to and including each position, for non-negative values (ReLU
    outputs): padding counts as 0, which equals a masked max there and keeps the value range narrow (a
    -1e9 fill would take the whole int8 range of a quantized model).

    A log-step scan (max with the sequence shifted by 1, 2, 4, ...): plain MAXIMUM/PAD ops in TFLite.
    """

    def call(self, values, mask):
        n = int(values.shape[1])
        x = values * tf.cast(mask, values.dtype)[..., tf.newaxis]
        shift = 1
        while shift < n:
            x = tf.maximum(x, tf.pad(x[:, :-shift], [[0, 0], [shift, 0], [0, 0]]))
            shift *= 2
        return x


class GenreMean(keras.layers.Layer):
    """Mean of the genre embeddings ``[B, N, G, d]`` of each item over its real genres (id > 0)."""

    def call(self, genre_vectors, genre_ids):
        weights = tf.cast(genre_ids > 0, genre_vectors.dtype)[..., tf.newaxis]
        return tf.reduce_sum(genre_vectors * weights, axis=2) / tf.maximum(tf.reduce_sum(weights, axis=2), 1.0)


class PositionEmbedding(keras.layers.Layer):
    """Learned absolute position embeddings (oldest-first layout: position N-1 is the most recent item)."""

    def build(self, input_shape):
        self.positions = self.add_weight(name="positions", shape=(int(input_shape[1]), int(input_shape[2])),
                                         initializer=keras.initializers.RandomNormal(stddev=0.02))

    def call(self, x):
        return x + self.positions[tf.newaxis]


class CausalPaddingMask(keras.layers.Layer):
    """Attention mask ``[B, N, N]``: query i may see key j when j is valid and not newer (j <= i), and
    always itself (so a padding query, never used, does not spread attention over every key)."""

    def call(self, mask):
        n = tf.shape(mask)[1]
        ones = tf.ones([n, n], tf.bool)
        not_newer = tf.linalg.band_part(ones, -1, 0)  # lower triangle: j <= i
        itself = tf.linalg.band_part(ones, 0, 0)
        return tf.logical_or(tf.logical_and(not_newer[tf.newaxis], mask[:, tf.newaxis, :]), itself[tf.newaxis])


class DotProductScores(keras.layers.Layer):
    """Scores a query against every label embedding; index 0 is masked out."""

    def __init__(self, vocabulary_size: int, dim: int, genres=None, num_genres: int = 0, shared_embedding=None,
                 **kwargs):
        super().__init__(**kwargs)
        self._shared = shared_embedding
        if shared_embedding is None:
            self.label_embedding = self.add_weight(
                name="label_embedding", shape=(vocabulary_size, dim),
                initializer=keras.initializers.RandomNormal(stddev=0.05))
        self.label_bias = self.add_weight(name="label_bias", shape=(vocabulary_size,), initializer="zeros")
        mask = np.zeros(vocabulary_size, np.float32)
        mask[PADDING_ID] = MASKED_SCORE
        self._padding_mask = tf.constant(mask)
        self._genres = None
        if genres is not None:
            self._genres = tf.constant(genres, tf.int32)
            self.genre_embedding = self.add_weight(
                name="label_genre_embedding", shape=(num_genres + 1, dim),
                initializer=keras.initializers.RandomNormal(stddev=0.05))

    def label_weights(self):
        """The effective label embeddings ``[V, d]`` (item embedding, plus its genres when enabled)."""
        labels = self._shared.embeddings if self._shared is not None else self.label_embedding
        if self._genres is not None:
            present = tf.cast(self._genres > 0, tf.float32)[..., tf.newaxis]
            genre_mean = tf.reduce_sum(tf.gather(self.genre_embedding, self._genres) * present, axis=1) / \
                tf.maximum(tf.reduce_sum(present, axis=1), 1.0)
            labels = labels + genre_mean
        return labels

    def unmasked(self, query):
        """Scores without the padding mask (the on-device function masks by its own means)."""
        return tf.matmul(query, self.label_weights(), transpose_b=True) + self.label_bias

    def call(self, query):
        return self.unmasked(query) + self._padding_mask


class SuccessorScores(keras.layers.Layer):
    """Scores from the successor table (``successors``): for each of the ``recent`` most recent history
    items, ``strength / position * count`` added to each of its top successors' scores (position 1 the
    most recent item, as the last-3 Markov chain weighs them). ``strength`` is a non-trainable weight, 0 while
    the network trains; ``training.fit`` then chooses it on the eval split (``set_strength``) and may recount
    the table (``set_table``)."""

    def __init__(self, table: np.ndarray, vocabulary_size: int, recent: int, **kwargs):
        super().__init__(**kwargs)
        self._scale = successors.COUNT_SCALE
        self._vocabulary_size = vocabulary_size
        self._recent = recent
        self._width = int(np.shape(table)[1])
        # Stored in the type any table of this vocabulary needs, so a recounted one fits (set_table). The
        # validated table keeps the table the strength was chosen with (the training events').
        bound = successors.pack(vocabulary_size - 1, successors.COUNT_CAP)
        self.table = ConstantLookup(table, dtype_of=bound, name="successor_table")
        self.validated_table = ConstantLookup(table, dtype_of=bound, name="validated_successor_table")
        self.strength = self.add_weight(name="strength", shape=(), initializer="zeros", trainable=False)

    @property
    def recent(self) -> int:
        return self._recent

    def set_strength(self, value: float) -> None:
        self.strength.assign(value)

    def set_table(self, table: np.ndarray) -> None:
        """Replaces the table the model scores with (``validated_table`` keeps the one it was built with)."""
        self.table.assign(table)

    def dense(self, recent, validated: bool = False):
        """``[R, V]`` scores of ``recent`` ``[R, recent]`` (most recent first); ``validated``: from the table the
        strength was chosen with."""
        packed = (self.validated_table if validated else self.table)(recent)  # [R, L, S]
        ids = tf.math.floordiv(packed, self._scale)
        position = tf.range(1, self._recent + 1, dtype=tf.float32)[tf.newaxis, :, tf.newaxis]
        weights = self.strength * tf.cast(tf.math.floormod(packed, self._scale), tf.float32) / position
        width = self._recent * self._width
        ids, weights = tf.reshape(ids, [-1, width]), tf.reshape(weights, [-1, width])
        rows = tf.shape(ids)[0]
        row = tf.broadcast_to(tf.range(rows)[:, tf.newaxis], tf.shape(ids))
        return tf.scatter_nd(tf.stack([tf.reshape(row, [-1]), tf.reshape(ids, [-1])], axis=1),
                             tf.reshape(weights, [-1]), tf.stack([rows, self._vocabulary_size]))

    def call(self, index):
        """``[B, V]``: the scores for the most recent position of ``index`` ``[B, N]`` (oldest first)."""
        return self.dense(tf.reverse(index[:, -self._recent:], [1]))
