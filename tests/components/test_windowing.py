"""History windowing on hand-built timelines, and the Beam transform against the plain-Python reference."""

import collections
import dataclasses
import json
import os

import apache_beam as beam
import pytest
import tensorflow as tf

from ondevice_rec.components.history_windowing import executor, windowing
from ondevice_rec.components.event_example_gen.executor import event_to_example
from ondevice_rec.data import events as event_log
from ondevice_rec.modules import features

E = windowing.Event


def test_hand_built_timeline_gives_exact_examples():
    # Given out of order, with a timestamp tie between items "30" and "20", which the tie-break hash orders.
    first, second = sorted(["30", "20"], key=lambda item: windowing.tie_break("u1", item))
    events = [E("u1", "50", 500, 4.0), E("u1", "10", 100, 5.0), E("u1", "30", 200, 3.0), E("u1", "20", 200, 2.0),
              E("u1", "40", 400, 1.0)]
    options = windowing.WindowingOptions(history_length=3)
    windows = windowing.window_user(events, options)
    got = windows.examples
    # Sorted timeline: 10 (t100), first, second (t200), 40 (t400), 50 (t500).
    assert [(split, ex[features.LABEL_ITEM]) for split, ex in got] == [
        ("train", first), ("train", second), ("eval", "40"), ("test", "50")]
    assert list(windowing.window_timeline(events, options)) == got
    first_train, second_train, eval_example, test_example = (ex for _, ex in got)
    assert first_train == {
        features.USER_ID: "u1", features.CONTEXT_ITEM: ["10", "", ""], features.CONTEXT_RATING: [5.0, 0.0, 0.0],
        features.CONTEXT_LENGTH: 1, features.LABEL_ITEM: first, features.LABEL_TIMESTAMP: 200,
        features.LABEL_COLUMN: 0, features.USER_TRAIN_EXAMPLES: 2, features.SEEN_ITEMS: []}
    # The vocabulary counts the training events (all but the last two), each once.
    assert windows.counted_items == ["10", first, second] and windows.timeline_length == 5
    assert second_train[features.CONTEXT_ITEM] == [first, "10", ""]
    assert eval_example[features.CONTEXT_ITEM] == [second, first, "10"]
    assert eval_example[features.CONTEXT_RATING][2] == 5.0
    assert eval_example[features.SEEN_ITEMS] == ["10", first, second]
    assert second_train[features.USER_TRAIN_EXAMPLES] == 2  # the user's train examples, on each of them
    assert eval_example[features.USER_TRAIN_EXAMPLES] == test_example[features.USER_TRAIN_EXAMPLES] == 0
    # History longer than N: the N most recent, most recent first; seen items keep the whole history.
    assert test_example[features.CONTEXT_ITEM] == ["40", second, first]
    assert test_example[features.CONTEXT_LENGTH] == 3
    assert test_example[features.SEEN_ITEMS] == ["10", first, second, "40"]


def test_every_example_carries_the_items_older_than_its_context_for_the_per_user_state():
    """``earlier_item``: the ``earlier_length`` items before the context, most recent first, padded; with the
    context they are the picks the phone's state holds when the target comes."""
    events = [E("u1", str(i), 100 * i, 4.0) for i in range(1, 9)]  # items 1..8 in time order
    options = windowing.WindowingOptions(history_length=2, earlier_length=3)
    examples = [ex for _, ex in windowing.window_user(events, options).examples]
    by_label = {ex[features.LABEL_ITEM]: ex for ex in examples}
    assert by_label["8"][features.CONTEXT_ITEM] == ["7", "6"]
    assert by_label["8"][features.EARLIER_ITEM] == ["5", "4", "3"]  # capped at 3: "2" and "1" fall off
    assert by_label["4"][features.EARLIER_ITEM] == ["1", "", ""]
    assert by_label["2"][features.EARLIER_ITEM] == ["", "", ""]  # nothing older than its context
    assert all(len(ex[features.EARLIER_ITEM]) == 3 for ex in examples)
    # Without a per-user state the feature is not written at all.
    plain = windowing.window_user(events, windowing.WindowingOptions(history_length=2)).examples
    assert not any(features.EARLIER_ITEM in ex for _, ex in plain)
    record = windowing.vocabulary_record("1", 1, (), (), 2, 3)
    assert record[features.EARLIER_ITEM] == ["", "", ""]  # the items split shares the schema
    spec = features.windowed_feature_spec(2, earlier_length=3)
    parsed = tf.io.parse_single_example(executor.to_tf_example(by_label["8"]), spec)
    assert [k.decode() for k in parsed[features.EARLIER_ITEM].numpy()] == ["5", "4", "3"]


