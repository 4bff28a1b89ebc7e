"""File access for the readers: local paths and, when TensorFlow is loaded, ``tf.io.gfile`` URLs (GCS, S3);
gzip transparently (and its damage named); lines with their byte offsets, so that byte ranges of one file can
be read by different workers; line numbers from offsets (for messages)."""

from __future__ import annotations

import glob as globlib
import gzip
import os
import zlib
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from .read_errors import DataFormatError


def is_absolute(path: str) -> bool:
    """A URL (gs://, s3://) or an absolute path: not relative to a spec's folder."""
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
