"""Beam executor of MovieLensExampleGen: ratings + movie metadata -> one tf.Example per rating event.

Each event carries ``user_id``, ``movie_id``, ``timestamp``, ``rating`` and the movie's ``title``, ``genres``
and ``year`` (empty / 0 when the movies file does not list it). The input split pattern selects files under
``input_base``; every folder that holds a matched file is read as one MovieLens folder, whose layout
(ml-1m, ml-100k, ml-latest) is detected from the files present.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, Optional

import apache_beam as beam
import tensorflow as tf
from google.protobuf import json_format, struct_pb2
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.utils import proto_utils

from ondevice_rec.data import movielens
from ondevice_rec.modules import features


def rating_to_example(rating: movielens.Rating, movie: Optional[movielens.Movie]) -> tf.train.Example:
    def ints(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=v))

    def floats(v):
        return tf.train.Feature(float_list=tf.train.FloatList(value=v))

    def strings(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[s.encode("utf-8") for s in v]))

    return tf.train.Example(features=tf.train.Features(feature={
        features.EVENT_USER_ID: ints([rating.user_id]),
        features.EVENT_MOVIE_ID: ints([rating.movie_id]),
        features.EVENT_TIMESTAMP: ints([rating.timestamp]),
        features.EVENT_RATING: floats([rating.rating]),
        features.EVENT_TITLE: strings([movie.title if movie else ""]),
        features.EVENT_GENRES: strings(list(movie.genres) if movie else []),
        features.EVENT_YEAR: ints([movie.year if movie else 0]),
    }))


DEFAULT_MAX_BAD_FRACTION = movielens.DEFAULT_MAX_BAD_FRACTION
REPORT_FILE = features.INPUT_REPORT_FILE
BAD_SAMPLES = 20
BAD = "bad"


def read_numbered_lines(path: str, skip_header: bool, encoding: str):
    """``(path, line_number, text)`` for every non-empty line (1-based numbers, as an editor shows them)."""
    with tf.io.gfile.GFile(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if (skip_header and number == 1) or not raw.strip():
                continue
            yield path, number, movielens.decode_line(raw, encoding)


class _ParseRatings(beam.DoFn):
    """Numbered ratings lines -> tf.Examples joined with the folder's movie table; bad lines go to ``BAD``."""

    def __init__(self, fmt: movielens.DatasetFormat, movies: Dict[int, movielens.Movie]):
        self._fmt, self._movies = fmt, movies

    def process(self, numbered):
        path, number, line = numbered
        try:
            rating = movielens.parse_rating_line(self._fmt, line, path, number)
        except movielens.DataFormatError as e:
            yield beam.pvalue.TaggedOutput(BAD, (path, number, str(e)))
            return
        movie = self._movies.get(rating.movie_id)
        yield rating_to_example(rating, movie)


def matched_folders(input_base: str, split_pattern: str):
    files = fileio.glob(os.path.join(input_base, split_pattern))
    if not files:
        raise FileNotFoundError(f"no files match {os.path.join(input_base, split_pattern)}")
    return sorted({os.path.dirname(f) for f in files})


def _is_unlisted(example: tf.train.Example) -> int:
    return int(not example.features.feature[features.EVENT_TITLE].bytes_list.value[0])


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def MovieLensToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],  # pylint: disable=invalid-name
                       split_pattern: str, report_path: Optional[str] = None) -> beam.pvalue.PCollection:
    """Rating events of every matched folder; with ``report_path``, also writes line counts and bad lines."""
    good, bad = [], []
    for i, folder in enumerate(matched_folders(exec_properties["input_base"], split_pattern)):
        fmt = movielens.detect_format(folder)
        movies = movielens.read_movies(folder, fmt)
        path = fmt.ratings_path(folder)
        parsed = (pipeline
                  | f"Path[{i}]" >> beam.Create([path])
                  | f"Read[{i}]" >> beam.FlatMap(read_numbered_lines, fmt.has_header, fmt.encoding)
                  | f"Reshuffle[{i}]" >> beam.Reshuffle()
                  | f"Parse[{i}]" >> beam.ParDo(_ParseRatings(fmt, movies)).with_outputs(BAD, main="examples"))
        good.append(parsed.examples)
        bad.append(parsed[BAD])
    examples = good | "Flatten" >> beam.Flatten()
    if report_path:
        bad_lines = bad | "FlattenBad" >> beam.Flatten()
        counts = {
            "ratings": examples | "CountRatings" >> beam.combiners.Count.Globally(),
            "unlisted": examples | "Unlisted" >> beam.Map(_is_unlisted) | "CountUnlisted" >> beam.CombineGlobally(sum),
            "bad": bad_lines | "CountBad" >> beam.combiners.Count.Globally(),
            "samples": bad_lines | "FirstBad" >> beam.combiners.Top.Smallest(BAD_SAMPLES),
        }
        _ = (pipeline
             | "Report" >> beam.Create([None])
             | "WriteReport" >> beam.Map(_write_report, report_path,
                                         **{k: beam.pvalue.AsSingleton(v) for k, v in counts.items()}))
    return examples


