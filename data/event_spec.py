"""The event spec: an ``EventSpec`` says where an activity log's events are and which columns mean what (an
``ItemsSpec`` the same of the optional items file).

An event is (user key, item key, time, optional rating / weight); keys are strings end to end (numbers are
strings that happen to be digits). The optional items file gives each item key a title, categorical
features (single or multi-valued) and numeric features. MovieLens layouts are presets of this spec
(``data/movielens.py``), not a second code path.

Plain Python (no TensorFlow, no Beam). Reading the files a spec names: ``data/events.py`` (rows to events, the
items file, the pre-flight check), through the formats of ``data/formats/``.

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

import dataclasses
import json
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from . import file_io, formats
from .read_errors import Column, DataFormatError

SPEC_FILE = "events.json"  # the event spec a log folder may hold beside its files (make-synthetic writes one)
HEADER_CHOICES = ("auto", "yes", "no")
UNIX_SECONDS, UNIX_MILLISECONDS, ISO8601 = "unix_s", "unix_ms", "iso8601"
TIMESTAMP_FORMATS = (UNIX_SECONDS, UNIX_MILLISECONDS, ISO8601)


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
        if self.format is not None and self.format not in formats.FORMATS:
            raise ValueError(f"{what}: format must be one of {', '.join(formats.NAMES)}, got {self.format!r}")
        if self.header not in HEADER_CHOICES:
            raise ValueError(f"{what}: header must be one of {', '.join(HEADER_CHOICES)}, got {self.header!r}")
        if self.delimiter == "":
            raise ValueError(f"{what}: the delimiter must not be empty")

    def format_of(self, path: str) -> formats.TableFormat:
        """The format of one of the table's files: the declared one, else from the file's extension."""
        return formats.get(self.format) if self.format else formats.for_path(path)

    def delimiter_of(self, path: str) -> str:
        return self.delimiter or self.format_of(path).default_delimiter() or ","

    def layout(self, path: str, columns: Mapping[str, Optional[Column]],
               numeric: Sequence[Column] = ()) -> formats.Layout:
        """The file's layout as its format checks it (header, delimiter, mapped columns)."""
        return self.format_of(path).layout(self, path, columns, numeric)

    def rows(self, path: str, layout: formats.Layout, start: int = 0, end: Optional[int] = None):
        """``(offset, Row or RowError)`` of the data rows of one file (``start``..``end``: a piece of it)."""
        return self.format_of(path).rows(self, path, layout, start, end)

    def files(self, base_dir: str) -> List[str]:
        """The matched files, sorted (the file order is the time order when there is no timestamp)."""
        pattern = self.path if file_io.is_absolute(self.path) else os.path.join(base_dir, self.path)
        found = sorted(file_io.glob_files(pattern))
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

    def values(self, row: "formats.Row") -> Tuple[str, ...]:
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

    def value(self, row: "formats.Row") -> Optional[float]:
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


def folder_spec(data_dir: str) -> Optional[EventSpec]:
    """The event spec a log folder holds (``SPEC_FILE``), else None (a MovieLens folder: its preset)."""
    path = os.path.join(data_dir, SPEC_FILE)
    return load_spec(path) if os.path.isfile(path) else None


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
