"""The per-user state the phone keeps, and how the model reads it (``ModelConfig.personal_history`` > 0).

The state is ``d + 1`` floats: a decayed sum of the embeddings (the model's own item embedding table, the one
the history is looked up in) of every item the user picked, and its weight. One pick of item ``i``:

    sums   <- decay * sums   + embedding[i]
    weight <- decay * weight + 1

(an index outside ``1..V-1``, padding or an item the model does not know, changes nothing). The model reads
``summary = sums / max(weight, 1)`` (a weighted mean of what the user picked, recent picks weighing most; a zero
state is a zero summary: the weight is at least 1 after any pick) and adds ``projection · summary`` (no bias)
to its query, so a zero state gives exactly the scores of the model without one. GATHER, MUL, ADD, MAXIMUM,
DIV, SELECT: builtin ops on every LiteRT runtime, no training runtime on the phone.

Training has no phone: each example carries the ``personal_history`` items before its context
(``features.EARLIER_INDEX``, most recent first), folded with the same rule into the state before the context,
and the model carries it through the context positions, so the query at every position reads the state of
every pick up to it, as the phone's would be. With probability ``personal_dropout`` an example's state is
zeroed, so the model also learns to recommend without one.

After training, the summary's strength (1 while training) is chosen on the eval split from ``STRENGTHS``
(``training.choose_personal_strength``), as the successor table's is: on a log where the state does not help
(short sessions: the state holds little the history does not) it is 0, and the model is exported without the
state's signatures.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras

from . import features


STRENGTHS = (0.0, 0.5, 1.0, 1.5)  # the summary's strengths tried on the eval split (0: the state switched off)


def state_size(embedding_dim: int) -> int:
    """Floats in a user state: the decayed sums of ``embedding_dim`` and their weight."""
    return embedding_dim + 1


def update_state(state: np.ndarray, item: int, embeddings: np.ndarray, decay: float) -> np.ndarray:
    """The reference rule in numpy (tests and checks): ``state`` after one pick of vocabulary index ``item``."""
    state = np.asarray(state, np.float32)
    if not 0 < item < len(embeddings):
        return state
    return np.concatenate([decay * state[:-1] + embeddings[item], [decay * state[-1] + 1.0]]).astype(np.float32)


class PersonalState(keras.layers.Layer):
    """States from item indices, and the summary the query reads, over the model's item embedding layer.

    ``call([earlier, index])``: ``earlier`` int32 ``[B, M]`` (most recent first) and the context ``index``
    ``[B, N]`` (oldest first, left-padded, indices already in ``0..V-1``) -> the summary at every context
    position ``[B, N, d]`` (zeroed for a ``dropout`` share of examples in training).
    """

    def __init__(self, embedding: keras.layers.Embedding, vocabulary_size: int, decay: float, dropout: float,
                 **kwargs):
        super().__init__(**kwargs)
        self._embedding = embedding
        self._size = vocabulary_size
        self._decay = float(decay)
        self._dropout = float(dropout)
        self.strength = self.add_weight(name="strength", shape=(), initializer="ones", trainable=False)

    def set_strength(self, value: float) -> None:
        self.strength.assign(value)

    def _vectors(self, index):
        valid = (index > features.PADDING_ID) & (index < self._size)
        index = tf.where(valid, index, tf.zeros_like(index))
        valid = tf.cast(valid, tf.float32)
        return tf.gather(self._embedding.embeddings, index) * valid[..., tf.newaxis], valid

    def fold(self, earlier):
        """The state ``[B, d + 1]`` after the picks ``earlier`` ``[B, M]``, most recent first."""
        vectors, valid = self._vectors(earlier)
        weights = self._decay ** tf.cast(tf.range(tf.shape(earlier)[1]), tf.float32)  # 1 for the most recent
        sums = tf.einsum("bmd,m->bd", vectors, weights)
        return tf.concat([sums, tf.reduce_sum(valid * weights, axis=1, keepdims=True)], axis=1)

    def update(self, state, item):
        """The device's update: ``state`` ``[d + 1]`` after one pick of ``item`` (an int32 scalar)."""
        vector, valid = self._vectors(tf.reshape(item, [1]))
        updated = tf.concat([self._decay * state[:-1] + vector[0], self._decay * state[-1:] + 1.0], axis=0)
        return tf.where(valid[0] > 0, updated, state)

    def summary(self, state):
        """What the query reads from a state ``[..., d + 1]``: the weighted mean of the picks times the strength
        (zero state: 0)."""
        return self.strength * state[..., :-1] / tf.maximum(state[..., -1:], 1.0)

    def call(self, inputs, training=None):
        earlier, index = inputs
        start = self.fold(earlier)  # [B, d + 1]
        vectors, valid = self._vectors(index)  # [B, N, d], [B, N]
        picks = tf.concat([vectors, valid[..., tf.newaxis]], axis=-1)  # [B, N, d + 1]
        n = tf.shape(index)[1]
        position = tf.cast(tf.range(n), tf.float32)
        age = position[:, tf.newaxis] - position[tf.newaxis, :]  # [N, N]: position i reads pick j at age i - j
        decay = tf.where(age >= 0, self._decay ** tf.maximum(age, 0.0), 0.0)
        states = (tf.einsum("ij,bjk->bik", decay, picks)
                  + (self._decay ** (position + 1.0))[tf.newaxis, :, tf.newaxis] * start[:, tf.newaxis, :])
        summaries = self.summary(states)
        if training and self._dropout:
            keep = tf.random.uniform([tf.shape(index)[0], 1, 1]) >= self._dropout
            summaries = summaries * tf.cast(keep, summaries.dtype)
        return summaries


class StateSummary(keras.layers.Layer):
    """``PersonalState.summary`` as a layer of its own (the device's view reads a state, not item indices)."""

    def __init__(self, personal: PersonalState, **kwargs):
        super().__init__(**kwargs)
        self._personal = personal

    def call(self, state):
        return self._personal.summary(state)
