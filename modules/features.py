"""Names and layout of the windowed training examples (the contract between windowing and the Trainer).

Context lists are ordered most recent first and right-padded with ``PADDING_ID`` up to the history length, so
position 0 always holds the movie seen just before the target. ``context_movie_genre`` holds G genre ids per
context position (``[N * G]``, row-major), genre id 0 being padding; ratings and years are padded with 0. ``seen_movie_ids`` (eval and test examples
only) lists the user's whole history, used to exclude already-watched movies when ranking.
"""

PADDING_ID = 0

USER_ID = "user_id"
CONTEXT_MOVIE_ID = "context_movie_id"
CONTEXT_MOVIE_GENRE = "context_movie_genre"
CONTEXT_MOVIE_RATING = "context_movie_rating"
CONTEXT_MOVIE_YEAR = "context_movie_year"
CONTEXT_LENGTH = "context_length"
LABEL_MOVIE_ID = "label_movie_id"
LABEL_TIMESTAMP = "label_timestamp"
SEEN_MOVIE_IDS = "seen_movie_ids"

# Event features written by the MovieLens ExampleGen.
EVENT_USER_ID = "user_id"
EVENT_MOVIE_ID = "movie_id"
EVENT_TIMESTAMP = "timestamp"
EVENT_RATING = "rating"
EVENT_GENRES = "genres"
EVENT_YEAR = "year"
EVENT_TITLE = "title"
# Next to the events: line counts, bad-line samples (what ExampleGen read and what it skipped).
INPUT_REPORT_FILE = "input_report.json"

SPLITS = ("train", "eval", "test")

# Ranking metrics reported everywhere (Trainer validation, TFMA, eval.json, benchmarks): recall@K for these K
# and NDCG at NDCG_K; the blessing gate and early stopping watch GATE_METRIC.
RECALL_KS = (1, 5, 10)
NDCG_K = 10
GATE_K = 10
GATE_METRIC = f"recall@{GATE_K}"

# The exported model's signatures and the on-device model's output tensors.
SERVING_SIGNATURE = "serving_default"  # serialized examples -> scores over ids (TFMA)
RECOMMEND_SIGNATURE = "recommend"  # the on-device function
TOP_IDS = "top_ids"
TOP_SCORES = "top_scores"
SCORES = "scores"  # serving_default's output and TFMA's prediction key
ASSETS_EXTRA = "assets.extra"  # in the SavedModel: vocabulary, model config and weights for warm start
VOCABULARY_FILE = "vocabulary.json"
# Next to the Split-* folders of the windowed examples: counts and the resolved WindowingOptions (whose
# history_length the Trainer checks against its own).
WINDOWING_STATS_FILE = "windowing_stats.json"

# Score of a padding, unknown or already-seen item: far below any real score. Any score below
# MASKED_BELOW counts as masked (scores pass through float32 arithmetic, so no equality test).
MASKED_SCORE = -1e9
MASKED_BELOW = -1e8


def example_feature_spec(history_length: int, genres_per_movie: int = 3):
    """tf.io feature spec of a windowed example (TensorFlow imported lazily)."""
    import tensorflow as tf
    return {
        USER_ID: tf.io.FixedLenFeature([], tf.int64),
        CONTEXT_MOVIE_ID: tf.io.FixedLenFeature([history_length], tf.int64),
        CONTEXT_MOVIE_GENRE: tf.io.FixedLenFeature([history_length * genres_per_movie], tf.int64),
        CONTEXT_MOVIE_RATING: tf.io.FixedLenFeature([history_length], tf.float32),
        CONTEXT_MOVIE_YEAR: tf.io.FixedLenFeature([history_length], tf.int64),
        CONTEXT_LENGTH: tf.io.FixedLenFeature([], tf.int64),
        LABEL_MOVIE_ID: tf.io.FixedLenFeature([], tf.int64),
        LABEL_TIMESTAMP: tf.io.FixedLenFeature([], tf.int64),
        SEEN_MOVIE_IDS: tf.io.VarLenFeature(tf.int64),
    }
