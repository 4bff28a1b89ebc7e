"""Exports a trained model as a SavedModel with two signatures.

* ``serving_default`` takes serialized *transformed* tf.Examples (vocabulary indices) and returns ``scores``
  over the vocabulary indices (``[batch, V]``) with padding and the items the user has already seen set to
  ``MASKED_SCORE``. TFMA uses it with the ``label_index`` label.
* ``recommend`` is the on-device function: ``context_index`` int32[N] (vocabulary indices, most recent first,
  padded with 0; plus ``context_rating`` float32[N] when the model uses ratings) -> ``top_ids`` int32[K]
  (vocabulary indices, never 0 or a history item) and ``top_scores`` float32[K]; ``vocabulary.json`` maps
  indices to keys. K is capped at the number of items minus N. Batch is fixed at 1 so every encoder converts
  to builtin TFLite ops.
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
from .model import exclude_seen
from .vocabulary import Vocabulary

MODEL_CONFIG_FILE = "model_config.json"


class RecommenderModule(tf.Module):
    """Wraps the Keras model with the two serving functions."""

    def __init__(self, model: keras.Model, vocab: Vocabulary, config: ModelConfig):
        super().__init__()
        self.model = model
        self._history_length = config.history_length
        self._vocabulary_size = vocab.size
        # Never ask for more results than there are items outside any history, so that no padding or
        # history item can reach the top K.
        self._top_k = max(1, min(config.top_k, vocab.size - 1 - config.history_length))
        self._query_model = keras.Model(model.inputs, model.get_layer("scores").input)
        spec = features.transformed_feature_spec(config.history_length)
        self._inputs = [features.CONTEXT_INDEX] + ([features.CONTEXT_RATING] if config.use_ratings else [])
        self._feature_spec = {k: spec[k] for k in self._inputs + [features.SEEN_INDEX]}

    @property
    def top_k(self) -> int:
        return self._top_k

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, serialized):
        parsed = tf.io.parse_example(serialized, self._feature_spec)
        context = tf.cast(parsed[features.CONTEXT_INDEX], tf.int32)
        inputs = {features.CONTEXT_INDEX: context}
        if features.CONTEXT_RATING in self._inputs:
            inputs[features.CONTEXT_RATING] = parsed[features.CONTEXT_RATING]
        # History and seen items are masked (as the Trainer validates); unknown items are index 0, masked
        # already. Context items are always excluded, even where seen_index is empty (train examples).
        seen = tf.cast(tf.sparse.to_dense(parsed[features.SEEN_INDEX]), tf.int32)
        return {SCORES: exclude_seen(self.model(inputs, training=False), context, seen)}

    @tf.function
    def recommend(self, context_index, context_rating=None):
        context = tf.reshape(context_index, [1, self._history_length])
        inputs = {features.CONTEXT_INDEX: context}
        if context_rating is not None:
            inputs[features.CONTEXT_RATING] = tf.reshape(context_rating, [1, self._history_length])
        query = self._query_model(inputs, training=False)
        # Scores over the vocabulary without the model's -1e9 padding mask; the padding index and the history
        # items are set just below the lowest score (by 1/64 of the score range) and the padding index is then
        # dropped. A narrow range keeps full-integer quantization exact enough (a -1e9 entry would take the
        # whole int8 range), and a scatter of N entries costs ~5 us where a [N, V] comparison cost ~130 us.
        scores = self.model.get_layer("scores").unmasked(query)[0]
        index = context[0]
        index = tf.where((index > 0) & (index < self._vocabulary_size), index, tf.zeros_like(index))
        low, high = tf.reduce_min(scores), tf.reduce_max(scores)
        floor = tf.fill([self._history_length], low - (high - low) / 64.0)
        scores = tf.tensor_scatter_nd_update(scores, index[:, tf.newaxis], floor)[1:]
        top_scores, top_index = tf.math.top_k(scores, k=self._top_k)
        return {TOP_IDS: top_index + 1, TOP_SCORES: top_scores}


def export_saved_model(model: keras.Model, vocab: Vocabulary, config: ModelConfig, export_dir: str) -> str:
    """Writes the SavedModel (plus the vocabulary and config in ``assets.extra``) to ``export_dir``."""
    module = RecommenderModule(model, vocab, config)
    # The recommend signature is traced with a fixed length N so TFLite sees static shapes.
    specs = [tf.TensorSpec([config.history_length], tf.int32, name=features.CONTEXT_INDEX)]
    if config.use_ratings:
        specs.append(tf.TensorSpec([config.history_length], tf.float32, name=features.CONTEXT_RATING))
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
