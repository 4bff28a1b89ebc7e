"""The one reader of activity logs: an ``EventSpec`` says where the events are and which columns mean what.

An event is (user key, item key, time, optional rating / weight); keys are strings end to end (numbers are
strings that happen to be digits). The optional items file gives each item key a title, categorical
features (single or multi-valued) and numeric features. MovieLens layouts are presets of this spec
(``data/movielens.py``), not a second code path.

Plain Python (no TensorFlow, no Beam): the ExampleGen executor, the CLI's pre-flight check and the tests share
it. Files are opened through ``open_binary`` (``tf.io.gfile`` when TensorFlow is loaded, so GCS / S3 work).

A spec as JSON (paths relative to the spec file's folder, or to each data span's folder)::

    {"events": "events-*.jsonl.gz", "user": "customer", "item": "sku",
     "timestamp": "ts", "timestamp_format": "unix_ms",
     "event_type": "event", "keep_events": ["view", "cart", "purchase"],
     "items": {"path": "catalog.csv", "key": "sku", "title": "name",
               "categorical": {"category": {"column": "categories", "separator": "|"},
                               "brand": {"column": "brand"}},
               "numeric": {"price": {"column": "price"}}}}

Columns are names (JSON keys, Parquet columns, or header names of a CSV) or 0-based indices (CSV / TSV).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import fnmatch
import glob as globlib
import gzip
import json
import os
import re
import zlib
from typing import Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

Column = Union[str, int]

CSV, TSV, JSONL, PARQUET = "csv", "tsv", "jsonl", "parquet"
TABLE_FORMATS = (CSV, TSV, JSONL, PARQUET)
_EXTENSIONS = {".csv": CSV, ".tsv": TSV, ".tab": TSV, ".jsonl": JSONL, ".ndjson": JSONL, ".json": JSONL,
               ".parquet": PARQUET, ".pq": PARQUET, ".dat": CSV, ".data": TSV, ".item": CSV, ".txt": CSV}
DEFAULT_DELIMITERS = {CSV: ",", TSV: "\t"}
# Tried, in this order, when the declared delimiter splits a line into too few fields.
CANDIDATE_DELIMITERS = (",", "\t", ";", "|", "::", " ")
HEADER_CHOICES = ("auto", "yes", "no")
UNIX_SECONDS, UNIX_MILLISECONDS, ISO8601 = "unix_s", "unix_ms", "iso8601"
TIMESTAMP_FORMATS = (UNIX_SECONDS, UNIX_MILLISECONDS, ISO8601)
MAX_TIMESTAMP_SECONDS = 10 ** 11  # the year 5138: a larger "seconds" value is milliseconds (or garbage)
# Without a timestamp column the time of an event is its place in the input: file number * 2^40 + byte offset
# (or row number), so a user's events keep the file order.
ORDER_FILE_SHIFT = 40
PREFLIGHT_LINES = 200  # lines of the first file the pre-flight check parses


class DataFormatError(ValueError):
    """Input that cannot be read; the message names the file, and the line and column when known."""

    def __init__(self, path: str, line_number: Optional[int], message: str, column: Optional[Column] = None):
        where = f"{path}:{line_number}" if line_number is not None else path
        if column is not None:
            where += f": column {column!r}"
        super().__init__(f"{where}: {message}")
        self.path, self.line_number, self.column, self.detail = path, line_number, column, message


class RowError(ValueError):
    """One row is unusable (skipped and counted); ``column`` names the field at fault."""

    def __init__(self, message: str, column: Optional[Column] = None):
        super().__init__(message)
        self.column = column


def _check_column(value, what: str) -> Optional[Column]:
    if value is None or isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value:
        return int(value) if value.isdigit() else value
    raise ValueError(f"{what} must be a column name or a 0-based index, got {value!r}")


@dataclasses.dataclass(frozen=True)
class TableSpec:
    """A set of files of rows: path or glob, format (from the extension, ``.gz`` stripped, unless given),
    header (``auto`` detects it), delimiter (CSV / TSV; may be several characters, e.g. ``::``), encoding
    (lines that are valid UTF-8 are read as UTF-8 whatever it says, so files mixing both read correctly)."""

    path: str = ""
    format: Optional[str] = None
    header: str = "auto"
    delimiter: Optional[str] = None
    encoding: str = "utf-8"
    fields: Optional[int] = None  # CSV / TSV: every row must have exactly this many fields (fixed layouts)

    def _check_table(self, what: str) -> None:
        if not self.path:
            raise ValueError(f"{what}: a path (file or glob) is required")
        if self.format is not None and self.format not in TABLE_FORMATS:
            raise ValueError(f"{what}: format must be one of {', '.join(TABLE_FORMATS)}, got {self.format!r}")
        if self.header not in HEADER_CHOICES:
            raise ValueError(f"{what}: header must be one of {', '.join(HEADER_CHOICES)}, got {self.header!r}")
        if self.delimiter == "":
            raise ValueError(f"{what}: the delimiter must not be empty")

    def format_of(self, path: str) -> str:
        if self.format:
            return self.format
        name = path[:-3] if path.endswith(".gz") else path
        ext = os.path.splitext(name)[1].lower()
        if ext not in _EXTENSIONS:
            raise DataFormatError(path, None, f"cannot tell the format from the extension {ext!r}; set \"format\" "
                                              f"to one of {', '.join(TABLE_FORMATS)}")
        return _EXTENSIONS[ext]

    def delimiter_of(self, path: str) -> str:
        return self.delimiter or DEFAULT_DELIMITERS.get(self.format_of(path), ",")

    def files(self, base_dir: str) -> List[str]:
        """The matched files, sorted (the file order is the time order when there is no timestamp)."""
        pattern = self.path if _is_absolute(self.path) else os.path.join(base_dir, self.path)
        found = sorted(glob_files(pattern))
        if not found:
            raise FileNotFoundError(f"no file matches {pattern}")
        return found


@dataclasses.dataclass(frozen=True)
class CategoricalSpec:
    """A categorical item feature: one ``column`` (multi-valued with ``separator``), or one-hot ``flags``
    (first and last column index) named by ``names``. Values in ``missing`` count as absent."""

    column: Optional[Column] = None
    separator: Optional[str] = None
    flags: Optional[Tuple[int, int]] = None
    names: Tuple[str, ...] = ()
    missing: Tuple[str, ...] = ("",)

    def __post_init__(self):
        object.__setattr__(self, "column", _check_column(self.column, "a categorical column"))
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "missing", tuple(self.missing))
        if self.flags is not None:
            object.__setattr__(self, "flags", tuple(self.flags))
        if (self.column is None) == (self.flags is None):
            raise ValueError("a categorical feature needs either a column or flags")
        if self.flags is not None and len(self.names) != self.flags[1] - self.flags[0] + 1:
            raise ValueError(f"flags {self.flags} need {self.flags[1] - self.flags[0] + 1} names, got "
                             f"{len(self.names)}")

    def values(self, row: "_Row") -> Tuple[str, ...]:
        if self.flags is not None:
            first, last = self.flags
            return tuple(name for name, i in zip(self.names, range(first, last + 1))
                         if row.get(i, "numeric flag").strip() == "1")
        raw = row.get(self.column, "categorical feature", required=False)
        if raw is None:
            return ()
        if isinstance(raw, list):
            parts = [str(p) for p in raw]
        else:
            parts = str(raw).split(self.separator) if self.separator else [str(raw)]
        return tuple(p.strip() for p in parts if p.strip() not in self.missing)


@dataclasses.dataclass(frozen=True)
class NumericSpec:
    """A numeric item feature (bucketised by tf.Transform). ``sources``: ``[column, regex or null]`` pairs
    tried in order; a regex takes its first group from the column's text (e.g. the year of a title)."""

    column: Optional[Column] = None
    pattern: Optional[str] = None
    sources: Tuple[Tuple[Column, Optional[str]], ...] = ()

    def __post_init__(self):
        sources = tuple((_check_column(c, "a numeric column"), p) for c, p in self.sources)
        if self.column is not None:
            sources = ((_check_column(self.column, "a numeric column"), self.pattern),) + sources
        if not sources:
            raise ValueError("a numeric feature needs a column")
        object.__setattr__(self, "sources", sources)

    def value(self, row: "_Row") -> Optional[float]:
        for column, pattern in self.sources:
            raw = row.get(column, "numeric feature", required=False)
            if raw is None or raw == "":
                continue
            text = str(raw)
            if pattern:
                match = re.search(pattern, text)
                if not match:
                    continue
                text = match.group(1)
            try:
                return float(text)
            except ValueError:
                continue
        return None


