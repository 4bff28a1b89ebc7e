"""Apache Parquet: columns by name; pieces and positions are row numbers (a file is read through pyarrow)."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from .. import file_io
from .base import Layout, Row, RowsOrErrors, TableFormat


class Parquet(TableFormat):
    name = "parquet"
    extensions = (".parquet", ".pq")
    position_word = "row"

    def ranges(self, path: str, chunk_bytes: int, chunk_rows: int) -> List[Tuple[int, Optional[int]]]:
        rows = row_count(path)
        return [(s, min(s + chunk_rows, rows)) for s in range(0, max(rows, 1), chunk_rows)]

    def rows(self, table, path: str, layout: Layout, start: int = 0, end: Optional[int] = None) -> RowsOrErrors:
        import pyarrow.parquet as pq
        with file_io.open_binary(path) as f:
            whole = pq.read_table(f)
        for i, row in enumerate(whole.slice(start, None if end is None else end - start).to_pylist()):
            yield start + i, Row(row)

    def positions(self, path: str, offsets: Sequence[int]) -> Dict[int, int]:
        return {offset: offset + 1 for offset in offsets}

    def preflight_end(self, rows: int) -> Optional[int]:
        return rows


def row_count(path: str) -> int:
    import pyarrow.parquet as pq
    with file_io.open_binary(path) as f:
        return pq.ParquetFile(f).metadata.num_rows


PARQUET = Parquet()
