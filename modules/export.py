"""Exports a trained model as a SavedModel with three signatures.

* ``serving_default`` takes serialized *windowed* tf.Examples (string keys), maps them with the model's own
  vocabulary and returns ``scores`` ``[batch, 1 + V]``: column 0 the label's score, then the scores over the
  vocabulary indices with padding, the label and the items the user has already seen set to ``MASKED_SCORE``
  (a label outside the vocabulary scores ``MASKED_SCORE``: a miss). TFMA uses it with the constant
  ``label_column`` (0), so models of different vocabularies (the candidate and the serving baseline of another
  span) are compared on the same examples.
* ``serving_validated``: the same with the successor table the eval split validated (the training events'),
  for the blessing Evaluator on the eval split (``features.VALIDATED_SIGNATURE``).
* ``recommend`` is the on-device function: ``context_index`` int32[N] (vocabulary indices, most recent first,
  padded with 0; plus ``context_rating`` float32[N] when the model uses ratings) -> ``top_ids`` int32[K]
  (vocabulary indices, never 0 or a history item) and ``top_scores`` float32[K]; ``vocabulary.json`` maps
  indices to keys. K is capped at the number of items minus N. Batch is fixed at 1 so every encoder converts
  to builtin TFLite ops.
* With a per-user state (``ModelConfig.personal_history`` > 0, ``modules/personal.py``): ``update_state``
  (``user_state`` float32[d + 1], ``item_index`` int32 -> ``user_state``) folds one picked item into the state
  the app keeps, and ``recommend_personal`` is ``recommend`` with a ``user_state`` input (a zero state: exactly
  ``recommend``'s output). ``serving_default`` and ``serving_validated`` then fold each example's earlier items
  (``features.EARLIER_ITEM``) into the state, so the Evaluators score the model as a phone with the user's
  history runs it.
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf
import tf_keras as keras

from . import features, warm_start
from .config import ModelConfig
# The signature, tensor and folder names live in ``features`` (TF-free); re-exported for the exporter's users.
from .features import (ASSETS_EXTRA, MASKED_SCORE, RECOMMEND_SIGNATURE, SCORES, SERVING_SIGNATURE,  # noqa: F401
                       TOP_IDS, TOP_SCORES, VALIDATED_SIGNATURE)
from .model import exclude, exclude_seen, personal_state_layer, personal_view, successor_layer
from .personal import state_size
from .vocabulary import Vocabulary

MODEL_CONFIG_FILE = "model_config.json"
# The settings training derived from the data, and how (``{setting: why}``; the pusher records them in MLMD).
DERIVED_FILE = "derived_settings.json"


class KeyLookup:
    """Maps item keys to vocabulary indices (1..V; unknown keys to ``PADDING_ID``) with constants only.

    A ``tf.lookup`` hash table would be a resource of the whole SavedModel, and the TFLite converter initialises
    every table even for the table-free ``recommend`` signature (it then needs the Flex ops ``HashTableV2`` and
    ``LookupTableImportV2``). Instead: the keys' 64-bit fingerprints, sorted; a binary search; and a comparison
    of the key found with the key asked for, so a fingerprint collision can never map a key to another item.
    """

    def __init__(self, keys):
        keys = [key.encode("utf-8") for key in keys] or [b""]
        fingerprints = self._fingerprint(tf.constant(keys)).numpy()
        order = np.argsort(fingerprints, kind="stable")
        self._fingerprints = tf.constant(fingerprints[order])
        self._keys = tf.constant([keys[i] for i in order])
        self._indices = tf.constant(order.astype(np.int32) + 1)

    @staticmethod
    def _fingerprint(keys):
        return tf.strings.to_hash_bucket_fast(keys, np.iinfo(np.int64).max)

    def __call__(self, keys):
        flat = tf.reshape(keys, [-1])
        fingerprint = self._fingerprint(flat)
        position = tf.minimum(tf.searchsorted(self._fingerprints, fingerprint),
                              tf.size(self._fingerprints, out_type=tf.int32) - 1)
        found = (tf.gather(self._fingerprints, position) == fingerprint) & (tf.gather(self._keys, position) == flat)
        found &= flat != ""
        index = tf.where(found, tf.gather(self._indices, position), features.PADDING_ID)
        return tf.reshape(index, tf.shape(keys))


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
        view = personal_view(model)
        self._personal = personal_state_layer(model)
        self._state_size = state_size(config.embedding_dim)
        if view is None:
            self._query_model, self._state_term = keras.Model(model.inputs, model.get_layer("scores").input), None
        else:
            self._query_model, self._state_term = view
            if not float(self._personal.strength.numpy()):
                self._state_term = None  # the eval split chose no state (personal.STRENGTHS): no state signatures
        self._network_model = keras.Model(model.inputs, model.get_layer("scores").output)  # without the table
        self._inputs = [features.CONTEXT_INDEX] + ([features.CONTEXT_RATING] if config.use_ratings else [])
        spec = features.windowed_feature_spec(config.history_length, earlier_length=config.personal_history)
        self._feature_spec = {k: spec[k] for k in (features.CONTEXT_ITEM, features.CONTEXT_RATING,
                                                   features.SEEN_ITEMS, features.LABEL_ITEM,
                                                   features.EARLIER_ITEM) if k in spec}
        self._key_to_index = KeyLookup(vocab.keys())

    @property
    def top_k(self) -> int:
        return self._top_k

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, serialized):
        return self._serve(serialized, validated=False)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_validated(self, serialized):
        """``serve_examples`` with the successor table of the training events (``VALIDATED_SIGNATURE``)."""
        return self._serve(serialized, validated=True)

    def _scores(self, inputs, validated: bool):
        successors = successor_layer(self.model)
        if not validated or successors is None:
            return self.model(inputs, training=False)
        context = inputs[features.CONTEXT_INDEX]
        return self._network_model(inputs, training=False) + successors.dense(context[:, :successors.recent],
                                                                              validated=True)

    def _serve(self, serialized, validated: bool):
        parsed = tf.io.parse_example(serialized, self._feature_spec)
        context = self._key_to_index(parsed[features.CONTEXT_ITEM])
        inputs = {features.CONTEXT_INDEX: context}
        if features.CONTEXT_RATING in self._inputs:
            inputs[features.CONTEXT_RATING] = parsed[features.CONTEXT_RATING]
        if features.EARLIER_ITEM in parsed:
            inputs[features.EARLIER_INDEX] = self._key_to_index(parsed[features.EARLIER_ITEM])
        # History and seen items are masked (as the Trainer validates); unknown items are index 0, masked
        # already. Context items are always excluded, even where seen_items is empty (train examples).
        seen = self._key_to_index(tf.sparse.to_dense(parsed[features.SEEN_ITEMS], default_value=""))
        label = self._key_to_index(parsed[features.LABEL_ITEM])
        scores = exclude_seen(self._scores(inputs, validated), context, seen)
        label_score = tf.where(label > features.PADDING_ID, tf.gather(scores, label, axis=1, batch_dims=1),
                               tf.constant(MASKED_SCORE, scores.dtype))
        others = exclude(scores, label[:, tf.newaxis])
        return {SCORES: tf.concat([label_score[:, tf.newaxis], others], axis=1)}

    @property
    def personal(self) -> bool:
        return self._state_term is not None

    @tf.function
    def recommend(self, context_index, context_rating=None):
        return self._recommend(context_index, context_rating, None)

    @tf.function
    def recommend_personal(self, context_index, user_state, context_rating=None):
        return self._recommend(context_index, context_rating, user_state)

    @tf.function
    def update_state(self, user_state, item_index):
        return {features.USER_STATE: self._personal.update(user_state, item_index)}

    def _recommend(self, context_index, context_rating, user_state):
        context = tf.reshape(context_index, [1, self._history_length])
        inputs = {features.CONTEXT_INDEX: context}
        if context_rating is not None:
            inputs[features.CONTEXT_RATING] = tf.reshape(context_rating, [1, self._history_length])
        query = self._query_model(inputs, training=False)
        # Scores over the vocabulary without the model's -1e9 padding mask; the padding index and the history
        # items are set just below the lowest score (by 1/64 of the score range) and the padding index is then
        # dropped. A narrow range keeps full-integer quantization exact enough (a -1e9 entry would take the
        # whole int8 range), and a scatter of N entries is far cheaper than a [N, V] comparison (docs/results.md,
        # "Figures behind code comments").
        scores_layer = self.model.get_layer("scores")
        scores = scores_layer.unmasked(query)[0]
        if user_state is not None:
            # The state's term scored on its own and added to the scores, not to the query: the same sum as the
            # trained model's (query + term) . labels, and for a zero state an exact + 0, so recommend_personal
            # then returns recommend's output bit for bit (added to the query, the converter's fusions differed
            # in the last bit).
            term = self._state_term(tf.reshape(user_state, [1, self._state_size]), training=False)
            scores += tf.matmul(term, scores_layer.label_weights(), transpose_b=True)[0]
        index = context[0]
        index = tf.where((index > 0) & (index < self._vocabulary_size), index, tf.zeros_like(index))
        successors = successor_layer(self.model)
        if successors is not None:
            scores += successors.dense(index[tf.newaxis, :successors.recent])[0]
        low, high = tf.reduce_min(scores), tf.reduce_max(scores)
        floor = tf.fill([self._history_length], low - (high - low) / 64.0)
        scores = tf.tensor_scatter_nd_update(scores, index[:, tf.newaxis], floor)[1:]
        top_scores, top_index = tf.math.top_k(scores, k=self._top_k)
        return {TOP_IDS: top_index + 1, TOP_SCORES: top_scores}


def export_saved_model(model: keras.Model, vocab: Vocabulary, config: ModelConfig, export_dir: str) -> str:
    """Writes the SavedModel (plus the vocabulary and config in ``assets.extra``, with the settings left to the
    data resolved) to ``export_dir``."""
    config = config.derive_from_data(vocab.size - 1, vocab.training_events)[0]
    module = RecommenderModule(model, vocab, config)
    # The recommend signature is traced with a fixed length N so TFLite sees static shapes.
    specs = [tf.TensorSpec([config.history_length], tf.int32, name=features.CONTEXT_INDEX)]
    if config.use_ratings:
        specs.append(tf.TensorSpec([config.history_length], tf.float32, name=features.CONTEXT_RATING))
    signatures = {
        SERVING_SIGNATURE: module.serve_examples.get_concrete_function(),
        VALIDATED_SIGNATURE: module.serve_validated.get_concrete_function(),
        RECOMMEND_SIGNATURE: module.recommend.get_concrete_function(*specs),
    }
    if module.personal:
        state = tf.TensorSpec([state_size(config.embedding_dim)], tf.float32, name=features.USER_STATE)
        signatures[features.RECOMMEND_PERSONAL_SIGNATURE] = module.recommend_personal.get_concrete_function(
            specs[0], state, *specs[1:])
        signatures[features.UPDATE_STATE_SIGNATURE] = module.update_state.get_concrete_function(
            state, tf.TensorSpec([], tf.int32, name=features.ITEM_INDEX))
    tf.saved_model.save(module, export_dir, signatures=signatures)
    extra = os.path.join(export_dir, ASSETS_EXTRA)
    vocab.save(extra)
    warm_start.save_weights(model, extra)  # a later span's Trainer can start from these
    with tf.io.gfile.GFile(os.path.join(extra, MODEL_CONFIG_FILE), "w") as f:
        f.write(config.to_json())
    with tf.io.gfile.GFile(os.path.join(extra, DERIVED_FILE), "w") as f:
        f.write(json.dumps(getattr(model, "training_summary", {}).get("derived", {}), indent=2, sort_keys=True))
    return export_dir


def has_personal_state(export_dir: str) -> bool:
    """Whether the exported model carries the per-user state's signatures (a model trained with one whose eval
    split chose strength 0 does not)."""
    return features.UPDATE_STATE_SIGNATURE in tf.saved_model.load(export_dir).signatures


def load_derived_settings(export_dir: str) -> dict:
    """``{setting: why}`` of the exported model's settings derived from the data (empty if none recorded)."""
    path = os.path.join(export_dir, ASSETS_EXTRA, DERIVED_FILE)
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def load_export_config(export_dir: str) -> ModelConfig:
    with tf.io.gfile.GFile(os.path.join(export_dir, ASSETS_EXTRA, MODEL_CONFIG_FILE)) as f:
        return ModelConfig.from_dict(json.load(f))