@dataclasses.dataclass(frozen=True)
class ItemsSpec(TableSpec):
    """The optional items file: ``key`` column, ``title`` (``title_strip``: a regex removed from it, e.g. the
    year), and item features by name."""

    key: Column = 0
    title: Optional[Column] = None
    title_strip: Optional[str] = None
    categorical: Mapping[str, CategoricalSpec] = dataclasses.field(default_factory=dict)
    numeric: Mapping[str, NumericSpec] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self._check_table("items")
        object.__setattr__(self, "key", _check_column(self.key, "items.key"))
        object.__setattr__(self, "title", _check_column(self.title, "items.title"))
        for name in list(self.categorical) + list(self.numeric):
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
                raise ValueError(f"item feature names must be identifiers, got {name!r}")
        if set(self.categorical) & set(self.numeric):
            raise ValueError(f"{sorted(set(self.categorical) & set(self.numeric))} are both categorical and numeric")


@dataclasses.dataclass(frozen=True)
class ItemInfo:
    title: str = ""
    categorical: Mapping[str, Tuple[str, ...]] = dataclasses.field(default_factory=dict)
    numeric: Mapping[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Event:
    user: str
    item: str
    timestamp: int  # seconds since 1970, or the input order when the log has no timestamp
    rating: Optional[float] = None
    millis: Optional[int] = None  # past the second, when the timestamp format has them (has_millis)


@dataclasses.dataclass(frozen=True)
class EventSpec(TableSpec):
    """How to read an activity log. ``timestamp`` absent: the file order within a user is the time order.
    ``rating``: an optional numeric weight or rating (``min_rating`` drops lower ones, as ``--min-rating``).
    ``event_type`` with ``keep_events``: only those types are kept (the others are counted)."""

    name: str = ""
    user: Column = 0
    item: Column = 1
    timestamp: Optional[Column] = None
    timestamp_format: str = UNIX_SECONDS
    rating: Optional[Column] = None
    min_rating: Optional[float] = None
    rating_range: Optional[Tuple[float, float]] = None  # ratings outside it are bad lines (e.g. 0.5..5 stars)
    event_type: Optional[Column] = None
    keep_events: Tuple[str, ...] = ()
    items: Optional[ItemsSpec] = None
    numeric_ids: bool = False  # user and item ids must be digits (a fixed layout such as MovieLens)

    def __post_init__(self):
        self._check_table("events")
        for field in ("user", "item", "timestamp", "rating", "event_type"):
            object.__setattr__(self, field, _check_column(getattr(self, field), field))
        if isinstance(self.keep_events, str):
            object.__setattr__(self, "keep_events", tuple(t.strip() for t in self.keep_events.split(",") if t.strip()))
        object.__setattr__(self, "keep_events", tuple(self.keep_events))
        if self.timestamp_format not in TIMESTAMP_FORMATS:
            raise ValueError(f"timestamp_format must be one of {', '.join(TIMESTAMP_FORMATS)}, got "
                             f"{self.timestamp_format!r}")
        if self.keep_events and self.event_type is None:
            raise ValueError("keep_events needs the event_type column")
        if self.rating_range is not None:
            object.__setattr__(self, "rating_range", tuple(float(v) for v in self.rating_range))
        if self.min_rating is not None and self.rating is None:
            raise ValueError("min_rating needs the rating column")
        if self.user == self.item:
            raise ValueError("user and item must be different columns")

    @property
    def has_timestamp(self) -> bool:
        return self.timestamp is not None

    @property
    def has_millis(self) -> bool:
        """Whether the timestamps carry milliseconds (``unix_ms``; ``iso8601``, fractions optional)."""
        return self.has_timestamp and self.timestamp_format in (UNIX_MILLISECONDS, ISO8601)

    @property
    def has_rating(self) -> bool:
        return self.rating is not None

    def categorical_features(self) -> Tuple[str, ...]:
        return tuple(sorted(self.items.categorical)) if self.items else ()

    def numeric_features(self) -> Tuple[str, ...]:
        return tuple(sorted(self.items.numeric)) if self.items else ()

    # JSON round trip (the spec crosses the TFX boundary as one execution parameter).
    def to_dict(self) -> Dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EventSpec":
        data = dict(data)
        if "events" in data:  # the documented key for the events path
            data["path"] = data.pop("events")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown event spec keys: {', '.join(sorted(unknown))} (known: "
                             f"events, {', '.join(sorted(known - {'path'}))})")
        if data.get("items") is not None and not isinstance(data["items"], ItemsSpec):
            data["items"] = items_from_dict(data["items"])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "EventSpec":
        return cls.from_dict(json.loads(text))


def items_from_dict(data: Mapping[str, Any]) -> ItemsSpec:
    data = dict(data)
    known = {f.name for f in dataclasses.fields(ItemsSpec)}
    if set(data) - known:
        raise ValueError(f"unknown items spec keys: {', '.join(sorted(set(data) - known))} (known: "
                         f"{', '.join(sorted(known))})")
    data["categorical"] = {name: c if isinstance(c, CategoricalSpec) else CategoricalSpec(**_field_dict(c))
                           for name, c in (data.get("categorical") or {}).items()}
    data["numeric"] = {name: n if isinstance(n, NumericSpec) else NumericSpec(**_field_dict(n))
                       for name, n in (data.get("numeric") or {}).items()}
    return ItemsSpec(**data)


def _field_dict(value) -> dict:
    return dict(value) if isinstance(value, Mapping) else {"column": value}


def _plain(value):
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items() if v is not None and v != () and v != {}}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def load_spec(path: str, overrides: Sequence[str] = ()) -> EventSpec:
    """An EventSpec from a JSON or YAML file, with ``KEY=VALUE`` overrides (``items.KEY=VALUE`` for the
    items file); paths inside stay relative to the spec file's folder."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith((".yaml", ".yml")):
        import yaml
        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataFormatError(path, e.lineno, f"not valid JSON: {e.msg}") from e
    if not isinstance(data, dict):
        raise DataFormatError(path, None, "an event spec must be a JSON / YAML object")
    return spec_with_overrides(data, overrides)


def spec_with_overrides(data: Mapping[str, Any], overrides: Sequence[str] = ()) -> EventSpec:
    data = json.loads(json.dumps(data))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        target = data
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        try:
            target[leaf] = json.loads(value)
        except json.JSONDecodeError:
            target[leaf] = value
    return EventSpec.from_dict(data)


# --- files -------------------------------------------------------------------------------------------------

def _is_absolute(path: str) -> bool:
    return "://" in path or os.path.isabs(path)


def _gfile():
    import sys
    tf = sys.modules.get("tensorflow")
    return tf.io.gfile if tf is not None else None


def glob_files(pattern: str) -> List[str]:
    gfile = _gfile()
    if "://" in pattern and gfile is not None:
        return gfile.glob(pattern)
    return [p for p in globlib.glob(pattern) if os.path.isfile(p)]


def open_binary(path: str):
    gfile = _gfile()
    raw = gfile.GFile(path, "rb") if gfile is not None and "://" in path else open(path, "rb")
    return gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw


def file_size(path: str) -> int:
    gfile = _gfile()
    if gfile is not None and "://" in path:
        return gfile.stat(path).length
    return os.path.getsize(path)


def decode_line(raw: bytes, encoding: str) -> str:
    """One line: UTF-8 when it is valid UTF-8, else the declared encoding (latin-1 if that is UTF-8 too)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode(encoding if encoding.lower().replace("-", "") != "utf8" else "latin-1")


