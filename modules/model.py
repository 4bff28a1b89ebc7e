"""The two-tower next-item model: a context encoder over the recent history, dotted with label embeddings.

The model reads vocabulary indices (0 = padding or unknown), never raw keys. Each history item becomes an
*activity embedding*: its index embedding plus (switchable) the mean embedding of the values of each of its
categorical features (genres, categories, brand), an embedding of each numeric feature's bucket (year, price)
and a projection of the user's rating. Item features are gathered by index from constant tables built from
the vocabulary, so the model grows with the catalogue only. The model reverses the most-recent-first
history to oldest first, and a causal encoder (bag-of-words prefix mean, causal CNN + prefix max-pool, LSTM,
or SASRec-style Transformer) gives a vector at every position that depends on that position and older ones
only. A small MLP maps it to a query, and

    scores = query · label_embedding[index] + bias[index] (+ successor scores)

over the whole vocabulary. The successor scores (``config.successors`` > 0, ``modules/successors.py``) add,
for each of the few most recent history items, a strength (chosen on the eval split after training) times
the count of each of its most frequent next items in the training events: the sparse item-to-item part a
rank-d dot product cannot hold. Serving uses the query at the most recent position; training can use every
position (loss_positions="all", as SASRec), with full softmax cross-entropy or sampled softmax. Index 0
(padding / unknown) is masked to ``MASKED_SCORE``. Padded history positions are zeroed and masked.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from . import encoders, features
from .config import ModelConfig
from .features import MASKED_SCORE
from .layers import ConstantLookup, DotProductScores, GenreMean, SuccessorScores
from .personal import PersonalState, StateSummary, state_size
from .vocabulary import Vocabulary

# Validation input (not a model input): each example's already-seen items as vocabulary indices, 0-padded.
SEEN_INDEX = features.SEEN_INDEX
SUCCESSOR_SCORES = "successor_scores"  # the layer of the successor table's scores (absent when off)
PERSONAL_STATE = "personal_state"  # the layer of the per-user state (absent when off)
VALUES_PER_CATEGORY = 3  # values of one categorical feature an item contributes (its first three)


def model_inputs(config: ModelConfig) -> Dict[str, keras.Input]:
    inputs = {features.CONTEXT_INDEX: keras.Input(shape=(config.history_length,), dtype=tf.int32,
                                                  name=features.CONTEXT_INDEX)}
    if config.use_ratings:
        inputs[features.CONTEXT_RATING] = keras.Input(shape=(config.history_length,), dtype=tf.float32,
                                                      name=features.CONTEXT_RATING)
    if config.personal_history:
        inputs[features.EARLIER_INDEX] = keras.Input(shape=(config.personal_history,), dtype=tf.int32,
                                                     name=features.EARLIER_INDEX)
    return inputs


class Recommender(NamedTuple):
    """The serving model and, sharing its weights, the training view with a query at every position."""

    model: keras.Model  # inputs -> scores [B, V] (query at the most recent position)
    sequence: keras.Model  # inputs -> (queries [B, N, d], item index [B, N] oldest first)
    # The device's view of a model with a per-user state (modules/personal.py; None without one): the context
    # inputs -> the query at the most recent position without the state [B, d], and a user state [B, d + 1] ->
    # what the state adds to that query [B, d] (zero for a zero state). Also ``model.personal_view``.
    device_query: Optional[keras.Model] = None
    state_term: Optional[keras.Model] = None


class _Untracked:
    """Holds a model on another model without Keras tracking it as a sub-layer (its weights are the model's)."""

    def __init__(self, value):
        self.value = value


def personal_view(model: keras.Model) -> Optional[Tuple[keras.Model, keras.Model]]:
    """``(device_query, state_term)`` of a model with a per-user state (``Recommender``), or None without one."""
    holder = getattr(model, "personal_view", None)
    return holder.value if holder is not None else None


def personal_state_layer(model: keras.Model) -> Optional[PersonalState]:
    """The model's ``PersonalState`` layer, or None (a model without a per-user state)."""
    names = {layer.name for layer in model.layers}
    return model.get_layer(PERSONAL_STATE) if PERSONAL_STATE in names else None


def build_recommender(config: ModelConfig, vocab: Vocabulary,
                      successor_table: Optional[np.ndarray] = None) -> Recommender:
    """Builds the model on ``{context_index: int32[B, N] (, context_rating)}``.

    The inputs are most-recent-first and right-padded; the model reverses them to the oldest-first,
    left-padded layout its causal encoders read. Indices outside ``0..V-1`` are clipped to padding.
    ``successor_table``: the packed ``[V, config.successors]`` table (``successors.successor_table``; None:
    empty, as before training), scored in the layer ``successor_scores`` when ``config.successors`` > 0.
    """
    config = config.derive_from_data(vocab.size - 1, vocab.training_events)[0]  # the settings left to the data (fit resolved them already)
    keras.utils.set_random_seed(config.seed)
    d = config.embedding_dim
    inputs = model_inputs(config)
    size = vocab.size
    def oldest_first(i):
        reversed_index = tf.reverse(i, [1])
        return tf.where((reversed_index > 0) & (reversed_index < size), reversed_index, tf.zeros_like(i))

    index = keras.layers.Lambda(oldest_first, name="oldest_first")(inputs[features.CONTEXT_INDEX])
    mask = keras.layers.Lambda(lambda i: tf.not_equal(i, features.PADDING_ID), name="padding_mask")(index)
    item_embedding = keras.layers.Embedding(vocab.size, d, name="context_embedding")
    x = item_embedding(index)
    categorical = [name for name in sorted(vocab.categories) if vocab.categories[name]]
    label_table = None
    if config.use_item_categories:
        for name in categorical:
            table = vocab.category_table(name, VALUES_PER_CATEGORY)
            label_table = table if label_table is None else label_table
            ids = ConstantLookup(table, name=f"category_lookup_{name}")(index)  # [B, N, G]
            vectors = keras.layers.Embedding(len(vocab.categories[name]) + 1, d,
                                             name=f"category_embedding_{name}")(ids)
            x = x + GenreMean(name=f"category_mean_{name}")(vectors, ids)
    if config.use_item_numbers:
        for name in sorted(vocab.boundaries):
            buckets = ConstantLookup(vocab.bucket_table(name), name=f"bucket_lookup_{name}")(index)
            x = x + keras.layers.Embedding(vocab.buckets(name), d, name=f"bucket_embedding_{name}")(buckets)
    if config.use_ratings:
        rating = keras.layers.Lambda(lambda r: tf.reverse(r, [1])[..., tf.newaxis] / 5.0, name="rating_scale")(
            inputs[features.CONTEXT_RATING])
        x = x + keras.layers.Dense(d, name="rating_projection")(rating)
    x = keras.layers.Dropout(config.dropout, name="embedding_dropout")(x)
    x = keras.layers.Lambda(lambda t: t[0] * tf.cast(t[1], t[0].dtype)[..., tf.newaxis],
                            name="zero_padding")([x, mask])
    # [B, N, h]: the vector at position i summarises items 0..i only (causal), so one pass gives a training
    # query at every position, and the last one (the most recent item) is the serving query.
    encoded = encoders.get(config.encoder).encode(config, x, mask)
    head = [keras.layers.Dense(d, activation="relu", name=f"hidden_{i}") for i in range(config.hidden_layers)]
    head.append(keras.layers.Dense(d, name="query"))

    def query(t):
        for layer in head:
            t = layer(t)
        return t

    last = keras.layers.Lambda(lambda t: t[:, -1, :], name="most_recent_position")(encoded)
    queries, last_query, views = query(encoded), query(last), (None, None)
    if config.personal_history:
        # The query reads the user's state through a projection without bias: a zero state adds exactly 0.
        personal = PersonalState(item_embedding, vocab.size, config.personal_decay, config.personal_dropout,
                                 name=PERSONAL_STATE)
        projection = keras.layers.Dense(d, use_bias=False, name="personal_projection")
        summaries = personal([inputs[features.EARLIER_INDEX], index])  # [B, N, d]
        queries = keras.layers.Add(name="personal_queries")([queries, projection(summaries)])
        recent_summary = keras.layers.Lambda(lambda t: t[:, -1, :], name="personal_most_recent")(summaries)
        context_inputs = {k: v for k, v in inputs.items() if k != features.EARLIER_INDEX}
        device_query = keras.Model(context_inputs, last_query, name=f"{config.encoder}_device_query")
        last_query = keras.layers.Add(name="personal_query")([last_query, projection(recent_summary)])
        state = keras.Input(shape=(state_size(d),), dtype=tf.float32, name=features.USER_STATE)
        state_term = keras.Model(state, projection(StateSummary(personal, name="personal_summary")(state)),
                                 name="personal_state_term")
        views = (device_query, state_term)
    with_labels = config.label_categories and label_table is not None
    scores = DotProductScores(vocab.size, d, label_table if with_labels else None,
                              len(vocab.categories[categorical[0]]) if with_labels else 0,
                              item_embedding if config.tie_embeddings else None, name="scores")(last_query)
    if config.successors:
        if successor_table is None:
            successor_table = np.zeros((vocab.size, config.successors), np.int32)
        if tuple(np.shape(successor_table)) != (vocab.size, config.successors):
            raise ValueError(f"the successor table is {np.shape(successor_table)}, the model needs "
                             f"{(vocab.size, config.successors)}")
        successor_scores = SuccessorScores(successor_table, vocab.size,
                                           min(config.successor_recent, config.history_length),
                                           name=SUCCESSOR_SCORES)
        scores = keras.layers.Add(name="scores_with_successors")([scores, successor_scores(index)])
    model = keras.Model(inputs, scores, name=f"{config.encoder}_recommender")
    sequence = keras.Model(inputs, [queries, index], name=f"{config.encoder}_sequence_queries")
    model.personal_view = _Untracked(views if config.personal_history else None)
    return Recommender(model, sequence, *views)


def build_model(config: ModelConfig, vocab: Vocabulary, successor_table: Optional[np.ndarray] = None
                ) -> keras.Model:
    """The serving model: inputs -> scores over vocabulary indices ``[B, V]`` (index 0 masked)."""
    return build_recommender(config, vocab, successor_table).model


def successor_layer(model: keras.Model):
    """The model's ``SuccessorScores`` layer, or None (a model without a successor table)."""
    names = {layer.name for layer in model.layers}
    return model.get_layer(SUCCESSOR_SCORES) if SUCCESSOR_SCORES in names else None


def exclude(scores, index):
    """``scores`` [B, V] with the vocabulary indices ``index`` [B, S] of each row set to ``MASKED_SCORE``
    (index 0, padding, is masked already)."""
    where = tf.where(index > features.PADDING_ID)
    columns = tf.cast(tf.gather_nd(index, where), tf.int64)
    coordinates = tf.stack([where[:, 0], columns], axis=1)
    return tf.tensor_scatter_nd_update(scores, coordinates,
                                       tf.fill([tf.shape(coordinates)[0]], tf.constant(MASKED_SCORE, scores.dtype)))


def exclude_seen(scores, context_index, seen_index=None):
    """``scores`` [B, V] with each row's history items (``context_index``) and, when given, its other
    already-seen items (``seen_index``), both vocabulary indices, masked: the ranking that the Trainer's
    validation and the Evaluator's signature score."""
    vocabulary_size = tf.shape(scores)[1]
    index = context_index if seen_index is None else tf.concat([context_index, seen_index], axis=1)
    index = tf.cast(index, tf.int32)
    return exclude(scores, tf.where(index < vocabulary_size, index, tf.zeros_like(index)))
