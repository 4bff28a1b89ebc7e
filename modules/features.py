"""Names and layout of events, windowed examples and transformed examples (the contracts between components).

Context lists are ordered most recent first and right-padded up to the history length, so position 0 always
holds the item seen just before the target. Windowed examples carry string keys; tf.Transform maps them to
vocabulary indices (0 = padding or unknown), which is all the model and the on-device contract know.
"""

import os

PADDING_ID = 0  # the vocabulary index of padding and of keys outside the vocabulary
PADDING_KEY = ""  # the padding of string keys in the windowed examples

# Event features written by the ExampleGen (one tf.Example per event). Keys are strings; item features come
# from the items file: CATEGORICAL_PREFIX + name (strings), NUMERIC_PREFIX + name (a float, or none).
EVENT_USER_ID = "user_id"
EVENT_ITEM_ID = "item_id"
EVENT_TIMESTAMP = "timestamp"  # seconds, or the input order when the log has no timestamp
EVENT_RATING = "rating"  # only when the log has a rating / weight column
# Milliseconds past the second (0..999), for unix_ms and ISO-8601 timestamps: orders a user's events within one
# second (a view, a cart and a purchase in the same second keep their order).
EVENT_MILLIS = "timestamp_millis"
EVENT_TITLE = "title"
CATEGORICAL_PREFIX = "cat_"
NUMERIC_PREFIX = "num_"
# ExampleGen's splits: every event, and a uniform sample of them (what StatisticsGen and ExampleValidator read;
# the whole log when it is small: components/event_example_gen/executor.py, STATISTICS_SAMPLE_EVENTS).
EVENTS_SPLIT = "events"
SAMPLE_SPLIT = "sample"
# Next to the events: line counts, bad-line samples (what ExampleGen read and what it skipped).
INPUT_REPORT_FILE = "input_report.json"
# Its counts, also recorded on ExampleGen's examples artifact (the run summary reads them there).
INPUT_REPORT_COUNTS = ("input_lines", "events", "bad_lines", "filtered_events", "events_of_unlisted_items",
                       "item_rows_skipped", "duplicate_item_keys")

# Windowed examples (HistoryWindowing -> Transform): string keys, most recent first, padded with PADDING_KEY.
USER_ID = "user_id"
CONTEXT_ITEM = "context_item"
CONTEXT_RATING = "context_rating"
CONTEXT_LENGTH = "context_length"
LABEL_ITEM = "label_item"
LABEL_TIMESTAMP = "label_timestamp"
SEEN_ITEMS = "seen_items"  # eval / test: the user's whole history (excluded when ranking)
# Every split, when the model keeps a per-user state (ModelConfig.personal_history > 0): the items older than
# the context, most recent first, at most personal_history of them, padded with PADDING_KEY. The model folds
# them into the state the phone would hold when the context was its most recent history.
EARLIER_ITEM = "earlier_item"
# Always 0: TFMA's label. Each model's serving_default maps the keys with its own vocabulary and puts the
# label's score in column 0 of its output, so a candidate and a baseline trained on different vocabularies
# (another span) are scored on the same examples.
LABEL_COLUMN = "label_column"
# Train examples: how many train examples their user has (eval / test: 0). The Trainer weighs a user's targets
# by its inverse power (ModelConfig.user_balance), so that heavy users need not outweigh the rest.
USER_TRAIN_EXAMPLES = "user_train_examples"
# The items split (HistoryWindowing -> Transform's analysis): one record per training item, with the windowed
# examples' schema (fixed-length features padded). Its key in VOCAB_ITEMS weighted by VOCAB_WEIGHT (the item's
# training events), its facts ("key\tkind\tvalue") in ITEM_FACTS and its numeric values: tf.Transform turns them
# into the item vocabulary (counts = training events), the item feature table, the category vocabularies and the
# numeric bucket boundaries. Empty in the train / eval / test examples.
ITEMS_SPLIT = "items"
VOCAB_ITEMS = "vocab_items"
VOCAB_WEIGHT = "vocab_weight"
ITEM_FACTS = "item_facts"
VOCAB_NUMERIC_PREFIX = "vocab_num_"  # + name: the numeric feature's value of the item (for quantiles)
WINDOWED_INT64_FEATURES = (CONTEXT_LENGTH, LABEL_TIMESTAMP, LABEL_COLUMN, USER_TRAIN_EXAMPLES, VOCAB_WEIGHT)
# The windowed examples' layout; HistoryWindowing passes it as an execution parameter, so a pipeline root
# windowed by an older layout is windowed again rather than read from the cache. Raise it with any change above.
WINDOWED_FORMAT = 4
FACT_SEPARATOR = "\t"
TITLE_FACT = "title"

# Transformed examples (Transform -> Trainer / Evaluator / Pusher): vocabulary indices, 0 = padding / unknown.
CONTEXT_INDEX = "context_index"
LABEL_INDEX = "label_index"
SEEN_INDEX = "seen_index"
EARLIER_INDEX = "earlier_index"
# tf.Transform vocabulary names (files in the transform graph's assets).
ITEM_VOCABULARY = "items"
ITEM_FACTS_VOCABULARY = "item_facts"
CATEGORY_VOCABULARY_PREFIX = "category_"  # + feature name
BOUNDARIES_VOCABULARY_PREFIX = "boundaries_"  # + feature name: the numeric feature's bucket boundaries
NUMERIC_BUCKETS = 16