def read_lines(path: str, start: int = 0, end: Optional[int] = None, encoding: str = "utf-8"
               ) -> Iterator[Tuple[int, str]]:
    """``(byte offset, text)`` of every line that *starts* in ``[start, end)`` (whole file: ``end=None``), so
    byte ranges of one file can be read by different workers without losing or repeating a line. Offsets of
    a gzipped file are in its decompressed stream (such a file is read by one worker)."""
    with open_binary(path) as f:
        offset = 0
        if start > 0:
            f.seek(start - 1)
            offset = start - 1 + len(f.readline())  # the line under way at start belongs to the range before
        while end is None or offset < end:
            try:
                raw = f.readline()
            except GZIP_ERRORS as e:
                raise DataFormatError(path, None, gzip_problem(e, offset)) from None
            if not raw:
                return
            yield offset, decode_line(raw.rstrip(b"\r\n"), encoding)
            offset += len(raw)


# What Python's gzip raises on a damaged file (a truncated one: EOFError "Compressed file ended before the
# end-of-stream marker was reached").
GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def gzip_problem(error: Exception, offset: int) -> str:
    what = "truncated" if isinstance(error, EOFError) else "not a valid gzip file"
    return f"the gzip file is {what} (it ends after {offset:,} bytes of text: {error}); download or copy it again"


