"""Beam executor of HistoryWindowing.

Events are grouped per user (one worker holds one user's timeline at a time), windowed with
``windowing.window_timeline`` and written as gzipped TFRecords into ``Split-train``, ``Split-eval`` and
``Split-test``, with string item keys. The schema of those examples goes to the ``schema`` output (the
Transform component's input schema); counts and the resolved options to ``windowing_stats.json``.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Any, Dict, List, Optional, Tuple

import apache_beam as beam
import tensorflow as tf
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


def _first(feature, name, kind, default):
    if name not in feature:
        return default
    values = getattr(feature[name], kind).value
    return values[0] if values else default


def parse_event(serialized: bytes, item_facts: Optional[Dict[str, tuple]] = None) -> windowing.Event:
    """tf.Example bytes of one event -> Event (with its item's facts for the vocabulary).

    ``item_facts``: a cache of ``(facts, numeric)`` by item key. An item's features are the same in all its
    events (ExampleGen joins them from the items file), so they are decoded once per item: that was 60 % of
    this function on ML-1M."""
    feature = tf.train.Example.FromString(serialized).features.feature
    item = feature[features.EVENT_ITEM_ID].bytes_list.value[0].decode("utf-8")
    cached = item_facts.get(item) if item_facts is not None else None
    facts, numeric = cached if cached is not None else _item_facts(feature)
    if item_facts is not None and cached is None:
        item_facts[item] = (facts, numeric)
    return windowing.Event(
        user_id=feature[features.EVENT_USER_ID].bytes_list.value[0].decode("utf-8"),
        item=item,
        timestamp=feature[features.EVENT_TIMESTAMP].int64_list.value[0],
        rating=_first(feature, features.EVENT_RATING, "float_list", 0.0),
        facts=facts, numeric=numeric, millis=_first(feature, features.EVENT_MILLIS, "int64_list", 0))


def _item_facts(feature) -> Tuple[tuple, tuple]:
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


class _ParseAndKey(beam.DoFn):
    """Serialized event -> (user_id, plain tuple), with one item-facts cache per worker."""

    def setup(self):
        self._item_facts: Dict[str, tuple] = {}

    def process(self, record: bytes):
        yield _keyed(parse_event(record, self._item_facts))


_FLOAT_FEATURES = frozenset({features.CONTEXT_RATING})


def to_tf_example(example: dict) -> bytes:
    """Serializes a windowed example (strings, int64, float lists; scalars become one-element lists)."""
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
    """Global facts gathered per user and merged: events per day (temporal cuts), numeric feature names."""

    def create_accumulator(self):
        return {"days": collections.Counter(), "numeric": set()}

    def add_input(self, accumulator, timeline):
        for event in timeline:
            accumulator["days"][event[1] // 86400] += 1
            accumulator["numeric"].update(name for name, _ in event[4])
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


class WindowUser(beam.DoFn):
    """One user's timeline -> serialized examples on the ``train`` / ``eval`` / ``test`` outputs, plus a
    ``summary`` output (counts for the statistics)."""

    def process(self, keyed_timeline, options: windowing.WindowingOptions, profile):
        user_id, timeline = keyed_timeline
        events = [windowing.Event(user_id, item, timestamp, rating, facts, numeric, millis)
                  for item, timestamp, rating, facts, numeric, millis in timeline]
        counts = collections.Counter()
        for split, example in windowing.window_timeline(events, options, profile["numeric"]):
            counts[split] += 1
            serialized = to_tf_example(example)
            yield serialized if split == "train" else beam.pvalue.TaggedOutput(split, serialized)
        kept = windowing.sort_timeline(events, options.min_rating)
        duplicates = sum(e.rating >= options.min_rating for e in events) - len(kept)
        yield beam.pvalue.TaggedOutput("summary", {
            "examples": counts, "skipped": len(kept) < options.min_timeline_length, "duplicates": duplicates,
            "training_events": len(windowing.training_positions(kept, options)) if counts["train"] else 0})


def _write_outputs(summary, profile, options: windowing.WindowingOptions, output_dir: str) -> None:
    stats = {"examples": {s: summary["examples"].get(s, 0) for s in features.SPLITS}, "users": summary["users"],
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
    """Serialized event tf.Examples -> examples per split and ``windowing_stats.json`` under ``output_dir``.

    Each event is parsed once and grouped by user; everything global (temporal cuts, feature names, counts)
    is computed per user and merged, so a worker holds one user's timeline at a time.
    """
    timelines = (events
                 | "ParseAndKey" >> beam.ParDo(_ParseAndKey())
                 | "GroupByUser" >> beam.GroupByKey())
    profile = timelines | "Profile" >> beam.Values() | "MergeProfiles" >> beam.CombineGlobally(Profile())
    resolved = profile | "ResolveOptions" >> beam.Map(resolve_options, options)
    windowed = timelines | "Window" >> beam.ParDo(
        WindowUser(), beam.pvalue.AsSingleton(resolved), beam.pvalue.AsSingleton(profile)
    ).with_outputs("eval", "test", "summary", main="train")
    for split in features.SPLITS:
        _ = windowed[split] | f"Write[{split}]" >> beam.io.WriteToTFRecord(
            os.path.join(features.split_dir(output_dir, split), "data_tfrecord"), file_name_suffix=".gz")
    _ = (windowed["summary"]
         | "Summarize" >> beam.CombineGlobally(Summary())
         | "WriteStats" >> beam.Map(_write_outputs, beam.pvalue.AsSingleton(profile),
                                    beam.pvalue.AsSingleton(resolved), output_dir))


def _keyed(event: windowing.Event):
    """(user_id, plain tuple): primitives take Beam's fast coder across the GroupByKey (no pickling)."""
    return event.user_id, (event.item, event.timestamp, event.rating, event.facts, event.numeric, event.millis)


def windowed_schema(history_length: int, numeric_features):
    """The schema (``schema_pb2.Schema``) of the windowed examples."""
    from tensorflow_transform.tf_metadata import schema_utils
    return schema_utils.schema_from_feature_spec(features.windowed_feature_spec(history_length, numeric_features))


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
        split = standard_artifact_utils.decode_split_names(events_artifact.split_names)[0]
        pattern = io_utils.all_files_pattern(standard_artifact_utils.get_split_uri([events_artifact], split))
        output = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        output.split_names = standard_artifact_utils.encode_split_names(list(features.SPLITS))

        with self._make_beam_pipeline() as pipeline:
            _ = (pipeline
                 | "ReadEvents" >> beam.io.ReadFromTFRecord(pattern)
                 | "WindowEvents" >> WindowEvents(options, output.uri))  # pylint: disable=no-value-for-parameter

        with tf.io.gfile.GFile(os.path.join(output.uri, STATS_FILE)) as f:
            stats = json.load(f)
        for split_name in features.SPLITS:
            output.set_int_custom_property(f"{split_name}_examples", int(stats["examples"].get(split_name, 0)))
        output.set_int_custom_property("users", int(stats["users"]))
        output.set_int_custom_property("users_skipped", int(stats["users_skipped"]))
        output.set_int_custom_property("duplicate_events", int(stats["duplicate_events"]))
        output.set_int_custom_property("training_events", int(stats["training_events"]))
        schema = artifact_utils.get_single_instance(output_dict[SCHEMA_KEY])
        io_utils.write_pbtxt_file(os.path.join(schema.uri, SCHEMA_FILE),
                                  windowed_schema(options.history_length, stats["numeric_features"]))
        output.set_int_custom_property("history_length", options.history_length)
        output.set_string_custom_property("split_mode", options.split)
        resolved = stats["options"]
        if resolved.get("test_start") is not None:
            output.set_int_custom_property("eval_start", int(resolved["eval_start"]))
            output.set_int_custom_property("test_start", int(resolved["test_start"]))
        if not stats["examples"].get("train"):
            raise ValueError(f"windowing produced no training examples from {pattern}: every user has fewer "
                             f"than {options.min_timeline_length} events")
