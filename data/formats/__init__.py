"""The input-format room: every format the readers know, one module each, behind one registry.

A format (``base.TableFormat``) says which file extensions are its own, how a file is cut into pieces for
parallel readers, how a piece becomes rows, how a file's layout is checked (header, delimiter) and how a row's
position reads in a message. Adding one: a module here with its ``TableFormat`` and one line in ``FORMATS``
(tests: ``tests/data/test_formats.py``).
"""

from __future__ import annotations

import os
from typing import Dict, Tuple

from ..read_errors import DataFormatError
from .base import Layout, Row, TableFormat
from .delimited import CSV, TSV
from .jsonl import JSONL
from .parquet import PARQUET

FORMATS: Dict[str, TableFormat] = {f.name: f for f in (CSV, TSV, JSONL, PARQUET)}
NAMES: Tuple[str, ...] = tuple(FORMATS)
_BY_EXTENSION: Dict[str, TableFormat] = {ext: f for f in FORMATS.values() for ext in f.extensions}


def get(name: str) -> TableFormat:
    if name not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(NAMES)}, got {name!r}")
    return FORMATS[name]


def for_path(path: str) -> TableFormat:
    """The format of a file from its extension (``.gz`` stripped), or DataFormatError naming the choices."""
    name = path[:-3] if path.endswith(".gz") else path
    ext = os.path.splitext(name)[1].lower()
    if ext not in _BY_EXTENSION:
        raise DataFormatError(path, None, f"cannot tell the format from the extension {ext!r}; set \"format\" "
                                          f"to one of {', '.join(NAMES)}")
    return _BY_EXTENSION[ext]


__all__ = ["FORMATS", "NAMES", "Layout", "Row", "TableFormat", "for_path", "get"]
