"""The two-tower next-movie model: a context encoder over the recent history, dotted with label embeddings.

Each history item becomes an *activity embedding*: its id embedding plus (switchable) the mean embedding of
its genres, an embedding of its release-year bucket and a projection of the user's rating. Genres and year
are looked up from the movie index with constant tables, so the deployed model needs only ids (and ratings
when ``use_ratings``). The model reverses the most-recent-first history to oldest first, and a causal encoder
(bag-of-words prefix mean, causal CNN + prefix max-pool, LSTM, or SASRec-style Transformer) gives a vector at
every position that depends on that position and older ones only. A small MLP maps it to a query, and

    scores = query · label_embedding[index] + bias[index]

over the whole vocabulary. Serving uses the query at the most recent position; training can use every
position (loss_positions="all", as SASRec), with full softmax cross-entropy or sampled softmax. Index 0
(padding / unknown) is masked to ``MASKED_SCORE``. Padded history positions are zeroed and masked.
"""

from __future__ import annotations

from typing import Dict, NamedTuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from . import encoders, features
from .config import ModelConfig
from .features import MASKED_SCORE
from .layers import ConstantLookup, DotProductScores, GenreMean, IdToIndex
from .vocabulary import Vocabulary

# Validation input (not a model input): each example's already-seen movies as vocabulary indices, 0-padded.
SEEN_INDEX = "seen_index"
YEAR_BUCKET_START, YEAR_BUCKET_SIZE, YEAR_BUCKETS = 1900, 5, 26  # 1900-1904 .. 2025+; bucket 0 = unknown


def genre_table(vocab: Vocabulary, genres_per_movie: int = 3) -> np.ndarray:
    """``[V, G]`` genre ids (1-based in ``vocab.genres`` order, 0 = none) per vocabulary index."""
    index = {g: i for i, g in enumerate(vocab.genres, start=1)}
    table = np.zeros((vocab.size, genres_per_movie), np.int32)
    for row, movie in enumerate(vocab.movies, start=1):
        ids = [index[g] for g in movie.genres if g in index][:genres_per_movie]
        table[row, :len(ids)] = ids
    return table


def year_bucket_table(vocab: Vocabulary) -> np.ndarray:
    table = np.zeros(vocab.size, np.int32)
    for row, movie in enumerate(vocab.movies, start=1):
        if movie.year:
            table[row] = 1 + min(YEAR_BUCKETS - 2, max(0, (movie.year - YEAR_BUCKET_START) // YEAR_BUCKET_SIZE))
    return table


def model_inputs(config: ModelConfig) -> Dict[str, keras.Input]:
    inputs = {features.CONTEXT_MOVIE_ID: keras.Input(shape=(config.history_length,), dtype=tf.int32,
                                                     name=features.CONTEXT_MOVIE_ID)}
    if config.use_ratings:
        inputs[features.CONTEXT_MOVIE_RATING] = keras.Input(shape=(config.history_length,), dtype=tf.float32,
                                                            name=features.CONTEXT_MOVIE_RATING)
    return inputs


class Recommender(NamedTuple):
    """The serving model and, sharing its weights, the training view with a query at every position."""

    model: keras.Model  # inputs -> scores [B, V] (query at the most recent position)
    sequence: keras.Model  # inputs -> (queries [B, N, d], item index [B, N] oldest first)


def build_recommender(config: ModelConfig, vocab: Vocabulary) -> Recommender:
    """Builds the model on ``{context_movie_id: int32[B, N] (, context_movie_rating)}``.

    The inputs are most-recent-first and right-padded; the model reverses them to the oldest-first,
    left-padded layout its causal encoders read.
    """
    keras.utils.set_random_seed(config.seed)
    d = config.embedding_dim
    inputs = model_inputs(config)
    index = IdToIndex(vocab.id_to_index(), name="id_to_index")(inputs[features.CONTEXT_MOVIE_ID])
    index = keras.layers.Lambda(lambda i: tf.reverse(i, [1]), name="oldest_first")(index)
    mask = keras.layers.Lambda(lambda i: tf.not_equal(i, features.PADDING_ID), name="padding_mask")(index)
    item_embedding = keras.layers.Embedding(vocab.size, d, name="context_embedding")
    x = item_embedding(index)
    genres = genre_table(vocab)
    if config.use_genres and vocab.genres:
        genre_ids = ConstantLookup(genres, name="genre_lookup")(index)  # [B, N, G]
        genre_vectors = keras.layers.Embedding(len(vocab.genres) + 1, d, name="genre_embedding")(genre_ids)
        x = x + GenreMean(name="genre_mean")(genre_vectors, genre_ids)
    if config.use_years:
        years = ConstantLookup(year_bucket_table(vocab), name="year_lookup")(index)
        x = x + keras.layers.Embedding(YEAR_BUCKETS, d, name="year_embedding")(years)
    if config.use_ratings:
        rating = keras.layers.Lambda(lambda r: tf.reverse(r, [1])[..., tf.newaxis] / 5.0, name="rating_scale")(
            inputs[features.CONTEXT_MOVIE_RATING])
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
    scores = DotProductScores(vocab.size, d, genres if config.label_genres and vocab.genres else None,
                              len(vocab.genres), item_embedding if config.tie_embeddings else None,
                              name="scores")(query(last))
    model = keras.Model(inputs, scores, name=f"{config.encoder}_recommender")
    sequence = keras.Model(inputs, [query(encoded), index], name=f"{config.encoder}_sequence_queries")
    return Recommender(model, sequence)


def build_model(config: ModelConfig, vocab: Vocabulary) -> keras.Model:
    """The serving model: inputs -> scores over vocabulary indices ``[B, V]`` (index 0 masked)."""
    return build_recommender(config, vocab).model


def exclude(scores, index):
    """``scores`` [B, V] with the vocabulary indices ``index`` [B, S] of each row set to ``MASKED_SCORE``
    (index 0, padding, is masked already)."""
    where = tf.where(index > features.PADDING_ID)
    columns = tf.cast(tf.gather_nd(index, where), tf.int64)
    coordinates = tf.stack([where[:, 0], columns], axis=1)
    return tf.tensor_scatter_nd_update(scores, coordinates,
                                       tf.fill([tf.shape(coordinates)[0]], tf.constant(MASKED_SCORE, scores.dtype)))


def exclude_seen(model: keras.Model, scores, context_ids, seen_index=None):
    """``scores`` [B, V] of ``model`` with each row's history items (``context_ids``, raw ids) and, when given,
    its other already-seen movies (``seen_index``, vocabulary indices) masked: the ranking that the Trainer's
    validation and the Evaluator's signature score."""
    history = model.get_layer("id_to_index")(context_ids)
    return exclude(scores, history if seen_index is None else tf.concat([history, seen_index], axis=1))
