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

import os
from typing import Dict, NamedTuple, Optional

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from . import features  # noqa: E402
from .config import ModelConfig  # noqa: E402,F401  (re-exported)
from .vocabulary import Vocabulary  # noqa: E402

MASKED_SCORE = -1e9
# Validation input (not a model input): each example's already-seen movies as vocabulary indices, 0-padded.
SEEN_INDEX = "seen_index"
YEAR_BUCKET_START, YEAR_BUCKET_SIZE, YEAR_BUCKETS = 1900, 5, 26  # 1900-1904 .. 2025+; bucket 0 = unknown


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

    def __init__(self, table: np.ndarray, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self._shape = tuple(int(d) for d in np.shape(table))
        self._table_dtype = narrowest_int_dtype(table)
        self._table = np.asarray(table).astype(self._table_dtype)
        self.table = self.add_weight(name="table", shape=self._shape, dtype=tf.as_dtype(self._table_dtype),
                                     trainable=False, initializer=keras.initializers.Constant(self._table))

    def lookup(self, index):
        values = tf.gather(self.table, index)
        return values if self._table_dtype == np.int32 else tf.cast(values, tf.int32)

    def call(self, index):
        return self.lookup(index)


class IdToIndex(ConstantLookup):
    """Maps raw movie ids to vocabulary indices; unknown, negative and padding ids map to 0."""

    def call(self, ids):
        ids = tf.cast(ids, tf.int32)
        in_range = tf.logical_and(ids >= 0, ids < self._shape[0])
        return self.lookup(tf.where(in_range, ids, tf.zeros_like(ids)))


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


def _encode(config: ModelConfig, x, mask):
    """Causal encoder over the oldest-first, left-padded history.

    ``x``: [B, N, d] activity embeddings (padding zeroed), ``mask``: [B, N]. Returns [B, N, h]: the vector
    at position i summarises items 0..i only, so one pass gives a training query at every position, and
    the last position (the most recent item) is the serving query.
    """
    if config.encoder == "bow":
        return PrefixMean(name="bow_encoder")(x, mask)
    if config.encoder == "cnn":
        for i, filters in enumerate(config.cnn_filters):
            x = keras.layers.Conv1D(filters, min(config.cnn_kernel_size, config.history_length), padding="causal",
                                    activation="relu", name=f"conv_{i}")(x)
        return PrefixMax(name="cnn_max_pool")(x, mask)
    if config.encoder == "lstm":
        # Padding (on the left) is read first. Unrolled over the fixed N: converts to plain builtin ops that
        # match the SavedModel to ~1e-7 (the fused UNIDIRECTIONAL_SEQUENCE_LSTM drifted by 1-2 % in score).
        return keras.layers.LSTM(config.embedding_dim, return_sequences=True, unroll=True,
                                 name="lstm_encoder")(x)
    if config.encoder == "transformer":  # SASRec-style: learned positions, causal pre-norm blocks
        x = PositionEmbedding(name="positions")(x)
        attention_mask = CausalPaddingMask(name="attention_mask")(mask)
        d = config.embedding_dim
        for b in range(config.transformer_blocks):
            normed = keras.layers.LayerNormalization(name=f"norm_a{b}")(x)
            attended = keras.layers.MultiHeadAttention(
                config.transformer_heads, d // config.transformer_heads, dropout=config.dropout,
                name=f"attention_{b}")(normed, x, attention_mask=attention_mask)
            x = x + keras.layers.Dropout(config.dropout)(attended)
            hidden = keras.layers.Dense(2 * d, activation="relu", name=f"ffn_{b}_in")(
                keras.layers.LayerNormalization(name=f"norm_f{b}")(x))
            x = x + keras.layers.Dropout(config.dropout)(keras.layers.Dense(d, name=f"ffn_{b}_out")(hidden))
        return keras.layers.LayerNormalization(name="norm_out")(x)
    raise ValueError(f"unknown encoder {config.encoder!r}")


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
        mask[features.PADDING_ID] = MASKED_SCORE
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
    encoded = _encode(config, x, mask)  # [B, N, h]
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


class RecommenderTrainer(keras.Model):
    """Trains a recommender; validates with the full scores of the serving model.

    ``loss_positions="all"``: every position of every history window is a training query whose target is
    the next item (the window's label for the last position), as SASRec trains; padding positions and
    targets outside the vocabulary are skipped. ``"last"``: only the window's label.

    ``softmax="sampled"``: negatives from a unigram sampler over the training counts, and
    ``tf.nn.sampled_softmax_loss`` subtracts ``log Q(item)`` from every logit, so popular items are not
    over-penalised. Training and the exported model share the weights of ``model``.
    """

    def __init__(self, recommender: Recommender, config: ModelConfig, counts: Optional[np.ndarray] = None):
        super().__init__()
        self.model = recommender.model
        self.sequence = recommender.sequence
        self.scores_layer = recommender.model.get_layer("scores")
        self._all_positions = config.loss_at_every_position()
        self._sampled = config.softmax == "sampled"
        if self._sampled:
            if counts is None:
                raise ValueError("sampled softmax needs the training counts")
            self._unigrams = [float(c) for c in counts]
            self._num_sampled = int(min(config.num_sampled, int(np.count_nonzero(counts))))
        self._loss = keras.metrics.Mean(name="loss")

    def call(self, inputs, training=False):
        return self.model(inputs, training=training)

    def _queries_and_targets(self, inputs, labels):
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
        queries, index = self.sequence(inputs, training=True)
        if self._all_positions:
            targets = tf.concat([index[:, 1:], labels[:, tf.newaxis]], axis=1)
            valid = tf.logical_and(index > 0, targets > 0)
            return tf.boolean_mask(queries, valid), tf.boolean_mask(targets, valid)
        queries, valid = queries[:, -1], labels > 0
        return tf.boolean_mask(queries, valid), tf.boolean_mask(labels, valid)

    def train_step(self, data):
        inputs, labels = data
        with tf.GradientTape() as tape:
            queries, targets = self._queries_and_targets(inputs, labels)
            if self._sampled:
                targets = tf.cast(targets[:, tf.newaxis], tf.int64)
                sampled = tf.random.fixed_unigram_candidate_sampler(
                    true_classes=targets, num_true=1, num_sampled=self._num_sampled, unique=True,
                    range_max=len(self._unigrams), unigrams=self._unigrams)
                losses = tf.nn.sampled_softmax_loss(
                    self.scores_layer.label_weights(), self.scores_layer.label_bias, targets, queries,
                    self._num_sampled, len(self._unigrams), sampled_values=sampled, remove_accidental_hits=True)
            else:
                losses = tf.nn.sparse_softmax_cross_entropy_with_logits(targets, self.scores_layer(queries))
            loss = tf.reduce_mean(losses)
        variables = self.model.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self._loss.update_state(loss)
        return {"loss": self._loss.result()}

    def test_step(self, data):
        """Validation as the Evaluator scores: the history items (and ``SEEN_INDEX``, when given) are
        excluded from the ranking."""
        inputs, labels = data
        inputs = dict(inputs)
        seen = inputs.pop(SEEN_INDEX, None)
        scores = exclude_seen(self.model, self.model(inputs, training=False), inputs[features.CONTEXT_MOVIE_ID], seen)
        self.compiled_loss(labels, scores)
        self.compiled_metrics.update_state(labels, scores)
        return {m.name: m.result() for m in self.metrics}

    @property
    def metrics(self):
        return [self._loss] + super().metrics


def compile_model(model: keras.Model, config: ModelConfig) -> keras.Model:
    from .ranking_metrics import NdcgAtK, RecallAtK
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[RecallAtK(10), NdcgAtK(10)])
    return model