def _write_report(_, path: str, ratings: int, unlisted: int, bad: int, samples) -> None:
    report = {"rating_lines": ratings + bad, "ratings": ratings, "bad_lines": bad,
              "ratings_of_unlisted_movies": unlisted,
              "bad_line_samples": [{"file": f, "line": n, "error": e} for f, n, e in samples]}
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(report, f, indent=1)


def check_report(report: dict, max_bad_fraction: float) -> None:
    """Raises DataFormatError when there is nothing to train on or too many lines are malformed."""
    samples = report["bad_line_samples"]
    if report["ratings"] == 0:
        detail = f"; first error: {samples[0]['error']}" if samples else ""
        raise movielens.DataFormatError(report.get("input", "input"), None, f"no valid ratings{detail}")
    fraction = report["bad_lines"] / max(1, report["rating_lines"])
    if fraction > max_bad_fraction:
        first = "\n  ".join(s["error"] for s in samples[:5])
        raise movielens.DataFormatError(
            report.get("input", "input"), None,
            f"{report['bad_lines']} of {report['rating_lines']} ratings lines ({fraction:.2%}) are malformed, more "
            f"than --max-bad-fraction {max_bad_fraction:g} allows; the first:\n  {first}")


def custom_settings(exec_properties: Dict[str, Any]) -> Dict[str, Any]:
    """The component's ``custom_config`` (a Struct packed in example_gen_pb2.CustomConfig) as a dict."""
    raw = exec_properties.get("custom_config")
    if not raw:
        return {}
    config = example_gen_pb2.CustomConfig()
    proto_utils.json_to_proto(raw, config) if isinstance(raw, str) else config.CopyFrom(raw)
    if not config.HasField("custom_config"):
        return {}
    settings = struct_pb2.Struct()
    config.custom_config.Unpack(settings)
    return json_format.MessageToDict(settings)


class Executor(BaseExampleGenExecutor):
    """Reads MovieLens folders (any supported layout) into rating-event tf.Examples.

    Malformed ratings lines are skipped and counted; more than ``max_bad_fraction`` of them (default ``movielens.DEFAULT_MAX_BAD_FRACTION``)
    fails the component with the first errors (file and line). Counts are recorded on the examples artifact
    (``rating_lines``, ``bad_lines``, ``ratings_of_unlisted_movies``) and in ``input_report.json`` next to
    its splits.
    """

    _report_path: Optional[str] = None

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        report_path = self._report_path
        return lambda exec_properties, split_pattern: MovieLensToExample(  # pylint: disable=no-value-for-parameter
            exec_properties, split_pattern, report_path)

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        examples = artifact_utils.get_single_instance(output_dict["examples"])
        self._report_path = os.path.join(examples.uri, REPORT_FILE)
        super().Do(input_dict, output_dict, exec_properties)
        with tf.io.gfile.GFile(self._report_path) as f:
            report = json.load(f)
        report["input"] = os.path.join(exec_properties["input_base"], "")
        for key in ("rating_lines", "bad_lines", "ratings_of_unlisted_movies"):
            examples.set_int_custom_property(key, int(report[key]))
        for sample in report["bad_line_samples"]:
            logging.warning("skipped: %s", sample["error"])
        check_report(report, float(custom_settings(exec_properties).get("max_bad_fraction",
                                                                          DEFAULT_MAX_BAD_FRACTION)))
