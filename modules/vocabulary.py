"""The movie vocabulary: which movies a model may recommend, their titles, genres and training counts.

Index 0 is the padding / out-of-vocabulary slot; movies that occur in training get indices 1..V by descending
count (ties by id). A movie that never occurs in training has no index and can never be recommended.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, List, Sequence

import numpy as np

from .features import PADDING_ID, VOCABULARY_FILE


@dataclasses.dataclass
class MovieEntry:
    movie_id: int
    count: int
    title: str = ""
    genres: Sequence[str] = ()
    year: int = 0


@dataclasses.dataclass
class Vocabulary:
    movies: List[MovieEntry]  # in index order: movies[i] has index i + 1
    max_movie_id: int  # largest id seen anywhere in the data (train, eval or test)
    genres: List[str] = dataclasses.field(default_factory=list)

    @property
    def size(self) -> int:
        """Number of indices including the padding slot."""
        return len(self.movies) + 1

    def index_to_id(self) -> np.ndarray:
        return np.array([PADDING_ID] + [m.movie_id for m in self.movies], dtype=np.int32)

    def id_to_index(self) -> np.ndarray:
        """Dense table: ``table[movie_id]`` is the index, 0 for padding and unknown ids."""
        table = np.zeros(self.max_movie_id + 1, dtype=np.int32)
        for index, movie in enumerate(self.movies, start=1):
            table[movie.movie_id] = index
        return table

    def titles(self) -> Dict[int, str]:
        return {m.movie_id: m.title for m in self.movies}

    def to_json(self) -> dict:
        return {
            "max_movie_id": self.max_movie_id,
            "genres": list(self.genres),
            "movies": [dataclasses.asdict(m) | {"genres": list(m.genres)} for m in self.movies],
        }

    @classmethod
    def from_json(cls, data: dict) -> "Vocabulary":
        movies = [MovieEntry(m["movie_id"], m["count"], m.get("title", ""), tuple(m.get("genres", ())),
                             m.get("year", 0)) for m in data["movies"]]
        return cls(movies, int(data["max_movie_id"]), list(data.get("genres", [])))

    def save(self, directory: str) -> str:
        import tensorflow as tf  # gfile so that GCS / S3 pipeline roots work
        tf.io.gfile.makedirs(directory)
        path = os.path.join(directory, VOCABULARY_FILE)
        with tf.io.gfile.GFile(path, "w") as f:
            json.dump(self.to_json(), f, ensure_ascii=False)
        return path

    @classmethod
    def load(cls, directory: str) -> "Vocabulary":
        import tensorflow as tf
        path = os.path.join(directory, VOCABULARY_FILE)
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"no {VOCABULARY_FILE} in {directory}")
        with tf.io.gfile.GFile(path) as f:
            return cls.from_json(json.load(f))


def build(counts: Dict[int, int], max_movie_id: int, metadata: Dict[int, dict] | None = None) -> Vocabulary:
    """Orders ``{movie_id: count}`` by descending count, then id, and attaches titles and genres."""
    metadata = metadata or {}
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    movies = [MovieEntry(movie_id, count, metadata.get(movie_id, {}).get("title", ""),
                         tuple(metadata.get(movie_id, {}).get("genres", ())),
                         int(metadata.get(movie_id, {}).get("year", 0)))
              for movie_id, count in ordered]
    genres = sorted({g for m in movies for g in m.genres})
    return Vocabulary(movies, max(max_movie_id, max(counts, default=0)), genres)
