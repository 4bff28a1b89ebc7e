"""MovieLens layouts as presets of the generic event reader (``data/event_spec.py``), detected from the files
in a folder:

* ``ml-1m``: ``ratings.dat`` (``user::movie::rating::timestamp``) and ``movies.dat``
  (``movie::title::Genre|Genre``), latin-1 encoded.
* ``ml-100k``: ``u.data`` (tab-separated ``user movie rating timestamp``) and ``u.item``
  (``|``-separated, latin-1, 19 genre flags named as in ``u.genre``).
* ``ml-latest`` (also ml-20m / ml-25m / ml-latest-small): ``ratings.csv`` and ``movies.csv``, UTF-8, titles
  quoted when they contain commas, half-star ratings. The ratings header is detected, not assumed.

Any of the ratings files may be gzipped (``ratings.csv.gz``). The year of a movie is taken from its title
(``Toy Story (1995)``), for ml-100k else from its release date; it becomes the numeric item feature ``year``
and genres the categorical feature ``genres``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Iterator, Optional, Tuple

from . import event_spec, events, file_io
from .formats.delimited import CSV
from .event_spec import EventSpec
from .read_errors import DataFormatError  # noqa: F401  (re-exported: the readers' error)

# Genre names of ML-100K's u.genre (its order defines the 19 flags).
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
NO_GENRE_MARKERS = ("", "(no genres listed)", "unknown")
MIN_RATING, MAX_RATING = 0.5, 5.0  # MovieLens stars (whole stars in ml-100k / ml-1m, half stars in ml-latest)
# Malformed ratings lines are skipped and counted up to this share of all lines; above it reading fails.
DEFAULT_MAX_BAD_FRACTION = 0.001
YEAR_AT_END = r"\s*\((\d{4})(?:[-\u2013]\d{0,4})?\)\s*$"  # "(1995)" or "(2007-2013)" at the end of a title
GENRES, YEAR = "genres", "year"  # the item features of every MovieLens preset


@dataclasses.dataclass(frozen=True)
class DatasetFormat:
    """A MovieLens layout: its two files and the event spec that reads them."""

    name: str
    ratings_file: str
    movies_file: str
    separator: str
    encoding: str
    movies_separator: str
    header: str  # of the ratings file

    def ratings_path(self, data_dir: str) -> str:
        """The ratings file in ``data_dir``, gzipped or not (the plain name when neither exists)."""
        plain = os.path.join(data_dir, self.ratings_file)
        return plain + ".gz" if not os.path.exists(plain) and os.path.exists(plain + ".gz") else plain

    def movies_path(self, data_dir: str) -> str:
        return os.path.join(data_dir, self.movies_file)

    def spec(self, data_dir: str = "") -> EventSpec:
        """The EventSpec of this layout (paths relative to the MovieLens folder)."""
        ratings = os.path.basename(self.ratings_path(data_dir)) if data_dir else self.ratings_file
        if self.name == "ml-100k":
            genres = event_spec.CategoricalSpec(flags=(5, 23), names=ML100K_GENRES, missing=NO_GENRE_MARKERS)
            year = event_spec.NumericSpec(sources=((1, YEAR_AT_END), (2, r"(\d{4})\s*$")))
        else:
            genres = event_spec.CategoricalSpec(column=2, separator="|", missing=NO_GENRE_MARKERS)
            year = event_spec.NumericSpec(column=1, pattern=YEAR_AT_END)
        items = event_spec.ItemsSpec(path=self.movies_file, format=CSV.name, delimiter=self.movies_separator,
                                 header="yes" if self.name == "ml-latest" else "no", encoding=self.encoding,
                                 key=0, title=1, title_strip=YEAR_AT_END, categorical={GENRES: genres},
                                 numeric={YEAR: year})
        return EventSpec(path=ratings, name=self.name, format=CSV.name, delimiter=self.separator,
                         header=self.header, encoding=self.encoding, user=0, item=1, rating=2, timestamp=3,
                         timestamp_format=event_spec.UNIX_SECONDS, fields=4, rating_range=(MIN_RATING, MAX_RATING),
                         numeric_ids=True, items=items)


ML_1M = DatasetFormat("ml-1m", "ratings.dat", "movies.dat", "::", "latin-1", "::", "no")
ML_100K = DatasetFormat("ml-100k", "u.data", "u.item", "\t", "latin-1", "|", "no")
ML_LATEST = DatasetFormat("ml-latest", "ratings.csv", "movies.csv", ",", "utf-8", ",", "auto")
FORMATS = {f.name: f for f in (ML_1M, ML_100K, ML_LATEST)}


def detect_format(data_dir: str) -> DatasetFormat:
    """Returns the layout of ``data_dir`` from the ratings file it holds."""
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(
            f"data directory {data_dir!r} does not exist; pass --data-dir pointing at an unpacked MovieLens "
            f"folder (ml-1m, ml-100k or ml-latest), --events with an event spec, or create data with "
            f"`ondevice-rec make-synthetic`")
    found = [f for f in FORMATS.values() if os.path.exists(f.ratings_path(data_dir))]
    if not found:
        raise FileNotFoundError(
            f"{data_dir!r} holds no MovieLens ratings file (looked for ratings.dat, u.data, ratings.csv, each "
            f"possibly .gz); for any other activity log pass --events with an event spec")
    if len(found) > 1:
        names = ", ".join(os.path.basename(f.ratings_path(data_dir)) for f in found)
        raise DataFormatError(data_dir, None, f"ambiguous MovieLens layout: found {names}")
    fmt = found[0]
    if not os.path.exists(fmt.movies_path(data_dir)):
        raise FileNotFoundError(f"{fmt.movies_path(data_dir)} is missing ({fmt.name} layout needs it)")
    if os.path.getsize(fmt.ratings_path(data_dir)) == 0:
        raise DataFormatError(fmt.ratings_path(data_dir), None, "the ratings file is empty")
    return fmt


def preset_spec(data_dir: str) -> EventSpec:
    """The event spec of the MovieLens folder ``data_dir``."""
    return detect_format(data_dir).spec(data_dir)


# --- convenience readers (tests, tools): the generic reader with the folder's preset -------------------------

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


def read_ratings(data_dir: str, fmt: Optional[DatasetFormat] = None) -> Iterator[Rating]:
    """Every rating of ``data_dir`` in file order; a malformed line raises DataFormatError (file:line)."""
    spec = (fmt or detect_format(data_dir)).spec(data_dir)
    for path, offset, event in events.read_events(spec, data_dir):
        if isinstance(event, Exception):
            line = file_io.line_numbers(path, [offset])[offset]
            raise DataFormatError(path, line, str(event), getattr(event, "column", None))
        yield Rating(int(event.user), int(event.item), float(event.rating), event.timestamp)


def read_movies(data_dir: str, fmt: Optional[DatasetFormat] = None) -> Dict[int, Movie]:
    """``{movie_id: Movie}`` of ``data_dir``."""
    spec = (fmt or detect_format(data_dir)).spec(data_dir)
    items, problems, _, _ = events.read_items(spec.items, data_dir)
    if problems:
        raise DataFormatError(spec.items.path, None, problems[0])
    return {int(key): Movie(int(key), info.title, info.categorical.get(GENRES, ()),
                            int(info.numeric.get(YEAR, 0))) for key, info in items.items()}