def check_gzip(path: str) -> None:
    """Reads a ``.gz`` file to its end (its integrity shows only there) and raises
    DataFormatError naming it when it is truncated or damaged."""
    with open_binary(path) as f:
        offset = 0
        try:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    return
                offset += len(chunk)
        except GZIP_ERRORS as e:
            raise DataFormatError(path, None, gzip_problem(e, offset)) from None


def line_numbers(path: str, offsets: Sequence[int]) -> Dict[int, int]:
    """``{offset: 1-based line number}`` for line-start byte offsets of ``path`` (one pass up to the last)."""
    wanted, numbers = sorted(set(offsets)), {}
    if not wanted:
        return numbers
    with open_binary(path) as f:
        position, line = 0, 1
        for target in wanted:
            while position < target:
                chunk = f.read(min(1 << 20, target - position))
                if not chunk:
                    break
                line += chunk.count(b"\n")
                position += len(chunk)
            numbers[target] = line
    return numbers


class _Row:
    """One parsed row: a list of fields (CSV / TSV) or a mapping (JSON Lines, Parquet)."""

    def __init__(self, fields, header: Optional[Sequence[str]] = None):
        self.fields = fields
        self.index = {name: i for i, name in enumerate(header)} if header else None
        self.named = isinstance(fields, Mapping)  # once per row: an ABC check per field cost 10 % of a read

    def get(self, column: Column, what: str, required: bool = True):
        if self.named:
            if isinstance(column, int):
                raise RowError(f"{what}: JSON / Parquet columns are named, not numbered", column)
            value = self.fields.get(column)
            if value is None and required:
                raise RowError(f"the {what} column is missing", column)
            return value
        position = column
        if isinstance(column, str):
            if self.index is None or column not in self.index:
                raise RowError(f"no {what} column {column!r} (no header names it)", column)
            position = self.index[column]
        if position >= len(self.fields):
            if required:
                raise RowError(f"{what}: the row has {len(self.fields)} fields, column {column!r} is missing",
                               column)
            return None
        return self.fields[position]


