"""Delimited text: CSV and TSV (any delimiter, several characters too, e.g. MovieLens' ``::``), with or without a
header line, which is detected when not declared. Columns are header names or 0-based indices."""

from __future__ import annotations

import csv
import json
import re
from typing import List, Mapping, Optional, Sequence

from ..read_errors import Column, DataFormatError, RowError
from .base import Layout, Row, TextFormat, first_lines

# Tried, in this order, when the declared delimiter splits a line into too few fields.
CANDIDATE_DELIMITERS = (",", "\t", ";", "|", "::", " ")


def split_fields(text: str, delimiter: str) -> List[str]:
    """Fields of one delimited line; a one-character delimiter honours CSV quoting."""
    if len(delimiter) == 1:
        return next(csv.reader([text], delimiter=delimiter), [])
    return text.split(delimiter)


class Delimited(TextFormat):
    def __init__(self, name: str, delimiter: str, extensions):
        self.name, self._delimiter, self.extensions = name, delimiter, tuple(extensions)

    def default_delimiter(self) -> Optional[str]:
        return self._delimiter

    def layout(self, table, path: str, columns: Mapping[str, Optional[Column]],
               numeric: Sequence[Column] = ()) -> Layout:
        return detect_layout(table, path, columns, numeric)

    def row_parser(self, table, path: str, layout: Layout):
        delimiter, fields, header = table.delimiter_of(path), table.fields, layout.header

        def parse(text: str) -> Row:
            values = split_fields(text, delimiter)
            if fields is not None and len(values) != fields:
                raise RowError(f"expected {fields} fields separated by {delimiter!r}, got {len(values)}: "
                               f"{text[:80]!r}")
            return Row(values, header)
        return parse


# MovieLens names its files .dat (``::``), .data (tabs), .item (``|``) and .txt: the delimiter check names the
# one that fits when the declared one does not.
CSV = Delimited("csv", ",", (".csv", ".dat", ".item", ".txt"))
TSV = Delimited("tsv", "\t", (".tsv", ".tab", ".data"))


def _numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


_HEADER_WORDS = re.compile(r"(user|item|movie|product|sku|session|customer|visitor|id|time|rating|event)",
                           re.IGNORECASE)


def detect_layout(table, path: str, columns: Mapping[str, Optional[Column]],
                  numeric: Sequence[Column] = ()) -> Layout:
    """Header and delimiter of a delimited file, from its first lines. Raises DataFormatError when the
    delimiter is wrong (naming the one that fits), a named column is missing (naming the columns found), the
    header cannot be told from data, or the file has no rows (empty, or a header alone). ``columns``: the mapped
    columns by role; ``numeric``: those whose values must be numbers (timestamp, rating), which tell a header
    line from a data line."""
    lines = [text for _, text in first_lines(path, table.encoding, 20) if text.strip()]
    if not lines:
        raise DataFormatError(path, None, "the file is empty")
    layout = _delimited_layout(table, path, columns, numeric, lines)
    if layout.has_header and len(lines) == 1:
        raise DataFormatError(path, None, f"the file has a header line and no rows: {lines[0][:80]!r}")
    return layout


def _delimited_layout(table, path: str, columns: Mapping[str, Optional[Column]],
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
