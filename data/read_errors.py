"""What reading an activity log can go wrong with: a file that cannot be read (DataFormatError), one row that is
unusable (RowError, skipped and counted) and one row the spec filters out (Skipped, counted by reason)."""

from __future__ import annotations

from typing import Optional, Union

Column = Union[str, int]  # a column name (JSON key, Parquet column, header name) or a 0-based index


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


class Skipped(Exception):
    """A valid row the spec filters out (an event type not kept, a rating below ``min_rating``): counted by
    reason, not an error."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
