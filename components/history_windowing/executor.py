"""Beam executor of HistoryWindowing.

Events are grouped per user (one worker holds one user's timeline at a time), windowed with
``windowing.window_user`` and written as gzipped TFRecords into ``Split-train``, ``Split-eval`` and
``Split-test``, with string item keys; one record per training item (its training-event count and its facts)
goes to ``Split-items``, the split Transform analyses. The schema of those examples goes to the ``schema``
output (the Transform component's input schema); counts and the resolved options to ``windowing_stats.json``.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Any, Dict, List, Tuple

import apache_beam as beam
import pyarrow.compute as pc
import tensorflow as tf
from apache_beam.transforms.window import GlobalWindows
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils, standard_artifact_utils
from tfx.utils import io_utils

from ondevice_rec.components.history_windowing import windowing
from ondevice_rec.modules import features

EVENTS_KEY = "events"
ANOMALIES_KEY = "anomalies"
EXAMPLES_KEY = "examples"
SCHEMA_KEY = "schema"
OPTIONS_KEY = "options"
FORMAT_KEY = "example_format"  # features.WINDOWED_FORMAT: a change of layout is not served from the cache
STATS_FILE = features.WINDOWING_STATS_FILE
SCHEMA_FILE = "schema.pbtxt"


# Events decoded per batch (tfx_bsl's C++ decoder into Arrow columns) instead of one proto per event. Measured on
# ML-1M-SAS: docs/results.md, "The data stages on batches".
EVENT_BATCH = 16_384
FACTS, PROFILE = "facts", "profile"


def _column(batch, name):
    index = batch.schema.get_field_index(name)
    return None if index < 0 else batch.column(index)


def _single_values(column, default, convert=None) -> list:
    """One value per row of a list column (its first; ``default`` where the row has none)."""
    if column is None:
        return None
    if column.null_count == 0 and pc.min(pc.list_value_length(column)).as_py() == 1 \
            and pc.max(pc.list_value_length(column)).as_py() == 1:
        values = column.flatten().to_pylist()
    else:
        values = [v[0] if v else default for v in column.to_pylist()]
    return [convert(v) for v in values] if convert else values


def _first(feature, name, kind, default):
    if name not in feature:
        return default
    values = getattr(feature[name], kind).value
    return values[0] if values else default


def item_facts(serialized_event: bytes) -> Tuple[tuple, tuple]:
    """``(facts, numeric)`` of the item of one serialized event: its title, categories and numbers (features
    sorted by name) as vocabulary facts, and its numeric values."""
    feature = tf.train.Example.FromString(serialized_event).features.feature
    facts, numeric = [], []
    title = _first(feature, features.EVENT_TITLE, "bytes_list", b"").decode("utf-8")
    if title:
        facts.append(f"{features.TITLE_FACT}{features.FACT_SEPARATOR}{title}")
    for name in sorted(feature):
        if name.startswith(features.CATEGORICAL_PREFIX):
            short = name[len(features.CATEGORICAL_PREFIX):]
            facts.extend(f"cat:{short}{features.FACT_SEPARATOR}{v.decode('utf-8')}"
                         for v in feature[name].bytes_list.value)
        elif name.startswith(features.NUMERIC_PREFIX) and feature[name].float_list.value:
            short, value = name[len(features.NUMERIC_PREFIX):], float(feature[name].float_list.value[0])
            facts.append(f"num:{short}{features.FACT_SEPARATOR}{value:g}")
            numeric.append((short, value))
    return tuple(facts), tuple(numeric)


def _event_schema() -> bytes:
    """The event features windowing reads per event (the item's features are read once per item)."""
    from tensorflow_metadata.proto.v0 import schema_pb2
    schema = schema_pb2.Schema()
    for name, kind in ((features.EVENT_USER_ID, schema_pb2.BYTES), (features.EVENT_ITEM_ID, schema_pb2.BYTES),
                       (features.EVENT_TIMESTAMP, schema_pb2.INT), (features.EVENT_RATING, schema_pb2.FLOAT),
                       (features.EVENT_MILLIS, schema_pb2.INT)):
        schema.feature.add(name=name, type=kind)
    return schema.SerializeToString()


class DecodeEventBatch(beam.DoFn):
    """A list of serialized events -> ``(user_id, (items, timestamps, ratings, millis))`` per user of the batch
    (primitives: Beam's fast coder across the GroupByKey), each item's ``(facts, numeric)`` once per worker on
    ``facts``, and the batch's events per day and numeric feature names on ``profile``."""

    def setup(self):
        from tfx_bsl.coders import example_coder
        self._decoder = example_coder.ExamplesToRecordBatchDecoder(_event_schema())
        self._items_seen = set()

    def process(self, records):
        records = list(records)
        batch = self._decoder.DecodeBatch(records)
        users = _single_values(_column(batch, features.EVENT_USER_ID), b"", bytes.decode)
        items = _single_values(_column(batch, features.EVENT_ITEM_ID), b"", bytes.decode)
        timestamps = _single_values(_column(batch, features.EVENT_TIMESTAMP), 0)
        ratings = _single_values(_column(batch, features.EVENT_RATING), 0.0) or [0.0] * len(users)
        millis = _single_values(_column(batch, features.EVENT_MILLIS), 0) or [0] * len(users)
        numeric_names = set()
        for row, item in enumerate(items):
            if item not in self._items_seen:
                self._items_seen.add(item)
                facts = item_facts(records[row])
                numeric_names.update(name for name, _ in facts[1])
                yield beam.pvalue.TaggedOutput(FACTS, (item, facts))
        days = collections.Counter(t // 86400 for t in timestamps)
        yield beam.pvalue.TaggedOutput(PROFILE, {"days": days, "numeric": numeric_names})
        rows_of = collections.defaultdict(list)
        for row, user in enumerate(users):
            rows_of[user].append(row)
        for user, rows in rows_of.items():
            yield user, ([items[r] for r in rows], [timestamps[r] for r in rows], [ratings[r] for r in rows],
                         [millis[r] for r in rows])


class ReadRecordBatches(beam.DoFn):
    """A gzipped TFRecord file -> lists of its serialized records (tf.data's C++ reader, ``EVENT_BATCH`` at a
    time), instead of one Beam element per record."""

    def process(self, path: str):
        dataset = tf.data.TFRecordDataset(path, compression_type="GZIP").batch(EVENT_BATCH)
        for records in dataset.as_numpy_iterator():
            yield list(records)


_FLOAT_FEATURES = frozenset({features.CONTEXT_RATING})


def to_tf_example(example: dict) -> bytes:
    """Serializes a windowed example (strings, int64, float lists; scalars become one-element lists).

    Built with the proto API: its ``extend`` copies a whole list in C++, where writing the wire format in
    Python (``modules/wire.py``, as ExampleGen does for its few fields per event) was 2.5 times slower on
    ML-1M-SAS's ~50 strings per example (docs/results.md, "The data stages on batches")."""
    proto = tf.train.Example()
    feature_map = proto.features.feature
    for name, value in example.items():
        values = value if isinstance(value, list) else [value]
        if name in _FLOAT_FEATURES or name.startswith(features.VOCAB_NUMERIC_PREFIX):
            feature_map[name].float_list.value.extend(values)
        elif name in features.WINDOWED_INT64_FEATURES:
            feature_map[name].int64_list.value.extend(values)
        else:
            feature_map[name].bytes_list.value.extend(v.encode("utf-8") for v in values)
    return proto.SerializeToString()


class Profile(beam.CombineFn):
    """Global facts gathered per batch of events and merged: events per day (temporal cuts), numeric feature
    names."""

    def create_accumulator(self):
        return {"days": collections.Counter(), "numeric": set()}

    def add_input(self, accumulator, partial):
        accumulator["days"].update(partial["days"])
        accumulator["numeric"].update(partial["numeric"])
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for a in accumulators:
            merged["days"].update(a["days"])
            merged["numeric"] |= a["numeric"]
        return merged

    def extract_output(self, accumulator):
        return {"days": accumulator["days"], "numeric": sorted(accumulator["numeric"])}


class Summary(beam.CombineFn):
    """Per-split example counts, user counts, duplicates and training items, merged over users."""

    def create_accumulator(self):
        return {"examples": collections.Counter(), "users": 0, "users_skipped": 0, "duplicate_events": 0,
                "training_events": 0}

    def add_input(self, accumulator, user_summary):
        accumulator["examples"].update(user_summary["examples"])
        accumulator["users"] += 1
        accumulator["users_skipped"] += int(user_summary["skipped"])
        accumulator["duplicate_events"] += user_summary["duplicates"]
        accumulator["training_events"] += user_summary["training_events"]
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for a in accumulators:
            merged["examples"].update(a["examples"])
            for key in ("users", "users_skipped", "duplicate_events", "training_events"):
                merged[key] += a[key]
        return merged

    def extract_output(self, accumulator):
        return accumulator


_NO_FACTS = ((), ())
COUNTS = "counts"


class WindowUser(beam.DoFn):
    """One user's timeline -> serialized examples on the ``train`` / ``eval`` / ``test`` outputs, a ``summary``
    output (counts for the statistics) and, per bundle, ``(item, training events)`` on ``counts`` (counted
    in the worker: one element per item and bundle rather than one per training event)."""

    def start_bundle(self):
        self._counts = collections.Counter()

    def process(self, keyed_chunks, options: windowing.WindowingOptions):
        user_id, chunks = keyed_chunks
        events = []
        for items, timestamps, ratings, millis in chunks:
            events += [windowing.Event(user_id, item, timestamp, rating, ms)
                       for item, timestamp, rating, ms in zip(items, timestamps, ratings, millis)]
        windows = windowing.window_user(events, options)
        counts = collections.Counter()
        for split, example in windows.examples:
            counts[split] += 1
            serialized = to_tf_example(example)
            yield serialized if split == "train" else beam.pvalue.TaggedOutput(split, serialized)
        self._counts.update(windows.counted_items)
        duplicates = sum(e.rating >= options.min_rating for e in events) - windows.timeline_length
        yield beam.pvalue.TaggedOutput("summary", {
            "examples": counts, "skipped": windows.timeline_length < options.min_timeline_length,
            "duplicates": duplicates, "training_events": len(windows.counted_items)})

    def finish_bundle(self):
        for item, count in self._counts.items():
            yield beam.pvalue.TaggedOutput(COUNTS, GlobalWindows.windowed_value((item, count)))
        self._counts = collections.Counter()


def vocabulary_records(joined, history_length: int, earlier_length: int = 0):
    """``(item, {"count": [...], "facts": [...]})`` -> the item's serialized ``items`` split record (none for an
    item without training events)."""
    item, grouped = joined
    count = sum(grouped["count"])
    if count:
        facts, numeric = min(grouped["facts"], default=_NO_FACTS)
        yield to_tf_example(windowing.vocabulary_record(item, count, facts, numeric, history_length,
                                                        earlier_length))


def _write_outputs(summary, profile, items: int, options: windowing.WindowingOptions, output_dir: str) -> None:
    stats = {"examples": {s: summary["examples"].get(s, 0) for s in features.SPLITS}, "users": summary["users"],
             "vocabulary_items": items,
             "users_skipped": summary["users_skipped"], "duplicate_events": summary["duplicate_events"],
             "training_events": summary["training_events"], "numeric_features": profile["numeric"],
             "options": dataclasses.asdict(options)}
    with tf.io.gfile.GFile(os.path.join(output_dir, STATS_FILE), "w") as f:
        json.dump(stats, f)


def resolve_options(profile, options: windowing.WindowingOptions) -> windowing.WindowingOptions:
    """Fills in the temporal cut timestamps from the per-day event histogram when they were not given."""
    if options.split != windowing.TEMPORAL or (options.eval_start is not None and options.test_start is not None):
        return options
    eval_start, test_start = windowing.temporal_cuts(profile["days"], options.eval_fraction, options.test_fraction)
    return dataclasses.replace(options, eval_start=options.eval_start if options.eval_start is not None
                               else eval_start, test_start=options.test_start if options.test_start is not None
                               else test_start)


@beam.ptransform_fn
def WindowEvents(events, options: windowing.WindowingOptions, output_dir: str):  # pylint: disable=invalid-name
    """Serialized event tf.Examples, one per element -> ``WindowEventBatches``."""
    return (events
            | "Batch" >> beam.BatchElements(min_batch_size=EVENT_BATCH, max_batch_size=EVENT_BATCH)
            | "WindowEventBatches" >> WindowEventBatches(options, output_dir))  # pylint: disable=no-value-for-parameter


@beam.ptransform_fn
def WindowEventBatches(batches, options: windowing.WindowingOptions, output_dir: str):  # pylint: disable=invalid-name
    """Lists of serialized event tf.Examples -> examples per split and ``windowing_stats.json`` under
    ``output_dir``.

    Each batch is decoded at once and its events grouped by user; each item's facts travel once per worker, not
    with every event, and meet the item's training-event count (counted per bundle) in the ``items`` split;
    everything global (temporal cuts, feature names, counts) is computed per batch or per user and merged, so a
    worker holds one user's timeline at a time and no worker holds the catalogue.
    """
    decoded = batches | "Decode" >> beam.ParDo(DecodeEventBatch()).with_outputs(FACTS, PROFILE, main="events")
    timelines = decoded.events | "GroupByUser" >> beam.GroupByKey()
    profile = decoded[PROFILE] | "MergeProfiles" >> beam.CombineGlobally(Profile())
    resolved = profile | "ResolveOptions" >> beam.Map(resolve_options, options)
    windowed = timelines | "Window" >> beam.ParDo(WindowUser(), beam.pvalue.AsSingleton(resolved)).with_outputs(
        "eval", "test", "summary", COUNTS, main="train")
    for split in features.SPLITS:
        _ = windowed[split] | f"Write[{split}]" >> beam.io.WriteToTFRecord(
            os.path.join(features.split_dir(output_dir, split), "data_tfrecord"), file_name_suffix=".gz")
    items = ({"count": windowed[COUNTS], "facts": decoded[FACTS]}
             | "JoinCountsAndFacts" >> beam.CoGroupByKey()
             | "VocabularyRecords" >> beam.FlatMap(vocabulary_records, options.history_length,
                                                                    options.earlier_length))
    _ = items | f"Write[{features.ITEMS_SPLIT}]" >> beam.io.WriteToTFRecord(
        os.path.join(features.split_dir(output_dir, features.ITEMS_SPLIT), "data_tfrecord"), file_name_suffix=".gz")
    _ = (windowed["summary"]
         | "Summarize" >> beam.CombineGlobally(Summary())
         | "WriteStats" >> beam.Map(_write_outputs, beam.pvalue.AsSingleton(profile),
                                    beam.pvalue.AsSingleton(items | "CountItems" >> beam.combiners.Count.Globally()),
                                    beam.pvalue.AsSingleton(resolved), output_dir))


def windowed_schema(history_length: int, numeric_features, earlier_length: int = 0):
    """The schema (``schema_pb2.Schema``) of the windowed examples."""
    from tensorflow_transform.tf_metadata import schema_utils
    return schema_utils.schema_from_feature_spec(features.windowed_feature_spec(history_length, numeric_features,
                                                                                   earlier_length))


class DataAnomaliesError(ValueError):
    """ExampleValidator found anomalies in the events; the message lists them."""


def check_anomalies(anomalies_artifact) -> None:
    """Raises DataAnomaliesError listing every anomaly ExampleValidator recorded (any split)."""
    from tensorflow_data_validation.utils import anomalies_util
    problems = []
    for split in standard_artifact_utils.decode_split_names(anomalies_artifact.split_names):
        path = os.path.join(standard_artifact_utils.get_split_uri([anomalies_artifact], split), "SchemaDiff.pb")
        if not tf.io.gfile.exists(path):
            continue
        anomalies = anomalies_util.load_anomalies_binary(path)
        for feature, info in sorted(anomalies.anomaly_info.items()):
            problems.append(f"{feature}: {info.short_description} ({info.description})")
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            problems.append(f"dataset: {info.short_description} ({info.description})")
    if problems:
        raise DataAnomaliesError("ExampleValidator found anomalies in the events, so the run stops before "
                                 "training; fix the data or the event spec (the curated schema follows it):\n  "
                                 + "\n  ".join(problems))


class Executor(base_beam_executor.BaseBeamExecutor):
    """Windows events into train / eval / test examples and writes their schema."""

    def Do(self, input_dict: Dict[str, List[Any]], output_dict: Dict[str, List[Any]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        for anomalies in input_dict.get(ANOMALIES_KEY) or []:
            check_anomalies(anomalies)
        options = windowing.WindowingOptions.from_json(exec_properties[OPTIONS_KEY])
        events_artifact = artifact_utils.get_single_instance(input_dict[EVENTS_KEY])
        pattern = io_utils.all_files_pattern(standard_artifact_utils.get_split_uri([events_artifact],
                                                                                    features.EVENTS_SPLIT))
        output = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        output.split_names = standard_artifact_utils.encode_split_names(
            list(features.SPLITS) + [features.ITEMS_SPLIT])

        files = sorted(tf.io.gfile.glob(pattern))
        if not files:
            raise FileNotFoundError(f"no event files match {pattern}")
        with self._make_beam_pipeline() as pipeline:
            _ = (pipeline
                 | "EventFiles" >> beam.Create(files)
                 | "Spread" >> beam.Reshuffle()
                 | "ReadEvents" >> beam.ParDo(ReadRecordBatches())
                 | "WindowEventBatches" >> WindowEventBatches(options, output.uri))  # pylint: disable=no-value-for-parameter

        with tf.io.gfile.GFile(os.path.join(output.uri, STATS_FILE)) as f:
            stats = json.load(f)
        for split_name in features.SPLITS:
            output.set_int_custom_property(f"{split_name}_examples", int(stats["examples"].get(split_name, 0)))
        output.set_int_custom_property("users", int(stats["users"]))
        output.set_int_custom_property("users_skipped", int(stats["users_skipped"]))
        output.set_int_custom_property("duplicate_events", int(stats["duplicate_events"]))
        output.set_int_custom_property("training_events", int(stats["training_events"]))
        output.set_int_custom_property("vocabulary_items", int(stats["vocabulary_items"]))
        schema = artifact_utils.get_single_instance(output_dict[SCHEMA_KEY])
        io_utils.write_pbtxt_file(os.path.join(schema.uri, SCHEMA_FILE),
                                  windowed_schema(options.history_length, stats["numeric_features"],
                                                  options.earlier_length))
        output.set_int_custom_property("history_length", options.history_length)
        output.set_string_custom_property("split_mode", options.split)
        resolved = stats["options"]
        if resolved.get("test_start") is not None:
            output.set_int_custom_property("eval_start", int(resolved["eval_start"]))
            output.set_int_custom_property("test_start", int(resolved["test_start"]))
        if not stats["examples"].get("train"):
            raise ValueError(f"windowing produced no training examples from {pattern}: every user has fewer "
                             f"than {options.min_timeline_length} events")
