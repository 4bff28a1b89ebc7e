"""tf.Transform ``preprocessing_fn`` for the stock TFX Transform component (analyse: the ``items`` split only).

Vocabularies computed from the ``items`` split (one record per training item, weighted by its training events,
``features.ITEMS_SPLIT``); every count below is a count of training events:

* ``items``: the item vocabulary, by descending count of training events, cut by ``min_item_count`` and
  ``max_items``; ``items_counts`` is the same with counts.
* ``item_facts``: (item, feature, value) facts of training items: titles, categorical values, numeric values.
* ``category_NAME``: the values of each categorical item feature; ``boundaries_NAME``: the quantile bucket
  boundaries of each numeric item feature.

Outputs are vocabulary indices, 0 being padding or unknown (index = vocabulary position + 1): the context,
the label, the already-seen items and (when windowed for a per-user state) the earlier items, plus the
context ratings. No TFX import (Trainer module rule).
"""

from __future__ import annotations

from . import features

ITEM_COUNTS_VOCABULARY = features.ITEM_VOCABULARY + "_counts"
MIN_ITEM_COUNT, MAX_ITEMS, CATEGORICAL_FEATURES = "min_item_count", "max_items", "categorical_features"
QUANTILE_EPSILON = 0.01


def _to_index(keys, vocabulary):
    """Keys -> vocabulary index + 1 (0: padding or a key outside the vocabulary); dense or sparse."""
    import tensorflow_transform as tft
    return tft.apply_vocabulary(keys, vocabulary, default_value=-1) + 1


def preprocessing_fn(inputs, custom_config=None):
    import tensorflow as tf  # imported here: the pipeline config reads this module's names without TensorFlow
    import tensorflow_transform as tft
    settings = dict(custom_config or {})
    min_count = int(settings.get(MIN_ITEM_COUNT, 1))
    max_items = int(settings.get(MAX_ITEMS, 0)) or None
    # Each items record's weight, spread over its values: its key, facts and numeric values count once per
    # training event of the item (the same vocabularies and boundaries as listing every event).
    record_weight = tf.cast(tf.sparse.reduce_sum(inputs[features.VOCAB_WEIGHT], axis=1), tf.float32)

    def weights_of(sparse):
        return tf.gather(record_weight, sparse.indices[:, 0])

    keys = inputs[features.VOCAB_ITEMS]
    vocabulary = tft.vocabulary(keys, top_k=max_items, frequency_threshold=min_count, weights=weights_of(keys),
                                vocab_filename=features.ITEM_VOCABULARY)
    tft.vocabulary(keys, top_k=max_items, frequency_threshold=min_count, weights=weights_of(keys),
                   vocab_filename=ITEM_COUNTS_VOCABULARY, store_frequency=True)
    facts = inputs[features.ITEM_FACTS]
    fact_weights = weights_of(facts)
    tft.vocabulary(facts, weights=fact_weights, vocab_filename=features.ITEM_FACTS_VOCABULARY)
    parts = tf.strings.split(facts.values, features.FACT_SEPARATOR, maxsplit=2)
    kinds, values = parts[:, 1:2].flat_values, parts[:, 2:3].flat_values
    for name in settings.get(CATEGORICAL_FEATURES, ()):
        is_name = tf.equal(kinds, f"cat:{name}")
        tft.vocabulary(tf.boolean_mask(values, is_name), weights=tf.boolean_mask(fact_weights, is_name),
                       vocab_filename=features.CATEGORY_VOCABULARY_PREFIX + name)
    for key in sorted(inputs):
        if key.startswith(features.VOCAB_NUMERIC_PREFIX):
            name = key[len(features.VOCAB_NUMERIC_PREFIX):]
            boundaries = tft.quantiles(inputs[key].values, features.NUMERIC_BUCKETS, QUANTILE_EPSILON,
                                       weights=weights_of(inputs[key]))
            tft.vocabulary(tf.strings.as_string(tf.reshape(boundaries, [-1]), precision=9, scientific=True),
                           vocab_filename=features.BOUNDARIES_VOCABULARY_PREFIX + name)
    seen = inputs[features.SEEN_ITEMS]
    outputs = {
        features.USER_TRAIN_EXAMPLES: inputs[features.USER_TRAIN_EXAMPLES],
        features.CONTEXT_INDEX: _to_index(inputs[features.CONTEXT_ITEM], vocabulary),
        features.CONTEXT_RATING: inputs[features.CONTEXT_RATING],
        features.LABEL_INDEX: _to_index(inputs[features.LABEL_ITEM], vocabulary),
        features.SEEN_INDEX: tf.SparseTensor(seen.indices, _to_index(seen.values, vocabulary), seen.dense_shape),
    }
    if features.EARLIER_ITEM in inputs:  # windowed for a model with a per-user state
        outputs[features.EARLIER_INDEX] = _to_index(inputs[features.EARLIER_ITEM], vocabulary)
    return outputs
