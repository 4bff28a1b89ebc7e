"""History windowing on hand-built timelines, and the Beam transform against the plain-Python reference."""

import json
import os

import apache_beam as beam
import pytest
import tensorflow as tf

from ondevice_rec.components.history_windowing import executor, windowing
from ondevice_rec.components.movielens_example_gen.executor import rating_to_example
from ondevice_rec.data import movielens
from ondevice_rec.modules import features
from ondevice_rec.modules.vocabulary import Vocabulary

E = windowing.Event


def test_hand_built_timeline_gives_exact_examples():
    # Given out of order, with a timestamp tie between movies 30 and 20 (broken by the smaller id).
    events = [E(1, 50, 500, 4.0, 1999), E(1, 10, 100, 5.0, 1990), E(1, 30, 200, 3.0, 1995),
              E(1, 20, 200, 2.0, 1994), E(1, 40, 400, 1.0, 1998)]
    got = list(windowing.window_timeline(events, windowing.WindowingOptions(history_length=3)))
    # Sorted timeline: 10 (t100), 20 (t200), 30 (t200), 40 (t400), 50 (t500).
    assert [(split, ex[features.LABEL_MOVIE_ID]) for split, ex in got] == [
        ("train", 20), ("train", 30), ("eval", 40), ("test", 50)]
    first_train, second_train, eval_example, test_example = (ex for _, ex in got)
    assert first_train == {
        features.USER_ID: 1, features.CONTEXT_MOVIE_ID: [10, 0, 0], features.CONTEXT_MOVIE_RATING: [5.0, 0.0, 0.0],
        features.CONTEXT_MOVIE_YEAR: [1990, 0, 0], features.CONTEXT_LENGTH: 1, features.LABEL_MOVIE_ID: 20,
        features.LABEL_TIMESTAMP: 200}
    assert second_train[features.CONTEXT_MOVIE_ID] == [20, 10, 0]
    assert eval_example[features.CONTEXT_MOVIE_ID] == [30, 20, 10]
    assert eval_example[features.SEEN_MOVIE_IDS] == [10, 20, 30]
    # History longer than N: the N most recent, most recent first; seen ids keep the whole history.
    assert test_example[features.CONTEXT_MOVIE_ID] == [40, 30, 20]
    assert test_example[features.CONTEXT_LENGTH] == 3
    assert test_example[features.SEEN_MOVIE_IDS] == [10, 20, 30, 40]


def test_no_training_label_is_later_than_its_users_eval_or_test_target(small_data):
    by_user = {}
    for u, m, t in zip(small_data.user_id.tolist(), small_data.movie_id.tolist(), small_data.timestamp.tolist()):
        by_user.setdefault(u, []).append(E(u, m, t))
    options = windowing.WindowingOptions(history_length=5)
    checked = 0
    for user, events in by_user.items():
        examples = list(windowing.window_timeline(events, options))
        held_out = min(ex[features.LABEL_TIMESTAMP] for split, ex in examples if split != "train")
        for split, ex in examples:
            if split == "train":
                assert ex[features.LABEL_TIMESTAMP] <= held_out
                checked += 1
        targets = {split: ex[features.LABEL_MOVIE_ID] for split, ex in examples if split != "train"}
        train_labels = {ex[features.LABEL_MOVIE_ID] for split, ex in examples if split == "train"}
        assert not train_labels & set(targets.values())
    assert checked > 1000


def test_short_timelines_are_skipped_and_options_validated():
    assert list(windowing.window_timeline([E(1, 1, 1), E(1, 2, 2)], windowing.WindowingOptions())) == []
    with pytest.raises(ValueError, match="history_length"):
        windowing.WindowingOptions(history_length=0)
    with pytest.raises(ValueError, match="min_timeline_length"):
        windowing.WindowingOptions(min_timeline_length=2)


def _serialized_events(data):
    for u, m, r, t in zip(data.user_id.tolist(), data.movie_id.tolist(), data.rating.tolist(),
                          data.timestamp.tolist()):
        yield rating_to_example(movielens.Rating(u, m, r, t), data.movies[m]).SerializeToString()


def _read_split(root, split):
    files = tf.io.gfile.glob(os.path.join(root, f"Split-{split}", "*.gz"))
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def test_beam_transform_matches_the_reference_and_writes_the_vocabulary(tmp_path, small_data):
    options = windowing.WindowingOptions(history_length=4)
    out = str(tmp_path)
    with beam.Pipeline(argv=["--direct_running_mode=in_memory"]) as pipeline:
        _ = (pipeline | beam.Create(list(_serialized_events(small_data)))
             | executor.WindowEvents(options, out))  # pylint: disable=no-value-for-parameter

    by_user = {}
    for u, m, r, t in zip(small_data.user_id.tolist(), small_data.movie_id.tolist(), small_data.rating.tolist(),
                          small_data.timestamp.tolist()):
        by_user.setdefault(u, []).append(E(u, m, t, r, small_data.movies[m].year))
    expected = {s: [] for s in features.SPLITS}
    for events in by_user.values():
        for split, ex in windowing.window_timeline(events, options):
            expected[split].append(tf.train.Example.FromString(executor.to_tf_example(ex)))
    key = lambda e: (e.features.feature["user_id"].int64_list.value[0],  # noqa: E731
                     e.features.feature["label_timestamp"].int64_list.value[0],
                     e.features.feature["label_movie_id"].int64_list.value[0])
    for split in features.SPLITS:
        assert sorted(_read_split(out, split), key=key) == sorted(expected[split], key=key), split

    vocab = Vocabulary.load(out)
    training_counts = {}
    for events in by_user.values():
        for e in windowing.training_events(events, options):
            training_counts[e.movie_id] = training_counts.get(e.movie_id, 0) + 1
    assert {m.movie_id: m.count for m in vocab.movies} == training_counts
    counts = [m.count for m in vocab.movies]
    assert counts == sorted(counts, reverse=True)
    assert vocab.max_movie_id == int(small_data.movie_id.max())
    first = vocab.movies[0]
    assert first.title == small_data.movies[first.movie_id].title
    assert list(first.genres) == list(small_data.movies[first.movie_id].genres)
    with open(os.path.join(out, executor.STATS_FILE)) as f:
        stats = json.load(f)
    assert stats["examples"] == {s: len(v) for s, v in expected.items()}
    assert stats["users"] == len(by_user)
