"""What an input format is to the readers (``TableFormat``), and what it yields: rows (``Row``) and the layout
found in a file (``Layout``). ``TextFormat`` is the base of the line-based formats."""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from .. import file_io
from ..read_errors import Column, RowError


class Row:
    """One parsed row: a list of fields (delimited text) or a mapping (JSON Lines, Parquet)."""

    def __init__(self, fields, header: Optional[Sequence[str]] = None):
        self.fields = fields
        self.index = {name: i for i, name in enumerate(header)} if header else None
        self.named = isinstance(fields, Mapping)  # once per row: an ABC check per field was measured slow

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


@dataclasses.dataclass(frozen=True)
class Layout:
    """What the pre-flight check found in a file: its header names (None: no header, or a self-describing
    format)."""

    header: Optional[Tuple[str, ...]] = None

    @property
    def has_header(self) -> bool:
        return self.header is not None


RowsOrErrors = Iterator[Tuple[int, Union[Row, RowError]]]


class TableFormat:
    """One input format. A subclass says how its files are named, cut into pieces for parallel readers, turned
    into rows, and how a row's position reads in a message. ``table`` is the spec's table (``data/spec.py``:
    path, header, delimiter, encoding, fields)."""

    name: str = ""
    extensions: Tuple[str, ...] = ()  # lower case, with the dot, ``.gz`` stripped before matching
    position_word = "line"  # how messages count rows: "line" (text) or "row"

    def default_delimiter(self) -> Optional[str]:
        return None

    def layout(self, table, path: str, columns: Mapping[str, Optional[Column]],
               numeric: Sequence[Column] = ()) -> Layout:
        """The file's layout (header, delimiter checked), or DataFormatError. ``columns``: the mapped columns by
        role; ``numeric``: those whose values must be numbers (they tell a header from data)."""
        return Layout()

    def ranges(self, path: str, chunk_bytes: int, chunk_rows: int) -> List[Tuple[int, Optional[int]]]:
        """``(start, end)`` pieces of one file, read by different workers without losing or repeating a row."""
        raise NotImplementedError

    def rows(self, table, path: str, layout: Layout, start: int = 0, end: Optional[int] = None) -> RowsOrErrors:
        """``(offset, Row or RowError)`` of the data rows of one piece (``end=None``: to the end)."""
        raise NotImplementedError

    def positions(self, path: str, offsets: Sequence[int]) -> Dict[int, int]:
        """``{offset: 1-based line or row number}`` for messages."""
        raise NotImplementedError

    def preflight_end(self, rows: int) -> Optional[int]:
        """Where the pre-flight check may stop reading the first file (None: it reads lines until it has
        enough)."""
        return None


class TextFormat(TableFormat):
    """A line-based format: offsets are byte offsets of lines; a plain file is cut in byte ranges, a gzipped
    one is read whole by one worker."""

    def row_parser(self, table, path: str, layout: Layout) -> Callable[[str], Row]:
        """The function from one line of ``path`` to its Row (or RowError), set up once per file piece."""
        raise NotImplementedError

    def ranges(self, path: str, chunk_bytes: int, chunk_rows: int) -> List[Tuple[int, Optional[int]]]:
        if path.endswith(".gz"):
            return [(0, None)]
        size = file_io.file_size(path)
        return [(s, min(s + chunk_bytes, size)) for s in range(0, max(size, 1), chunk_bytes)]

    def rows(self, table, path: str, layout: Layout, start: int = 0, end: Optional[int] = None) -> RowsOrErrors:
        parse = self.row_parser(table, path, layout)
        for offset, text in file_io.read_lines(path, start, end, table.encoding):
            if offset == 0 and layout.has_header:
                continue
            if not text.strip():
                continue
            try:
                yield offset, parse(text)
            except RowError as e:
                yield offset, e

    def positions(self, path: str, offsets: Sequence[int]) -> Dict[int, int]:
        return file_io.line_numbers(path, offsets)


def first_lines(path: str, encoding: str, count: int) -> List[Tuple[int, str]]:
    """The first ``count`` lines of a text file with their offsets."""
    lines = []
    for offset, text in file_io.read_lines(path, encoding=encoding):
        lines.append((offset, text))
        if len(lines) >= count:
            break
    return lines