def split_fields(text: str, delimiter: str) -> List[str]:
    """Fields of one delimited line; a one-character delimiter honours CSV quoting."""
    if len(delimiter) == 1:
        return next(csv.reader([text], delimiter=delimiter), [])
    return text.split(delimiter)


def row_of(text: str, fmt: str, delimiter: str, header: Optional[Sequence[str]],
           fields: Optional[int] = None) -> _Row:
    if fmt == JSONL:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise RowError(f"not a JSON object: {e.msg}") from e
        if not isinstance(value, dict):
            raise RowError("not a JSON object")
        return _Row(value)
    values = split_fields(text, delimiter)
    if fields is not None and len(values) != fields:
        raise RowError(f"expected {fields} fields separated by {delimiter!r}, got {len(values)}: {text[:80]!r}")
    return _Row(values, header)


def parse_timestamp(raw, fmt: str, column: Column) -> Tuple[int, int]:
    """``(seconds since 1970, milliseconds past the second)``."""
    text = str(raw).strip()
    if not text:
        raise RowError("empty timestamp", column)
    if fmt == ISO8601:
        try:
            moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as e:
            raise RowError(f"timestamp {text[:40]!r} is not ISO-8601 (timestamp_format {fmt})", column) from e
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        return int(moment.timestamp()), moment.microsecond // 1000
    try:
        value = float(text)
    except ValueError as e:
        raise RowError(f"timestamp {text[:40]!r} is not a number (timestamp_format {fmt})", column) from e
    seconds = value / 1000.0 if fmt == UNIX_MILLISECONDS else value
    if seconds < 0:
        raise RowError(f"negative timestamp {text[:40]!r}", column)
    if seconds > MAX_TIMESTAMP_SECONDS:
        raise RowError(f"timestamp {text[:40]!r} is beyond the year 5000 in {fmt}: milliseconds? (set "
                       f"timestamp_format {UNIX_MILLISECONDS})", column)
    if fmt == UNIX_MILLISECONDS:
        millis = int(value)
        return millis // 1000, millis % 1000
    return int(seconds), 0


def _key(raw, what: str, column: Column) -> str:
    if raw is None:
        raise RowError(f"no {what}", column)
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    text = str(raw).strip()
    if not text:
        raise RowError(f"empty {what}", column)
    control = _CONTROL_CHARACTER.search(text)
    if control:
        raise RowError(f"{what} {text[:40]!r} contains the control character {control.group()!r} (a corrupt "
                       "row?)", column)
    return text


# A NUL byte or another C0 control character is no part of a real id (a key with one would be a new item).
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


