"""Beam executor of HistoryWindowing.

Events are grouped per user (one worker holds one user's timeline at a time), windowed with
``windowing.window_timeline`` and written as gzipped TFRecords into ``Split-train``, ``Split-eval`` and
``Split-test``. The vocabulary (movies occurring in training, with counts, titles, genres) is written as
``vocabulary.json`` at the root of the output artifact, where the Trainer and Pusher read it.
"""

from __future__ import annotations

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
EXAMPLES_KEY = "examples"
STATS_FILE = "windowing_stats.json"


def parse_event(serialized: bytes):
    """tf.Example bytes of one rating event -> (Event, (movie_id, metadata dict))."""
    feature = tf.train.Example.FromString(serialized).features.feature

    def values(name, kind):
        return getattr(feature[name], kind).value if name in feature else []

    def first(name, kind, default):
        found = values(name, kind)
        return found[0] if found else default

    event = windowing.Event(
        user_id=int(first(features.EVENT_USER_ID, "int64_list", 0)),
        movie_id=int(first(features.EVENT_MOVIE_ID, "int64_list", 0)),
        timestamp=int(first(features.EVENT_TIMESTAMP, "int64_list", 0)),
        rating=float(first(features.EVENT_RATING, "float_list", 0.0)),
        year=int(first(features.EVENT_YEAR, "int64_list", 0)))
    metadata = {"title": first(features.EVENT_TITLE, "bytes_list", b"").decode("utf-8"),
                "genres": [g.decode("utf-8") for g in values(features.EVENT_GENRES, "bytes_list")],
                "year": event.year}
    return event, (event.movie_id, metadata)


def to_tf_example(example: dict) -> bytes:
    feature = {}
    for name, value in example.items():
        values = value if isinstance(value, list) else [value]
        if name == features.CONTEXT_MOVIE_RATING:
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
        else:
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _any_metadata(values):
    """Every event of a movie carries the same metadata; keep the first non-empty one."""
    chosen = {}
    for value in values:
        if value and value.get("title"):
            return value
        chosen = chosen or value
    return chosen


def _write_vocabulary(rows, output_dir: str, max_movie_id: int) -> None:
    counts = {movie_id: count for movie_id, (count, _) in rows}
    metadata = {movie_id: meta for movie_id, (_, meta) in rows}
    vocabulary.build(counts, max_movie_id, metadata).save(output_dir)


def _write_stats(split_counts, output_dir: str, users: int, skipped: int) -> None:
    stats = {"examples": dict(sorted(split_counts)), "users": users, "users_skipped": skipped}
    with tf.io.gfile.GFile(os.path.join(output_dir, STATS_FILE), "w") as f:
        json.dump(stats, f)


@beam.ptransform_fn
def WindowEvents(events, options: windowing.WindowingOptions, output_dir: str):  # pylint: disable=invalid-name
    """Serialized event tf.Examples -> examples per split and vocabulary files under ``output_dir``."""
    parsed = events | "ParseEvents" >> beam.Map(parse_event)
    timelines = (parsed
                 | "KeyByUser" >> beam.Map(lambda pair: (pair[0].user_id, pair[0]))
                 | "GroupByUser" >> beam.GroupByKey())
    windowed = timelines | "Window" >> beam.FlatMap(
        lambda kv: ((split, to_tf_example(example)) for split, example in windowing.window_timeline(kv[1], options)))
    per_split = windowed | "BySplit" >> beam.Partition(lambda item, n: features.SPLITS.index(item[0]),
                                                       len(features.SPLITS))
    for split, examples in zip(features.SPLITS, per_split):
        _ = (examples
             | f"Drop[{split}]" >> beam.Values()
             | f"Write[{split}]" >> beam.io.WriteToTFRecord(
                 os.path.join(output_dir, f"Split-{split}", "data_tfrecord"), file_name_suffix=".gz"))

    counts = (timelines
              | "TrainingEvents" >> beam.FlatMap(lambda kv: [e.movie_id for e in
                                                             windowing.training_events(kv[1], options)])
              | "CountMovies" >> beam.combiners.Count.PerElement())
    metadata = (parsed
                | "MovieMetadata" >> beam.Map(lambda pair: pair[1])
                | "OnePerMovie" >> beam.CombinePerKey(_any_metadata))
    max_movie_id = parsed | "MovieIds" >> beam.Map(lambda pair: pair[0].movie_id) | beam.CombineGlobally(max)
    _ = ({"count": counts, "meta": metadata}
         | "JoinMetadata" >> beam.CoGroupByKey()
         | "TrainingMoviesOnly" >> beam.FlatMap(
             lambda kv: [(kv[0], (kv[1]["count"][0], kv[1]["meta"][0] if kv[1]["meta"] else {}))]
             if kv[1]["count"] else [])
         | "CollectVocabulary" >> beam.combiners.ToList()
         | "WriteVocabulary" >> beam.Map(_write_vocabulary, output_dir=output_dir,
                                         max_movie_id=beam.pvalue.AsSingleton(max_movie_id)))

    users = timelines | "CountUsers" >> beam.combiners.Count.Globally()
    skipped = (timelines
               | "ShortTimelines" >> beam.Filter(
                   lambda kv: len(list(kv[1])) < options.min_timeline_length)
               | "CountSkipped" >> beam.combiners.Count.Globally())
    _ = (windowed
         | "SplitNames" >> beam.Map(lambda item: item[0])
         | "CountPerSplit" >> beam.combiners.Count.PerElement()
         | "CollectCounts" >> beam.combiners.ToList()
         | "WriteStats" >> beam.Map(_write_stats, output_dir=output_dir,
                                    users=beam.pvalue.AsSingleton(users),
                                    skipped=beam.pvalue.AsSingleton(skipped)))


class Executor(base_beam_executor.BaseBeamExecutor):
    """Windows MovieLens events into leave-last-out train / eval / test examples."""

    def Do(self, input_dict: Dict[str, List[Any]], output_dict: Dict[str, List[Any]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        options = windowing.WindowingOptions(
            history_length=int(exec_properties["history_length"]),
            min_timeline_length=int(exec_properties.get("min_timeline_length") or 3))
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
        output.set_int_custom_property("history_length", options.history_length)
        if not stats["examples"].get("train"):
            raise ValueError(f"windowing produced no training examples from {pattern}: every user has fewer "
                             f"than {options.min_timeline_length} ratings")
