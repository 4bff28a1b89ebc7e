"""Exports a trained model as a SavedModel with two signatures.

* ``serving_default`` takes serialized windowed tf.Examples and returns ``scores`` over *movie ids*
  (``[batch, max_movie_id + 1]``) with padding, movies unseen in training and movies the user has already seen
  set to ``MASKED_SCORE``. TFMA uses it, so its label is the raw ``label_movie_id``.
* ``recommend`` is the on-device function: ``context_movie_id`` int32[N] (most recent first, padded with 0;
  plus ``context_movie_rating`` float32[N] when the model uses ratings) ->
  ``top_ids`` int32[K] and ``top_scores`` float32[K], never the padding id, an unseen id or a history item
  (K is capped at the number of movies minus N).
  Batch is fixed at 1 so every encoder converts to builtin TFLite ops.
"""

from __future__ import annotations

import os

import tensorflow as tf
import tf_keras as keras

from . import features, warm_start
from .config import ModelConfig
# The signature, tensor and folder names live in ``features`` (TF-free); re-exported for the exporter's users.
from .features import (ASSETS_EXTRA, MASKED_SCORE, RECOMMEND_SIGNATURE, SCORES, SERVING_SIGNATURE,  # noqa: F401
                       TOP_IDS, TOP_SCORES)
from .layers import narrowest_int_dtype
from .model import exclude_seen
from .vocabulary import Vocabulary

MODEL_CONFIG_FILE = "model_config.json"


class RecommenderModule(tf.Module):
    """Wraps the Keras model with the two serving functions."""

    def __init__(self, model: keras.Model, vocab: Vocabulary, config: ModelConfig):
        super().__init__()
        self.model = model
        self._history_length = config.history_length
        # Never ask for more results than there are movies outside any history, so that no padding or
        # history item can reach the top K.
        self._top_k = max(1, min(config.top_k, vocab.size - 1 - config.history_length))
        self._query_model = keras.Model(model.inputs, model.get_layer("scores").input)
        index_to_id = vocab.index_to_id()
        self._index_to_id = tf.constant(index_to_id.astype(narrowest_int_dtype(index_to_id)))
        self._id_to_index = tf.constant(vocab.id_to_index(), tf.int32)
        spec = features.example_feature_spec(config.history_length)
        self._inputs = [features.CONTEXT_MOVIE_ID] + ([features.CONTEXT_MOVIE_RATING] if config.use_ratings else [])
        self._feature_spec = {k: spec[k] for k in self._inputs + [features.SEEN_MOVIE_IDS]}

    @property
    def top_k(self) -> int:
        return self._top_k

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, serialized):
        parsed = tf.io.parse_example(serialized, self._feature_spec)
        context = tf.cast(parsed[features.CONTEXT_MOVIE_ID], tf.int32)
        inputs = {features.CONTEXT_MOVIE_ID: context}
        if features.CONTEXT_MOVIE_RATING in self._inputs:
            inputs[features.CONTEXT_MOVIE_RATING] = parsed[features.CONTEXT_MOVIE_RATING]
        # History and seen movies are masked in vocabulary-index space (as the Trainer validates); ids outside
        # the vocabulary map to the padding index, which is masked already. Context ids are always excluded,
        # even where seen_movie_ids is absent (train examples).
        seen = self.model.get_layer("id_to_index")(tf.sparse.to_dense(parsed[features.SEEN_MOVIE_IDS]))
        index_scores = exclude_seen(self.model, self.model(inputs, training=False), context, seen)
        # Scores over movie ids: gather each id's index score; ids without an index are masked.
        id_scores = tf.gather(index_scores, self._id_to_index, axis=1)
        id_scores = tf.where(self._id_to_index[tf.newaxis, :] > 0, id_scores, MASKED_SCORE)
        return {SCORES: id_scores}

    @tf.function
    def recommend(self, context_movie_id, context_movie_rating=None):
        context = tf.reshape(context_movie_id, [1, self._history_length])
        inputs = {features.CONTEXT_MOVIE_ID: context}
        if context_movie_rating is not None:
            inputs[features.CONTEXT_MOVIE_RATING] = tf.reshape(context_movie_rating, [1, self._history_length])
        query = self._query_model(inputs, training=False)
        # Scores over the vocabulary without the model's -1e9 padding mask; the padding index and the history
        # items are set just below the lowest score (by 1/64 of the score range) and the padding index is then
        # dropped. A narrow range keeps full-integer quantization exact enough (a -1e9 entry would take the
        # whole int8 range), and a scatter of N entries costs ~5 us where a [N, V] comparison cost ~130 us.
        scores = self.model.get_layer("scores").unmasked(query)[0]
        index = self.model.get_layer("id_to_index")(context)[0]
        low, high = tf.reduce_min(scores), tf.reduce_max(scores)
        floor = tf.fill([self._history_length], low - (high - low) / 64.0)
        scores = tf.tensor_scatter_nd_update(scores, index[:, tf.newaxis], floor)[1:]
        top_scores, top_index = tf.math.top_k(scores, k=self._top_k)
        return {TOP_IDS: tf.cast(tf.gather(self._index_to_id, top_index + 1), tf.int32), TOP_SCORES: top_scores}


def export_saved_model(model: keras.Model, vocab: Vocabulary, config: ModelConfig, export_dir: str) -> str:
    """Writes the SavedModel (plus the vocabulary and config in ``assets.extra``) to ``export_dir``."""
    module = RecommenderModule(model, vocab, config)
    # The recommend signature is traced with a fixed length N so TFLite sees static shapes.
    specs = [tf.TensorSpec([config.history_length], tf.int32, name=features.CONTEXT_MOVIE_ID)]
    if config.use_ratings:
        specs.append(tf.TensorSpec([config.history_length], tf.float32, name=features.CONTEXT_MOVIE_RATING))
    recommend = module.recommend.get_concrete_function(*specs)
    tf.saved_model.save(module, export_dir, signatures={
        SERVING_SIGNATURE: module.serve_examples.get_concrete_function(),
        RECOMMEND_SIGNATURE: recommend,
    })
    extra = os.path.join(export_dir, ASSETS_EXTRA)
    vocab.save(extra)
    warm_start.save_weights(model, extra)  # a later span's Trainer can start from these
    with tf.io.gfile.GFile(os.path.join(extra, MODEL_CONFIG_FILE), "w") as f:
        f.write(config.to_json())
    return export_dir


def load_export_config(export_dir: str) -> ModelConfig:
    import json
    with tf.io.gfile.GFile(os.path.join(export_dir, ASSETS_EXTRA, MODEL_CONFIG_FILE)) as f:
        return ModelConfig.from_dict(json.load(f))