class Skipped(Exception):
    """A valid row that the spec filters out (an event type not kept, a rating below min_rating)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def parse_event(spec: EventSpec, row: _Row, order: int) -> Event:
    """One event of ``row``; raises RowError (bad row) or Skipped (filtered)."""
    user = _key(row.get(spec.user, "user"), "user id", spec.user)
    item = _key(row.get(spec.item, "item"), "item id", spec.item)
    if spec.numeric_ids:
        for key, column in ((user, spec.user), (item, spec.item)):
            if not key.isdigit() or key.strip("0") == "":
                raise RowError(f"id {key[:40]!r} is not a positive integer (this layout numbers its ids)", column)
    if spec.event_type is not None and spec.keep_events:
        kind = str(row.get(spec.event_type, "event type") or "").strip()
        if kind not in spec.keep_events:
            raise Skipped("event_type")
    rating = None
    if spec.rating is not None:
        raw = row.get(spec.rating, "rating")
        try:
            rating = float(raw)
        except (TypeError, ValueError) as e:
            raise RowError(f"rating {str(raw)[:40]!r} is not a number", spec.rating) from e
        if rating != rating:  # NaN
            raise RowError("rating is NaN", spec.rating)
        if spec.rating_range and not spec.rating_range[0] <= rating <= spec.rating_range[1]:
            raise RowError(f"rating {raw} is outside {spec.rating_range[0]:g}..{spec.rating_range[1]:g}",
                           spec.rating)
        if spec.min_rating is not None and rating < spec.min_rating:
            raise Skipped("min_rating")
    if spec.timestamp is None:
        return Event(user, item, order, rating)
    timestamp, millis = parse_timestamp(row.get(spec.timestamp, "timestamp"), spec.timestamp_format, spec.timestamp)
    return Event(user, item, timestamp, rating, millis if spec.has_millis else None)


def order_of(file_index: int, offset: int) -> int:
    return (file_index << ORDER_FILE_SHIFT) + offset


# --- header and delimiter ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Layout:
    """What the pre-flight check found in a CSV / TSV file: its header names (None: no header)."""

    header: Optional[Tuple[str, ...]] = None

    @property
    def has_header(self) -> bool:
        return self.header is not None


def _numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


_HEADER_WORDS = re.compile(r"(user|item|movie|product|sku|session|customer|visitor|id|time|rating|event)",
                           re.IGNORECASE)


def detect_layout(table: TableSpec, path: str, columns: Mapping[str, Optional[Column]],
                  numeric: Sequence[Column] = ()) -> Layout:
    """Header and delimiter of a delimited file, from its first lines. Raises DataFormatError when the
    delimiter is wrong (naming the one that fits), a named column is missing (naming the columns found), the
    header cannot be told from data, or the file has no rows (empty, or a header alone). ``columns``: the mapped
    columns by role; ``numeric``: those whose values must be numbers (timestamp, rating), which tell a header
    line from a data line."""
    fmt = table.format_of(path)
    if fmt in (JSONL, PARQUET):
        return Layout()
    lines = [text for _, text in _first_lines(path, table.encoding, 20) if text.strip()]
    if not lines:
        raise DataFormatError(path, None, "the file is empty")
    layout = _delimited_layout(table, path, columns, numeric, lines)
    if layout.has_header and len(lines) == 1:
        raise DataFormatError(path, None, f"the file has a header line and no rows: {lines[0][:80]!r}")
    return layout


def _delimited_layout(table: TableSpec, path: str, columns: Mapping[str, Optional[Column]],
                      numeric: Sequence[Column], lines: List[str]) -> Layout:
    delimiter = table.delimiter_of(path)
    mapped = {role: c for role, c in columns.items() if c is not None}
    named = [c for c in mapped.values() if isinstance(c, str)]
    needed = max([c for c in mapped.values() if isinstance(c, int)] + [0]) + 1
    first = split_fields(lines[0], delimiter)
    # The typical width (the median of the first lines): one short line is a bad row, not a wrong delimiter.
    widths = sorted(len(split_fields(text, delimiter)) for text in lines)
    typical = widths[len(widths) // 2]
    if (named and not set(named) <= set(f.strip() for f in first)) or typical < needed:
        better = [d for d in CANDIDATE_DELIMITERS if d != delimiter
                  and sorted(len(split_fields(t, d)) for t in lines)[len(lines) // 2] >= max(needed, 2)
                  and (not named or set(named) <= set(f.strip() for f in split_fields(lines[0], d)))]
        if better:
            raise DataFormatError(path, 1, f"the delimiter is {delimiter!r} but the lines split into "
                                           f"{typical} field(s) with it and into "
                                           f"{len(split_fields(lines[0], better[0]))} with {better[0]!r}: set "
                                           f"\"delimiter\": {json.dumps(better[0])}")
    if table.fields is not None and typical != table.fields:
        raise DataFormatError(path, 1, f"expected {table.fields} fields separated by {delimiter!r}, got {typical}: "
                                       f"{lines[0][:80]!r}")
    if named:
        found = [f.strip() for f in first]
        missing = [c for c in named if c not in found]
        if missing:
            role = next(r for r, c in mapped.items() if c == missing[0])
            raise DataFormatError(path, 1, f"the {role} column {missing[0]!r} is not in the header; the columns "
                                           f"found: {', '.join(repr(f) for f in found)}")
        if table.header == "no":
            raise DataFormatError(path, None, "columns are given by name but header is \"no\"; name them by "
                                              "0-based index instead")
        return Layout(tuple(found))
    if typical < needed:
        raise DataFormatError(path, 1, f"the rows have {typical} field(s) separated by {delimiter!r}, the spec "
                                       f"maps column {needed - 1}")
    if table.header in ("yes", "no"):
        return Layout(tuple(f.strip() for f in first) if table.header == "yes" else None)
    # auto: a header if the number columns of line 1 are not numbers while those of line 2 are; with no
    # number column, if line 1 looks like names (a header word, and its user value never recurs).
    if numeric and len(lines) > 1:
        second = split_fields(lines[1], delimiter)
        first_numbers = all(_numeric(first[c]) for c in numeric if c < len(first))
        second_numbers = all(_numeric(second[c]) for c in numeric if c < len(second))
        if not first_numbers and second_numbers:
            return Layout(tuple(f.strip() for f in first))
        return Layout()
    user = columns.get("user")
    user_values = [split_fields(t, delimiter)[user] for t in lines[1:]] if isinstance(user, int) else []
    if all(_HEADER_WORDS.search(f or "") and not _numeric(f) for f in first[:needed]) \
            and (not user_values or first[user] not in user_values):
        return Layout(tuple(f.strip() for f in first))
    return Layout()


def _first_lines(path: str, encoding: str, count: int) -> List[Tuple[int, str]]:
    lines = []
    for offset, text in read_lines(path, encoding=encoding):
        lines.append((offset, text))
        if len(lines) >= count:
            break
    return lines


def event_columns(spec: EventSpec) -> Dict[str, Optional[Column]]:
    return {"user": spec.user, "item": spec.item, "timestamp": spec.timestamp, "rating": spec.rating,
            "event_type": spec.event_type}


def event_layout(spec: EventSpec, path: str) -> Layout:
    numeric = [c for c in (spec.rating,) + ((spec.timestamp,) if spec.timestamp_format != ISO8601 else ())
               if isinstance(c, int)]
    return detect_layout(spec, path, event_columns(spec), numeric)


# --- reading -----------------------------------------------------------------------------------------------

def iter_rows(table: TableSpec, path: str, layout: Layout, start: int = 0, end: Optional[int] = None
              ) -> Iterator[Tuple[int, Union[_Row, RowError]]]:
    """``(offset, row or RowError)`` of the data rows of one file (a byte range of it for CSV / TSV / JSONL;
    Parquet: ``start``..``end`` are row numbers)."""
    fmt = table.format_of(path)
    if fmt == PARQUET:
        yield from _parquet_rows(path, start, end)
        return
    delimiter = table.delimiter_of(path)
    for offset, text in read_lines(path, start, end, table.encoding):
        if offset == 0 and layout.has_header:
            continue
        if not text.strip():
            continue
        try:
            yield offset, row_of(text, fmt, delimiter, layout.header, table.fields)
        except RowError as e:
            yield offset, e


def _parquet_rows(path: str, start: int, end: Optional[int]):
    import pyarrow.parquet as pq
    with open_binary(path) as f:
        table = pq.read_table(f)
    rows = table.slice(start, None if end is None else end - start).to_pylist()
    for i, row in enumerate(rows):
        yield start + i, _Row(row)


def parquet_row_count(path: str) -> int:
    import pyarrow.parquet as pq
    with open_binary(path) as f:
        return pq.ParquetFile(f).metadata.num_rows


class ItemsRead(NamedTuple):
    """What ``read_items`` read: ``{key: ItemInfo}``; the unusable rows (``file:line: reason``); the rows whose key
    an earlier row already had (counted; the first ``DESCRIBED_DUPLICATES`` described as ``file:line: ...``)."""

    items: Dict[str, ItemInfo]
    problems: List[str]
    duplicate_keys: int
    duplicates: List[str]


DESCRIBED_DUPLICATES = 20


def read_items(spec: ItemsSpec, base_dir: str) -> ItemsRead:
    """The items file(s). A key's first row is kept; a later row of the same key is counted as a duplicate (which
    title or features it carried is never silently preferred)."""
    items: Dict[str, ItemInfo] = {}
    problems: List[str] = []
    duplicate_keys, duplicates = 0, []
    columns = {"key": spec.key, "title": spec.title}
    columns.update({f"categorical {n}": c.column for n, c in spec.categorical.items()})
    for name, numeric in spec.numeric.items():
        for i, (column, _) in enumerate(numeric.sources):
            columns[f"numeric {name}" + (f" ({i + 1})" if i else "")] = column
    strip = re.compile(spec.title_strip) if spec.title_strip else None
    for path in spec.files(base_dir):
        parquet = spec.format_of(path) == PARQUET
        layout = detect_layout(spec, path, columns)
        first_offsets: Dict[str, int] = {}
        described: List[Tuple[int, int, str]] = []  # (offset, offset of the kept row, key)

        def where(offset: int) -> str:
            return f"{path}: row {offset + 1}" if parquet else f"{path}:{line_numbers(path, [offset])[offset]}"
        for offset, row in iter_rows(spec, path, layout):
            try:
                if isinstance(row, RowError):
                    raise row
                key = _key(row.get(spec.key, "item key"), "item key", spec.key)
                if key in items:
                    duplicate_keys += 1
                    if len(duplicates) + len(described) < DESCRIBED_DUPLICATES:
                        described.append((offset, first_offsets.get(key, -1), key))
                    continue
                first_offsets[key] = offset
                title = str(row.get(spec.title, "title", required=False) or "") if spec.title is not None else ""
                if strip:
                    title = strip.sub("", title)
                items[key] = ItemInfo(
                    clean_text(title),
                    {n: tuple(clean_text(v) for v in c.values(row)) for n, c in spec.categorical.items()},
                    {n: v for n, s in spec.numeric.items() if (v := s.value(row)) is not None})
            except RowError as e:
                problems.append(f"{where(offset)}: " + (f"column {e.column!r}: " if e.column is not None else "")
                                + str(e))
        if described:
            offsets = [o for o, first, _ in described] + [first for _, first, _ in described if first >= 0]
            numbers = {o: o + 1 for o in offsets} if parquet else line_numbers(path, offsets)
            unit = "row" if parquet else "line"
            duplicates += [f"{path}:{numbers[o]}: item key {key!r} again; the first row "
                           + (f"({unit} {numbers[first]}) kept" if first >= 0 else "(in an earlier file) kept")
                           for o, first, key in described]
    return ItemsRead(items, problems, duplicate_keys, duplicates)


def clean_text(text: str) -> str:
    """Tabs and line breaks become spaces (titles and feature values travel through tf.Transform
    vocabularies, one value per line)."""
    return re.sub(r"[\t\r\n]+", " ", text).strip()


def read_events(spec: EventSpec, base_dir: str) -> Iterator[Tuple[str, int, Union[Event, RowError, Skipped]]]:
    """``(file, offset, Event | RowError | Skipped)`` of every data row, file by file (tests and tools; the
    pipeline reads the same rows in parallel)."""
    for file_index, path in enumerate(spec.files(base_dir)):
        layout = event_layout(spec, path)
        for offset, row in iter_rows(spec, path, layout):
            if isinstance(row, RowError):
                yield path, offset, row
                continue
            try:
                yield path, offset, parse_event(spec, row, order_of(file_index, offset))
            except (RowError, Skipped) as e:
                yield path, offset, e


@dataclasses.dataclass
class Preflight:
    """What the pre-flight check saw: files, per-file layout, the first rows' outcome."""

    files: List[str]
    header: Optional[Tuple[str, ...]]
    rows_checked: int
    bad_rows: int
    items: int = 0


