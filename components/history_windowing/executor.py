"""Beam executor of HistoryWindowing.

Events are grouped per user (one worker holds one user's timeline at a time), windowed with
``windowing.window_timeline`` and written as gzipped TFRecords into ``Split-train``, ``Split-eval`` and
``Split-test``. The vocabulary (movies occurring in training, with counts, titles, genres) is written as
``vocabulary.json`` at the root of the output artifact, where the Trainer and Pusher read it.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Any, Dict, List

import apache_beam as beam
import tensorflow as tf
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils, standard_artifact_utils
from tfx.utils import io_utils

from ondevice_rec.components.history_windowing import windowing
from ondevice_rec.modules import features, vocabulary

EVENTS_KEY = "events"
ANOMALIES_KEY = "anomalies"
EXAMPLES_KEY = "examples"
OPTIONS_KEY = "options"
STATS_FILE = features.WINDOWING_STATS_FILE


def parse_event(serialized: bytes):
    """tf.Example bytes of one rating event -> (Event, (movie_id, metadata dict))."""
    feature = tf.train.Example.FromString(serialized).features.feature
    genres = tuple(g.decode("utf-8") for g in feature[features.EVENT_GENRES].bytes_list.value) \
        if features.EVENT_GENRES in feature else ()
    title = feature[features.EVENT_TITLE].bytes_list.value if features.EVENT_TITLE in feature else ()
    year = feature[features.EVENT_YEAR].int64_list.value if features.EVENT_YEAR in feature else ()
    event = windowing.Event(
        user_id=feature[features.EVENT_USER_ID].int64_list.value[0],
        movie_id=feature[features.EVENT_MOVIE_ID].int64_list.value[0],
        timestamp=feature[features.EVENT_TIMESTAMP].int64_list.value[0],
        rating=feature[features.EVENT_RATING].float_list.value[0] if features.EVENT_RATING in feature else 0.0,
        year=year[0] if year else 0,
        genres=genres)
    metadata = {"title": title[0].decode("utf-8") if title else "", "genres": list(genres), "year": event.year}
    return event, (event.movie_id, metadata)


_FLOAT_FEATURES = frozenset({features.CONTEXT_MOVIE_RATING})


def to_tf_example(example: dict) -> bytes:
    """Serializes a windowed example (lists become int64 / float lists; scalars one-element lists)."""
    proto = tf.train.Example()
    feature_map = proto.features.feature
    for name, value in example.items():
        values = value if isinstance(value, list) else [value]
        if name in _FLOAT_FEATURES:
            feature_map[name].float_list.value.extend(values)
        else:
            feature_map[name].int64_list.value.extend(values)
    return proto.SerializeToString()


class Profile(beam.CombineFn):
    """Global facts gathered per user and merged: genre names, events per day, movie metadata, max id."""

    def create_accumulator(self):
        return {"genres": set(), "days": collections.Counter(), "movies": {}, "max_movie_id": 0}

    def add_input(self, accumulator, timeline):
        movies = accumulator["movies"]
        for movie_id, timestamp, _, year, genres, title in timeline:
            accumulator["genres"].update(genres)
            accumulator["days"][timestamp // 86400] += 1
            if movie_id not in movies or (title and not movies[movie_id]["title"]):
                movies[movie_id] = {"title": title, "genres": list(genres), "year": year}
            accumulator["max_movie_id"] = max(accumulator["max_movie_id"], movie_id)
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for a in accumulators:
            merged["genres"] |= a["genres"]
            merged["days"].update(a["days"])
            for movie_id, meta in a["movies"].items():
                if movie_id not in merged["movies"] or (meta["title"] and not merged["movies"][movie_id]["title"]):
                    merged["movies"][movie_id] = meta
            merged["max_movie_id"] = max(merged["max_movie_id"], a["max_movie_id"])
        return merged

    def extract_output(self, accumulator):
        return accumulator


class Summary(beam.CombineFn):
    """Per-split example counts, user counts and training movie counts, merged over users."""

    def create_accumulator(self):
        return {"examples": collections.Counter(), "users": 0, "users_skipped": 0, "duplicate_ratings": 0,
                "movie_counts": collections.Counter()}

    def add_input(self, accumulator, user_summary):
        accumulator["examples"].update(user_summary["examples"])
        accumulator["users"] += 1
        accumulator["users_skipped"] += int(user_summary["skipped"])
        accumulator["duplicate_ratings"] += user_summary["duplicates"]
        accumulator["movie_counts"].update(user_summary["movie_counts"])
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for a in accumulators:
            merged["examples"].update(a["examples"])
            merged["users"] += a["users"]
            merged["users_skipped"] += a["users_skipped"]
            merged["duplicate_ratings"] += a["duplicate_ratings"]
            merged["movie_counts"].update(a["movie_counts"])
        return merged

    def extract_output(self, accumulator):
        return accumulator


class WindowUser(beam.DoFn):
    """One user's timeline -> serialized examples on the ``train`` / ``eval`` / ``test`` outputs, plus a
    ``summary`` output (counts for the statistics and the vocabulary)."""

    def process(self, keyed_timeline, options: windowing.WindowingOptions, profile):
        user_id, timeline = keyed_timeline
        events = [windowing.Event(user_id, movie_id, timestamp, rating, year, genres)
                  for movie_id, timestamp, rating, year, genres, _ in timeline]
        index = windowing.genre_index(profile["genres"])
        counts = collections.Counter()
        for split, example in windowing.window_timeline(events, options, index):
            counts[split] += 1
            serialized = to_tf_example(example)
            yield serialized if split == "train" else beam.pvalue.TaggedOutput(split, serialized)
        kept = len(windowing.sort_timeline(events, options.min_rating))
        duplicates = sum(e.rating >= options.min_rating for e in events) - kept
        yield beam.pvalue.TaggedOutput("summary", {
            "examples": counts, "skipped": kept < options.min_timeline_length, "duplicates": duplicates,
            "movie_counts": collections.Counter(e.movie_id for e in windowing.training_events(events, options))})


def _write_outputs(summary, profile, options: windowing.WindowingOptions, output_dir: str) -> None:
    vocab = vocabulary.build(dict(summary["movie_counts"]), profile["max_movie_id"], profile["movies"])
    vocab.genres = sorted(profile["genres"])  # genre id i + 1 in context_movie_genre is genres[i]
    vocab.save(output_dir)
    stats = {"examples": {s: summary["examples"].get(s, 0) for s in features.SPLITS}, "users": summary["users"],
             "users_skipped": summary["users_skipped"], "duplicate_ratings": summary["duplicate_ratings"],
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
    """Serialized event tf.Examples -> examples per split and vocabulary files under ``output_dir``.

    Each event is parsed once and grouped by user; everything global (genre names, temporal cuts, movie
    metadata, counts) is computed per user and merged, so a worker holds one user's timeline at a time and
    per-event work stays minimal.
    """
    timelines = (events
                 | "ParseAndKey" >> beam.Map(lambda record: _keyed(parse_event(record)))
                 | "GroupByUser" >> beam.GroupByKey())
    profile = timelines | "Profile" >> beam.Values() | "MergeProfiles" >> beam.CombineGlobally(Profile())
    resolved = profile | "ResolveOptions" >> beam.Map(resolve_options, options)
    windowed = timelines | "Window" >> beam.ParDo(
        WindowUser(), beam.pvalue.AsSingleton(resolved), beam.pvalue.AsSingleton(profile)
    ).with_outputs("eval", "test", "summary", main="train")
    for split in features.SPLITS:
        _ = windowed[split] | f"Write[{split}]" >> beam.io.WriteToTFRecord(
            os.path.join(output_dir, f"Split-{split}", "data_tfrecord"), file_name_suffix=".gz")
    _ = (windowed["summary"]
         | "Summarize" >> beam.CombineGlobally(Summary())
         | "WriteVocabularyAndStats" >> beam.Map(_write_outputs, beam.pvalue.AsSingleton(profile),
                                                 beam.pvalue.AsSingleton(resolved), output_dir))


def _keyed(parsed):
    """(user_id, plain tuple): primitives take Beam's fast coder across the GroupByKey (no pickling)."""
    event, (_, metadata) = parsed
    return event.user_id, (event.movie_id, event.timestamp, event.rating, event.year, event.genres,
                           metadata["title"])


class DataAnomaliesError(ValueError):
    """ExampleValidator found anomalies in the rating events; the message lists them."""


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
        raise DataAnomaliesError("ExampleValidator found anomalies in the rating events, so the run stops before "
                                 "training; fix the data or the schema (pipeline/rating_events.schema.pbtxt):\n  "
                                 + "\n  ".join(problems))


class Executor(base_beam_executor.BaseBeamExecutor):
    """Windows MovieLens events into leave-last-out train / eval / test examples."""

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
        output.set_int_custom_property("duplicate_ratings", int(stats["duplicate_ratings"]))
        output.set_int_custom_property("history_length", options.history_length)
        output.set_string_custom_property("split_mode", options.split)
        resolved = stats["options"]
        if resolved.get("test_start") is not None:
            output.set_int_custom_property("eval_start", int(resolved["eval_start"]))
            output.set_int_custom_property("test_start", int(resolved["test_start"]))
        if not stats["examples"].get("train"):
            raise ValueError(f"windowing produced no training examples from {pattern}: every user has fewer "
                             f"than {options.min_timeline_length} ratings")
