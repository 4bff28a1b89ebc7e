"""Beam executor of MovieLensExampleGen: ratings + movie metadata -> one tf.Example per rating event.

Each event carries ``user_id``, ``movie_id``, ``timestamp``, ``rating`` and the movie's ``title``, ``genres``
and ``year`` (empty / 0 when the movies file does not list it). The input split pattern selects files under
``input_base``; every folder that holds a matched file is read as one MovieLens folder, whose layout
(ml-1m, ml-100k, ml-latest) is detected from the files present.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

import apache_beam as beam
import tensorflow as tf
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.dsl.io import fileio

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


class _ParseRatings(beam.DoFn):
    """Ratings lines of one file -> tf.Examples joined with that folder's movie table."""

    def __init__(self, fmt: movielens.DatasetFormat, path: str, movies: Dict[int, movielens.Movie]):
        self._fmt, self._path, self._movies = fmt, path, movies
        self._missing_movie = beam.metrics.Metrics.counter("movielens", "ratings_of_unlisted_movies")

    def process(self, line: str):
        if not line.strip():
            return
        rating = movielens.parse_rating_line(self._fmt, line, self._path)
        movie = self._movies.get(rating.movie_id)
        if movie is None:
            self._missing_movie.inc()
        yield rating_to_example(rating, movie)


def matched_folders(input_base: str, split_pattern: str):
    files = fileio.glob(os.path.join(input_base, split_pattern))
    if not files:
        raise FileNotFoundError(f"no files match {os.path.join(input_base, split_pattern)}")
    return sorted({os.path.dirname(f) for f in files})


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def MovieLensToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],  # pylint: disable=invalid-name
                       split_pattern: str) -> beam.pvalue.PCollection:
    parts = []
    for i, folder in enumerate(matched_folders(exec_properties["input_base"], split_pattern)):
        fmt = movielens.detect_format(folder)
        movies = movielens.read_movies(folder, fmt)
        path = fmt.ratings_path(folder)
        parts.append(pipeline
                     | f"Read[{i}]" >> beam.io.ReadFromText(path, skip_header_lines=1 if fmt.has_header else 0)
                     | f"Parse[{i}]" >> beam.ParDo(_ParseRatings(fmt, path, movies)))
    return parts | "Flatten" >> beam.Flatten()


class Executor(BaseExampleGenExecutor):
    """Reads MovieLens folders (any supported layout) into rating-event tf.Examples."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return MovieLensToExample