def preflight(spec: EventSpec, base_dir: str, whole_gzip: bool = True) -> Preflight:
    """Checks the input before any component runs: files exist, delimiter, header, mapped columns, and the
    first rows parse (if none of the first ``PREFLIGHT_LINES`` does, the spec does not fit the file: the first
    error is raised). The items file: readable, and its keys meet the first events' item keys. ``whole_gzip``:
    also read every ``.gz`` to its end (``check_gzip``), so a truncated one is refused before the run."""
    files = spec.files(base_dir)
    if whole_gzip:
        for path in files + (spec.items.files(base_dir) if spec.items is not None else []):
            if path.endswith(".gz"):
                check_gzip(path)
    layout = event_layout(spec, files[0])
    good, errors, items_seen = 0, [], []
    fmt = spec.format_of(files[0])
    for offset, row in iter_rows(spec, files[0], layout, 0, None if fmt != PARQUET else PREFLIGHT_LINES):
        if good + len(errors) >= PREFLIGHT_LINES:
            break
        try:
            if isinstance(row, RowError):
                raise row
            event = parse_event(spec, row, order_of(0, offset))
            good += 1
            items_seen.append(event.item)
        except Skipped:
            good += 1
        except RowError as e:
            errors.append((offset, e))
    if errors and not good:
        offset, error = errors[0]
        line = line_numbers(files[0], [offset])[offset] if fmt != PARQUET else offset + 1
        raise DataFormatError(files[0], line, f"{error} (none of the first {len(errors)} rows parse with this "
                                              "spec)", error.column)
    count = 0
    if spec.items is not None:
        items, problems, _, _ = read_items(spec.items, base_dir)
        if not items:
            raise DataFormatError(spec.items.files(base_dir)[0], None, "no usable item rows" + (
                f"; first problem: {problems[0]}" if problems else ""))
        count = len(items)
        if items_seen and not any(i in items for i in items_seen):
            raise DataFormatError(spec.items.files(base_dir)[0], None,
                                  f"none of the item keys of the first {len(items_seen)} events (e.g. "
                                  f"{items_seen[0]!r}) is in the items file (keys like "
                                  f"{next(iter(items))!r}): wrong key column?")
    return Preflight(files, layout.header, good + len(errors), len(errors), count)


def matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def describe(spec: EventSpec) -> str:
    """A one-line summary for logs and the CLI."""
    parts = [f"user={spec.user!r}", f"item={spec.item!r}",
             f"timestamp={spec.timestamp!r} ({spec.timestamp_format})" if spec.has_timestamp else "file order"]
    if spec.rating is not None:
        parts.append(f"rating={spec.rating!r}")
    if spec.keep_events:
        parts.append(f"{spec.event_type!r} in {','.join(spec.keep_events)}")
    if spec.items:
        parts.append(f"items {spec.items.path} ({', '.join(spec.categorical_features() + spec.numeric_features())})")
    return f"{spec.path}: " + ", ".join(parts)
