"""Reading activity logs: rows become events (``parse_event``), the items file becomes item facts
(``read_items``), and the pre-flight check refuses an input that does not fit its spec before any component runs
(``preflight``). ``data/spec.py`` says what the files are; ``data/formats/`` reads each format's rows.

Plain Python (no TensorFlow, no Beam): the ExampleGen executor, the CLI and the tests share it. Files are opened
through ``data/files.py`` (``tf.io.gfile`` when TensorFlow is loaded, so GCS / S3 work).
"""

from __future__ import annotations

import dataclasses
import datetime
import fnmatch
import re
from typing import Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from . import file_io
from .read_errors import Column, DataFormatError, RowError, Skipped
from .formats import Layout, Row
from .event_spec import ISO8601, UNIX_MILLISECONDS, EventSpec, ItemsSpec

MAX_TIMESTAMP_SECONDS = 10 ** 11  # the year 5138: a larger "seconds" value is milliseconds (or garbage)
# Without a timestamp column the time of an event is its place in the input: file number * 2^40 + byte offset
# (or row number), so a user's events keep the file order.
ORDER_FILE_SHIFT = 40
PREFLIGHT_LINES = 200  # lines of the first file the pre-flight check parses


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


def parse_event(spec: EventSpec, row: Row, order: int) -> Event:
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


def event_columns(spec: EventSpec) -> Dict[str, Optional[Column]]:
    return {"user": spec.user, "item": spec.item, "timestamp": spec.timestamp, "rating": spec.rating,
            "event_type": spec.event_type}


def event_layout(spec: EventSpec, path: str) -> Layout:
    numeric = [c for c in (spec.rating,) + ((spec.timestamp,) if spec.timestamp_format != ISO8601 else ())
               if isinstance(c, int)]
    return spec.layout(path, event_columns(spec), numeric)


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
        fmt = spec.format_of(path)
        layout = spec.layout(path, columns)
        first_offsets: Dict[str, int] = {}
        described: List[Tuple[int, int, str]] = []  # (offset, offset of the kept row, key)

        def where(offset: int) -> str:
            number = fmt.positions(path, [offset])[offset]
            return f"{path}: row {number}" if fmt.position_word == "row" else f"{path}:{number}"
        for offset, row in spec.rows(path, layout):
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
            numbers, unit = fmt.positions(path, offsets), fmt.position_word
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
        for offset, row in spec.rows(path, layout):
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
    paths = spec.files(base_dir)
    if whole_gzip:
        for path in paths + (spec.items.files(base_dir) if spec.items is not None else []):
            if path.endswith(".gz"):
                file_io.check_gzip(path)
    layout = event_layout(spec, paths[0])
    good, errors, items_seen = 0, [], []
    fmt = spec.format_of(paths[0])
    for offset, row in spec.rows(paths[0], layout, 0, fmt.preflight_end(PREFLIGHT_LINES)):
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
        line = fmt.positions(paths[0], [offset])[offset]
        raise DataFormatError(paths[0], line, f"{error} (none of the first {len(errors)} rows parse with this "
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
    return Preflight(paths, layout.header, good + len(errors), len(errors), count)


def matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)