SPLITS = ("train", "eval", "test")  # the example splits (the windowed artifact also has ITEMS_SPLIT)


def split_dir(artifact_uri: str, split: str) -> str:
    """The folder of one split inside an Examples or statistics artifact (TFX's ``Split-<name>`` layout,
    ``artifact_utils.get_split_uri``; ``split="*"`` globs every split)."""
    return os.path.join(artifact_uri, f"Split-{split}")


def split_files(artifact_uri: str, split: str) -> str:
    """The file pattern of one split's records."""
    return os.path.join(split_dir(artifact_uri, split), "*")


def read_files(file_pattern: str) -> list:
    """The serialized records of the GZIP TFRecord files matching ``file_pattern``, in file-name order."""
    import tensorflow as tf
    files = sorted(tf.io.gfile.glob(file_pattern))
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def read_split(artifact_uri: str, split: str) -> list:
    """The serialized examples of one split of an Examples artifact."""
    return read_files(split_files(artifact_uri, split))


# The ranking metrics reported everywhere, and the one the blessing watches: modules/ranking_metrics.py.

# The exported model's signatures and the on-device model's output tensors.
SERVING_SIGNATURE = "serving_default"  # serialized examples -> scores over ids (TFMA)
# The same with the successor table of the training events only: the model as the eval split validated it,
# before the exported table also counted the eval targets' transitions. The blessing Evaluator (eval split)
# scores it, so that a candidate does not judge itself on the events its table was counted from.
VALIDATED_SIGNATURE = "serving_validated"
RECOMMEND_SIGNATURE = "recommend"  # the on-device function
# The per-user state (ModelConfig.personal_history > 0; modules/personal.py): ``update_state`` folds one picked
# item into the state, ``recommend_personal`` is ``recommend`` reading the state too (a zero state: the same as
# ``recommend``).
RECOMMEND_PERSONAL_SIGNATURE = "recommend_personal"
UPDATE_STATE_SIGNATURE = "update_state"
USER_STATE = "user_state"  # float32[d + 1]: input of both signatures, and update_state's output
ITEM_INDEX = "item_index"  # int32 scalar: update_state's picked item (vocabulary index; 0 changes nothing)
TOP_IDS = "top_ids"
TOP_SCORES = "top_scores"
SCORES = "scores"  # serving_default's output and TFMA's prediction key
ASSETS_EXTRA = "assets.extra"  # in the SavedModel: vocabulary, model config and weights for warm start
VOCABULARY_FILE = "vocabulary.json"
# Next to the Split-* folders of the windowed examples: counts and the resolved WindowingOptions (whose
# history_length the Trainer checks against its own).
WINDOWING_STATS_FILE = "windowing_stats.json"
# In the Trainer's ModelRun artifact: how training ended and the per-epoch curve (trainer.write_training_summary).
TRAINING_SUMMARY_FILE = "training_summary.json"

# Score of a padding, unknown or already-seen item: far below any real score. Any score below
# MASKED_BELOW counts as masked (scores pass through float32 arithmetic, so no equality test).
MASKED_SCORE = -1e9
MASKED_BELOW = -1e8


def windowed_feature_spec(history_length: int, numeric_features=(), earlier_length: int = 0):
    """tf.io feature spec of a windowed example (TensorFlow imported lazily); ``earlier_length``: the length of
    ``EARLIER_ITEM`` (0: absent)."""
    import tensorflow as tf
    spec = {
        USER_ID: tf.io.FixedLenFeature([], tf.string),
        CONTEXT_ITEM: tf.io.FixedLenFeature([history_length], tf.string),
        CONTEXT_RATING: tf.io.FixedLenFeature([history_length], tf.float32),
        CONTEXT_LENGTH: tf.io.FixedLenFeature([], tf.int64),
        LABEL_ITEM: tf.io.FixedLenFeature([], tf.string),
        LABEL_TIMESTAMP: tf.io.FixedLenFeature([], tf.int64),
        LABEL_COLUMN: tf.io.FixedLenFeature([], tf.int64),
        USER_TRAIN_EXAMPLES: tf.io.FixedLenFeature([], tf.int64),
        SEEN_ITEMS: tf.io.VarLenFeature(tf.string),
        VOCAB_ITEMS: tf.io.VarLenFeature(tf.string),
        VOCAB_WEIGHT: tf.io.VarLenFeature(tf.int64),
        ITEM_FACTS: tf.io.VarLenFeature(tf.string),
    }
    for name in numeric_features:
        spec[VOCAB_NUMERIC_PREFIX + name] = tf.io.VarLenFeature(tf.float32)
    if earlier_length:
        spec[EARLIER_ITEM] = tf.io.FixedLenFeature([earlier_length], tf.string)
    return spec


def transformed_feature_spec(history_length: int, earlier_length: int = 0):
    """tf.io feature spec of a transformed example (what the Trainer and the Evaluator read)."""
    import tensorflow as tf
    spec = {
        CONTEXT_INDEX: tf.io.FixedLenFeature([history_length], tf.int64),
        CONTEXT_RATING: tf.io.FixedLenFeature([history_length], tf.float32),
        LABEL_INDEX: tf.io.FixedLenFeature([], tf.int64),
        SEEN_INDEX: tf.io.VarLenFeature(tf.int64),
        USER_TRAIN_EXAMPLES: tf.io.FixedLenFeature([], tf.int64),
    }
    if earlier_length:
        spec[EARLIER_INDEX] = tf.io.FixedLenFeature([earlier_length], tf.int64)
    return spec
