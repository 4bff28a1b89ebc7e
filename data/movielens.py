"""Readers for the MovieLens file formats.

Three layouts are supported and detected from the files present in a directory:

* ``ml-1m``: ``ratings.dat`` (``user::movie::rating::timestamp``) and ``movies.dat``
  (``movie::title::Genre|Genre``), latin-1 encoded.
* ``ml-100k``: ``u.data`` (tab-separated ``user movie rating timestamp``) and ``u.item``
  (``|``-separated, latin-1, 19 genre flags whose names are in ``u.genre``).
* ``ml-latest`` (also ml-20m / ml-25m / ml-latest-small): ``ratings.csv`` and ``movies.csv`` with a header
  row, UTF-8, titles quoted when they contain commas, half-star ratings.

Everything here is plain Python so that Beam workers, tests and the CLI share one parser.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
from typing import Dict, Iterator, List, Optional, Tuple

# Genre names of ML-100K's u.genre, used when the file is missing (its order defines the 19 flags).
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
NO_GENRE_MARKERS = frozenset({"", "(no genres listed)", "unknown"})

MIN_RATING, MAX_RATING = 0.5, 5.0  # MovieLens stars (whole stars in ml-100k / ml-1m, half stars in ml-latest)
# Malformed ratings lines are skipped and counted up to this share of all lines; above it reading fails.
DEFAULT_MAX_BAD_FRACTION = 0.001
MAX_TIMESTAMP_SECONDS = 10 ** 11  # the year 5138 in seconds; larger values are milliseconds (or garbage)

_YEAR_AT_END = re.compile(r"\s*\((\d{4})(?:[-\u2013]\d{0,4})?\)\s*$")


class DataFormatError(ValueError):
    """A MovieLens file could not be parsed; the message names the file and line."""

    def __init__(self, path: str, line_number: Optional[int], message: str):
        where = f"{path}:{line_number}" if line_number is not None else path
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line_number = line_number


@dataclasses.dataclass(frozen=True)
class Rating:
    user_id: int
    movie_id: int
    rating: float
    timestamp: int


@dataclasses.dataclass(frozen=True)
class Movie:
    movie_id: int
    title: str
    genres: Tuple[str, ...]
    year: int  # 0 when unknown


@dataclasses.dataclass(frozen=True)
class DatasetFormat:
    """Where a MovieLens layout keeps its files and how its ratings lines are written."""

    name: str
    ratings_file: str
    movies_file: str
    separator: str
    has_header: bool
    encoding: str

    def ratings_path(self, data_dir: str) -> str:
        return os.path.join(data_dir, self.ratings_file)

    def movies_path(self, data_dir: str) -> str:
        return os.path.join(data_dir, self.movies_file)


ML_1M = DatasetFormat("ml-1m", "ratings.dat", "movies.dat", "::", False, "latin-1")
ML_100K = DatasetFormat("ml-100k", "u.data", "u.item", "\t", False, "latin-1")
ML_LATEST = DatasetFormat("ml-latest", "ratings.csv", "movies.csv", ",", True, "utf-8")
FORMATS = {f.name: f for f in (ML_1M, ML_100K, ML_LATEST)}


def detect_format(data_dir: str) -> DatasetFormat:
    """Returns the layout of ``data_dir`` from the ratings file it holds."""
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(
            f"data directory {data_dir!r} does not exist; pass --data-dir pointing at an unpacked MovieLens "
            f"folder (ml-1m, ml-100k or ml-latest), or create one with `ondevice-rec make-synthetic`")
    found = [f for f in (ML_1M, ML_100K, ML_LATEST) if os.path.exists(f.ratings_path(data_dir))]
    if not found:
        raise FileNotFoundError(
            f"{data_dir!r} holds no MovieLens ratings file (looked for ratings.dat, u.data, ratings.csv)")
    if len(found) > 1:
        names = ", ".join(f.ratings_file for f in found)
        raise DataFormatError(data_dir, None, f"ambiguous MovieLens layout: found {names}")
    fmt = found[0]
    if not os.path.exists(fmt.movies_path(data_dir)):
        raise FileNotFoundError(f"{fmt.movies_path(data_dir)} is missing ({fmt.name} layout needs it)")
    if os.path.getsize(fmt.ratings_path(data_dir)) == 0:
        raise DataFormatError(fmt.ratings_path(data_dir), None, "the ratings file is empty")
    return fmt


def parse_rating_line(fmt: DatasetFormat, line: str, path: str = "", line_number: Optional[int] = None
                      ) -> Rating:
    """Parses one ratings line of ``fmt``; raises DataFormatError naming file and line."""
    text = line.rstrip("\r\n")
    if fmt is ML_LATEST:
        fields = next(csv.reader([text]))
    else:
        fields = text.split(fmt.separator)
    if len(fields) != 4:
        raise DataFormatError(path or fmt.ratings_file, line_number,
                              f"expected 4 fields separated by {fmt.separator!r}, got {len(fields)}: {text[:80]!r}")
    try:
        user_id, movie_id = int(fields[0]), int(fields[1])
        rating, timestamp = float(fields[2]), int(float(fields[3]))
    except ValueError as e:
        raise DataFormatError(path or fmt.ratings_file, line_number, f"non-numeric field in {text[:80]!r}") from e
    if user_id <= 0 or movie_id <= 0:
        raise DataFormatError(path or fmt.ratings_file, line_number,
                              f"user and movie ids must be positive (0 is the padding id): {text[:80]!r}")
    if not MIN_RATING <= rating <= MAX_RATING:
        raise DataFormatError(path or fmt.ratings_file, line_number,
                              f"rating {fields[2]} is outside {MIN_RATING:g}..{MAX_RATING:g}: {text[:80]!r}")
    if timestamp > MAX_TIMESTAMP_SECONDS:
        raise DataFormatError(path or fmt.ratings_file, line_number,
                              f"timestamp {fields[3]} looks like milliseconds (MovieLens uses seconds since 1970): "
                              f"{text[:80]!r}")
    if timestamp < 0:
        raise DataFormatError(path or fmt.ratings_file, line_number, f"negative timestamp: {text[:80]!r}")
    return Rating(user_id, movie_id, rating, timestamp)


def read_ratings(data_dir: str, fmt: Optional[DatasetFormat] = None) -> Iterator[Rating]:
    """Yields every rating of ``data_dir`` in file order."""
    fmt = fmt or detect_format(data_dir)
    path = fmt.ratings_path(data_dir)
    with open(path, encoding=fmt.encoding, newline="") as f:
        for line_number, line in enumerate(f, start=1):
            if (fmt.has_header and line_number == 1) or not line.strip():
                continue
            yield parse_rating_line(fmt, line, path, line_number)


def split_title_year(title: str) -> Tuple[str, int]:
    """``"Toy Story (1995)"`` -> ``("Toy Story", 1995)``; no year -> ``(title, 0)``."""
    match = _YEAR_AT_END.search(title)
    if not match:
        return title.strip(), 0
    return title[:match.start()].strip(), int(match.group(1))


def _clean_genres(names: List[str]) -> Tuple[str, ...]:
    return tuple(g.strip() for g in names if g.strip() not in NO_GENRE_MARKERS)


def _read_ml100k_genres(data_dir: str) -> Tuple[str, ...]:
    path = os.path.join(data_dir, "u.genre")
    if not os.path.exists(path):
        return ML100K_GENRES
    pairs = []
    with open(path, encoding="latin-1") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            name, _, index = line.strip().rpartition("|")
            if not name or not index.isdigit():
                raise DataFormatError(path, line_number, f"expected 'name|index', got {line.strip()!r}")
            pairs.append((int(index), name))
    return tuple(name for _, name in sorted(pairs))


def read_movies(data_dir: str, fmt: Optional[DatasetFormat] = None) -> Dict[int, Movie]:
    """Returns ``{movie_id: Movie}`` for ``data_dir``; titles are decoded with the layout's encoding."""
    fmt = fmt or detect_format(data_dir)
    path = fmt.movies_path(data_dir)
    movies: Dict[int, Movie] = {}
    with open(path, "rb") as f:
        raw = f.read()
    text = _decode(raw, fmt.encoding)
    if fmt is ML_LATEST:
        rows = csv.reader(io.StringIO(text, newline=""))
        for line_number, fields in enumerate(rows, start=1):
            if line_number == 1 or not fields:
                continue
            if len(fields) != 3:
                raise DataFormatError(path, line_number, f"expected movieId,title,genres, got {fields!r}")
            movies[_movie_id(fields[0], path, line_number)] = _movie(fields[0], fields[1], fields[2].split("|"))
        return movies
    genre_names = _read_ml100k_genres(data_dir) if fmt is ML_100K else ()
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if fmt is ML_1M:
            fields = line.split("::")
            if len(fields) != 3:
                raise DataFormatError(path, line_number, f"expected movie::title::genres, got {line[:80]!r}")
            movie_id = _movie_id(fields[0], path, line_number)
            movies[movie_id] = _movie(fields[0], fields[1], fields[2].split("|"))
        else:
            fields = line.split("|")
            if len(fields) != 5 + len(genre_names):
                raise DataFormatError(path, line_number,
                                      f"expected {5 + len(genre_names)} '|'-separated fields, got {len(fields)}")
            flags = fields[5:]
            genres = [name for name, flag in zip(genre_names, flags) if flag.strip() == "1"]
            movie_id = _movie_id(fields[0], path, line_number)
            movie = _movie(fields[0], fields[1], genres)
            if movie.year == 0 and fields[2][-4:].isdigit():  # release date "01-Jan-1995"
                movie = dataclasses.replace(movie, year=int(fields[2][-4:]))
            movies[movie_id] = movie
    return movies


def _movie_id(field: str, path: str, line_number: int) -> int:
    try:
        return int(field)
    except ValueError as e:
        raise DataFormatError(path, line_number, f"movie id {field!r} is not an integer") from e


def _movie(movie_id: str, raw_title: str, genres: List[str]) -> Movie:
    title, year = split_title_year(raw_title)
    return Movie(int(movie_id), title, _clean_genres(genres), year)


def decode_line(raw: bytes, encoding: str) -> str:
    """One line: UTF-8 when it is valid UTF-8, else the layout's encoding (files mixing both read correctly)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode(encoding if encoding != "utf-8" else "latin-1")


def _decode(raw: bytes, encoding: str) -> str:
    """Decodes line by line (see ``decode_line``): a latin-1 file with some UTF-8 titles, or the reverse."""
    return "".join(decode_line(line, encoding) for line in raw.splitlines(keepends=True))