def test_an_items_record_carries_the_item_once_weighted_by_its_training_events():
    record = windowing.vocabulary_record("10", 7, ("title\tTen", "cat:genres\tDrama"), (("year", 1990.0),), 3)
    assert record[features.VOCAB_ITEMS] == ["10"] and record[features.VOCAB_WEIGHT] == [7]
    assert record[features.ITEM_FACTS] == ["10\ttitle\tTen", "10\tcat:genres\tDrama"]
    assert record[features.VOCAB_NUMERIC_PREFIX + "year"] == [1990.0]
    # It parses with the windowed examples' feature spec (the split shares their schema).
    parsed = tf.io.parse_single_example(executor.to_tf_example(record),
                                        features.windowed_feature_spec(3, ("year",)))
    assert parsed[features.CONTEXT_ITEM].numpy().tolist() == [b"", b"", b""]
    assert tf.sparse.to_dense(parsed[features.VOCAB_WEIGHT]).numpy().tolist() == [7]


def test_every_training_event_is_counted_once_whatever_the_stride():
    events = [E("u", str(m), m) for m in range(1, 30)]
    for stride in (1, 2, 7, 30):
        options = windowing.WindowingOptions(history_length=4, stride=stride)
        counted = windowing.window_user(events, options).counted_items
        assert counted == [e.item for e in windowing.training_events(events, options)], stride
    # A user without a train example counts nothing.
    assert windowing.window_user(events[:3], windowing.WindowingOptions(history_length=4)).counted_items == []


def test_same_second_ratings_are_not_ordered_by_movie_id():
    """Ties follow a fixed hash of (user, item): the same order whatever the input order, and the held-out
    last rating of a same-second burst is not systematically its largest (in MovieLens: newest) movie id."""
    options = windowing.WindowingOptions(history_length=3)
    burst = list(range(1, 21))  # 20 movies rated within one second
    largest_last, ascending = 0, 0
    for user in range(1, 201):
        events = [E(str(user), str(m), 1000) for m in burst]
        timeline = [int(e.item) for e in windowing.sort_timeline(events)]
        assert timeline == [int(e.item) for e in windowing.sort_timeline(events[::-1])]
        assert sorted(timeline) == burst
        assert timeline == sorted(burst, key=lambda m: windowing.tie_break(str(user), str(m)))
        test_label = [int(ex[features.LABEL_ITEM]) for s, ex in windowing.window_timeline(events, options)
                      if s == "test"]
        assert test_label == [timeline[-1]]
        largest_last += timeline[-1] == 20
        ascending += timeline == burst
    assert largest_last <= 30, largest_last  # about 200 / 20 = 10 expected; ordering by id gives 200
    assert ascending == 0
    # Users are ordered independently: the tie order of one burst is not one global movie order.
    orders = {tuple(sorted(burst, key=lambda m: windowing.tie_break(str(u), str(m)))) for u in range(1, 51)}
    assert len(orders) == 50


def test_milliseconds_order_events_within_a_second_before_the_tie_break():
    items = ["view", "cart", "purchase"]
    by_hash = sorted(items, key=lambda item: windowing.tie_break("u1", item))
    in_time = by_hash[::-1]  # the order the hash alone would not give
    events = [E("u1", item, 1700000000, millis=10 * i) for i, item in enumerate(in_time)]
    assert [e.item for e in windowing.sort_timeline(events[::-1])] == in_time
    assert [e.item for e in windowing.sort_timeline([dataclasses.replace(e, millis=0) for e in events])] == by_hash


def _timelines(data):
    by_user = {}
    for u, m, r, t in zip(data.user_id.tolist(), data.movie_id.tolist(), data.rating.tolist(),
                          data.timestamp.tolist()):
        by_user.setdefault(str(u), []).append(E(str(u), str(m), t, r))
    return by_user


