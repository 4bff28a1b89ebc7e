"""JSON Lines: one JSON object per line; columns are its keys (a list value is a multi-valued feature)."""

from __future__ import annotations

import json

from ..read_errors import RowError
from .base import Layout, Row, TextFormat


class JsonLines(TextFormat):
    name = "jsonl"
    extensions = (".jsonl", ".ndjson", ".json")

    def row_parser(self, table, path: str, layout: Layout):
        return _json_row


def _json_row(text: str) -> Row:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise RowError(f"not a JSON object: {e.msg}") from e
    if not isinstance(value, dict):
        raise RowError("not a JSON object")
    return Row(value)


JSONL = JsonLines()