def _temporal_options(data, **kwargs):
    days = {}
    for t in data.timestamp.tolist():
        days[t // 86400] = days.get(t // 86400, 0) + 1
    eval_start, test_start = windowing.temporal_cuts(days, 0.1, 0.1)
    return windowing.WindowingOptions(history_length=5, split="temporal", eval_start=eval_start,
                                      test_start=test_start, **kwargs)


@pytest.mark.parametrize("split", ["leave-last-out", "temporal"])
def test_no_training_label_is_later_than_its_users_eval_or_test_target(small_data, split):
    options = (windowing.WindowingOptions(history_length=5) if split == "leave-last-out"
               else _temporal_options(small_data))
    counts = {"train": 0, "eval": 0, "test": 0}
    for user, events in _timelines(small_data).items():
        windows = windowing.window_user(events, options)
        examples = windows.examples
        held_out = [ex for s, ex in examples if s != "train"]
        for s, ex in examples:
            counts[s] += 1
            if s == "train" and held_out:
                assert ex[features.LABEL_TIMESTAMP] <= min(h[features.LABEL_TIMESTAMP] for h in held_out)
        train_labels = {ex[features.LABEL_ITEM] for s, ex in examples if s == "train"}
        assert not train_labels & {h[features.LABEL_ITEM] for h in held_out}
        # The vocabulary never counts a held-out target (an item is rated once per user here).
        counted = set(windows.counted_items)
        assert not counted & {h[features.LABEL_ITEM] for h in held_out}
        if split == "temporal":
            for s, ex in examples:
                t = ex[features.LABEL_TIMESTAMP]
                assert (s == "test") == (t >= options.test_start)
                assert (s == "eval") == (options.eval_start <= t < options.test_start)
    assert counts["train"] > 1000 and counts["eval"] > 50 and counts["test"] > 50, counts


def test_temporal_cuts_are_day_aligned_and_follow_the_fractions():
    days = {d: 10 for d in range(100)}  # 1000 events over 100 days
    eval_start, test_start = windowing.temporal_cuts(days, 0.2, 0.1)
    assert (eval_start, test_start) == (70 * 86400, 90 * 86400)
    with pytest.raises(ValueError, match="fractions"):
        windowing.temporal_cuts(days, 0.6, 0.5)
    with pytest.raises(ValueError, match="3 different days"):
        windowing.temporal_cuts({1: 5, 2: 5}, 0.1, 0.1)


def test_min_rating_stride_and_cap_select_train_positions():
    events = [E("1", str(m), m * 10, 1.0 if m == 3 else 4.0) for m in range(1, 12)]  # item 3 rated 1 star
    base = list(windowing.window_timeline(events, windowing.WindowingOptions(history_length=2, min_rating=2.0)))
    assert all("3" not in ex[features.CONTEXT_ITEM] and ex[features.LABEL_ITEM] != "3" for _, ex in base)
    train_labels = [int(ex[features.LABEL_ITEM]) for s, ex in base if s == "train"]
    assert train_labels == [2, 4, 5, 6, 7, 8, 9]
    strided = windowing.WindowingOptions(history_length=2, min_rating=2.0, stride=3)
    assert [int(ex[features.LABEL_ITEM]) for s, ex in windowing.window_timeline(events, strided)
            if s == "train"] == [2, 6, 9]  # every third of [2, 4, 5, 6, 7, 8, 9], counted back from the last one
    capped = windowing.WindowingOptions(history_length=2, max_examples_per_user=2)
    got = list(windowing.window_timeline(events, capped))
    assert [(s, int(ex[features.LABEL_ITEM])) for s, ex in got] == [("train", 8), ("train", 9), ("eval", 10),
                                                                   ("test", 11)]
    # A user's train-example count is of the examples written (after the stride and the cap).
    assert [ex[features.USER_TRAIN_EXAMPLES] for s, ex in got if s == "train"] == [2, 2]
    assert {ex[features.USER_TRAIN_EXAMPLES] for s, ex in windowing.window_timeline(events, strided)
            if s == "train"} == {3}


def test_short_timelines_are_skipped_and_options_validated():
    assert list(windowing.window_timeline([E("1", "1", 1), E("1", "2", 2)], windowing.WindowingOptions())) == []
    with pytest.raises(ValueError, match="history_length"):
        windowing.WindowingOptions(history_length=0)
    with pytest.raises(ValueError, match="min_timeline_length"):
        windowing.WindowingOptions(min_timeline_length=2)
    with pytest.raises(ValueError, match="history_length"):
        windowing.WindowingOptions(history_length=201)
    with pytest.raises(ValueError, match="split must be one of"):
        windowing.WindowingOptions(split="random")
    with pytest.raises(ValueError, match="needs eval_start"):
        list(windowing.window_timeline([E("1", "1", 1), E("1", "2", 2), E("1", "3", 3)],
                                       windowing.WindowingOptions(split="temporal")))


def _serialized_events(data):
    """The events as the ExampleGen writes them (string keys, no item features)."""
    for u, m, r, t in zip(data.user_id.tolist(), data.movie_id.tolist(), data.rating.tolist(),
                          data.timestamp.tolist()):
        yield event_to_example(event_log.Event(str(u), str(m), t, r), None).SerializeToString()


def _read_split(root, split):
    files = tf.io.gfile.glob(os.path.join(root, f"Split-{split}", "*.gz"))
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


@pytest.mark.parametrize("split", ["leave-last-out", "temporal"])
def test_beam_transform_matches_the_reference(tmp_path, small_data, split):
    out = str(tmp_path)
    if split == "temporal":  # cuts left empty: the Beam job derives them from the fractions
        options = windowing.WindowingOptions(history_length=4, split="temporal", min_timeline_length=2)
        expected_options = _temporal_options(small_data, min_timeline_length=2)
        expected_options = windowing.WindowingOptions(**{**expected_options.__dict__, "history_length": 4})
    else:
        options = expected_options = windowing.WindowingOptions(history_length=4)
    with beam.Pipeline(argv=["--direct_running_mode=in_memory"]) as pipeline:
        _ = (pipeline | beam.Create(list(_serialized_events(small_data)))
             | executor.WindowEvents(options, out))  # pylint: disable=no-value-for-parameter

    by_user = _timelines(small_data)
    expected = {s: [] for s in features.SPLITS}
    for events_ in by_user.values():
        for s, ex in windowing.window_timeline(events_, expected_options):
            expected[s].append(tf.train.Example.FromString(executor.to_tf_example(ex)))
    key = lambda e: (e.features.feature["user_id"].bytes_list.value[0],  # noqa: E731
                     e.features.feature["label_timestamp"].int64_list.value[0],
                     e.features.feature["label_item"].bytes_list.value[0])
    for s in features.SPLITS:
        assert sorted(_read_split(out, s), key=key) == sorted(expected[s], key=key), s
    assert all(len(v) > 0 for v in expected.values())
    # The items split: one record per counted item, weighted by its training events (no item facts here).
    counted = collections.Counter(k for events_ in by_user.values()
                                  for k in windowing.window_user(events_, expected_options).counted_items)
    items = {r.features.feature[features.VOCAB_ITEMS].bytes_list.value[0].decode():
             r.features.feature[features.VOCAB_WEIGHT].int64_list.value[0] for r in _read_split(out, "items")}
    assert items == dict(counted) and sum(items.values()) > 1000
    with open(os.path.join(out, executor.STATS_FILE)) as f:
        stats = json.load(f)
    assert stats["examples"] == {s: len(v) for s, v in expected.items()}
    assert stats["users"] == len(by_user) and stats["vocabulary_items"] == len(counted)
    assert stats["training_events"] == sum(len(windowing.training_events(e, expected_options))
                                           for e in by_user.values() if len(e) >= 4)
    assert stats["options"]["test_start"] == expected_options.test_start


@pytest.mark.slow
def test_multi_worker_beam_gives_identical_output(tmp_path, small_data):
    """The same transform on 2 worker processes writes exactly the examples of the in-memory runner."""
    options = windowing.WindowingOptions(history_length=4)
    outputs = {}
    for mode, argv in {"in_memory": ["--direct_running_mode=in_memory"],
                       "multi_processing": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
                       }.items():
        out = str(tmp_path / mode)
        with beam.Pipeline(argv=argv) as pipeline:
            _ = (pipeline | beam.Create(list(_serialized_events(small_data)))
                 | executor.WindowEvents(options, out))  # pylint: disable=no-value-for-parameter
        outputs[mode] = {s: sorted(e.SerializeToString(deterministic=True) for e in _read_split(out, s))
                         for s in features.SPLITS + (features.ITEMS_SPLIT,)}
    assert outputs["in_memory"] == outputs["multi_processing"]


def _decoded(records):
    """DecodeEventBatch's outputs for one batch: {user: columns}, {item: facts}, [profiles]."""
    decoder = executor.DecodeEventBatch()
    decoder.setup()
    users, facts, profiles = {}, {}, []
    for out in decoder.process(records):
        if isinstance(out, beam.pvalue.TaggedOutput):
            if out.tag == executor.FACTS:
                facts[out.value[0]] = out.value[1]
            else:
                profiles.append(out.value)
        else:
            users[out[0]] = out[1]
    return users, facts, profiles


def test_the_milliseconds_cross_from_example_gen_to_windowing():
    examples = [event_to_example(event_log.Event(u, "B01", 1700000000, None, millis), None)
                for u, millis in (("u1", 123), ("u2", None))]
    assert [features.EVENT_MILLIS in e.features.feature for e in examples] == [True, False]
    users, _, _ = _decoded([e.SerializeToString() for e in examples])
    assert users == {"u1": (["B01"], [1700000000], [0.0], [123]), "u2": (["B01"], [1700000000], [0.0], [0])}


def test_a_batch_of_events_is_decoded_per_user_with_each_items_facts_once():
    """What HistoryWindowing reads of ExampleGen's events: per user of the batch its items, timestamps, ratings
    and milliseconds in the batch's order; each item's title, categories and numbers once (sorted by feature);
    the batch's events per day and numeric feature names."""
    toy = event_log.ItemInfo("Toy Story (1995)", {"genres": ["Animation", "Comedy"]}, {"year": 1995.0})
    plain = event_log.ItemInfo("Heat", {"genres": []}, {})
    rows = [(event_log.Event("7", "1", 86400 * 3 + 5, 4.0), toy), (event_log.Event("8", "2", 86400 * 3, 2.5), plain),
            (event_log.Event("7", "2", 86400 * 4, 1.0), plain), (event_log.Event("8", "9", 10, 3.0), None)]
    users, facts, profiles = _decoded([event_to_example(e, i).SerializeToString() for e, i in rows])
    assert users == {"7": (["1", "2"], [86400 * 3 + 5, 86400 * 4], [4.0, 1.0], [0, 0]),
                     "8": (["2", "9"], [86400 * 3, 10], [2.5, 3.0], [0, 0])}
    sep = features.FACT_SEPARATOR
    assert facts == {
        "1": ((f"{features.TITLE_FACT}{sep}Toy Story (1995)", f"cat:genres{sep}Animation", f"cat:genres{sep}Comedy",
               f"num:year{sep}1995"), (("year", 1995.0),)),
        "2": ((f"{features.TITLE_FACT}{sep}Heat",), ()),
        "9": ((), ())}
    assert profiles == [{"days": {3: 2, 4: 1, 0: 1}, "numeric": {"year"}}]


@pytest.mark.parametrize("event", [
    event_log.Event("12", "3456", 978300760, 4.0),
    event_log.Event("u" * 300, "é-ü", 2 ** 40, None, 999),  # multi-byte lengths and UTF-8
    event_log.Event("1", "2", 0, -1.5, 0),
])
def test_the_fast_event_encoder_writes_what_the_proto_api_writes(event):
    """ExampleGen's reader writes the wire format directly (item features serialized once per item); the
    bytes parse to the same tf.train.Example as building it with the proto API, with and without an item."""
    from ondevice_rec.components.event_example_gen.executor import ExampleEncoder
    encode = ExampleEncoder()
    info = event_log.ItemInfo("Toy Story (1995)", {"genres": ("Animation", "Children's")}, {"year": 1995.0})
    for item in (info, None, info):  # the second use of the item reads the cached part
        assert tf.train.Example.FromString(encode(event, item)) == event_to_example(event, item)

