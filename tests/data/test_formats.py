"""The input-format room: one registry of formats (data/formats/), every reader going through it."""

import gzip
import json

import pytest

from ondevice_rec.data import event_spec, events, formats, read_errors
from ondevice_rec.data.formats.base import Row, TextFormat


@pytest.mark.parametrize("name", formats.NAMES)
def test_every_extension_of_a_format_names_that_format_gzipped_or_not(name):
    fmt = formats.get(name)
    assert fmt.extensions, name
    for ext in fmt.extensions:
        assert formats.for_path(f"log{ext}") is fmt
        assert formats.for_path(f"dir/LOG{ext.upper()}.gz") is fmt


def test_an_unknown_extension_or_format_name_lists_the_choices():
    with pytest.raises(read_errors.DataFormatError, match="cannot tell the format.*'.xlsx'.*csv, tsv, jsonl, parquet"):
        formats.for_path("log.xlsx")
    with pytest.raises(ValueError, match="format must be one of csv, tsv, jsonl, parquet"):
        event_spec.EventSpec(path="log.x", format="xlsx")


@pytest.mark.parametrize("name", ["csv", "jsonl", "parquet"])
def test_the_pieces_of_a_file_hold_every_row_once_and_positions_count_as_the_format_says(tmp_path, name):
    rows = [{"user": f"u{i % 7}", "item": f"i{i}", "ts": 1000 + i} for i in range(500)]
    path = tmp_path / f"log.{name}"
    if name == "csv":
        path.write_text("user,item,ts\n" + "".join(f"{r['user']},{r['item']},{r['ts']}\n" for r in rows))
    elif name == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.Table.from_pylist(rows), path)
    spec = event_spec.EventSpec(path=path.name, user="user", item="item", timestamp="ts")
    fmt = spec.format_of(str(path))
    layout = events.event_layout(spec, str(path))
    pieces = fmt.ranges(str(path), chunk_bytes=1000, chunk_rows=64)
    assert len(pieces) > 3  # really cut
    read = [(offset, row.get("item", "item")) for start, end in pieces
            for offset, row in spec.rows(str(path), layout, start, end)]
    assert [item for _, item in read] == [r["item"] for r in rows]
    offsets = [offset for offset, _ in read]
    numbers = fmt.positions(str(path), offsets[:3])
    first_number = 2 if name == "csv" else 1  # after the header line
    assert [numbers[o] for o in offsets[:3]] == [first_number, first_number + 1, first_number + 2]
    assert fmt.position_word == ("row" if name == "parquet" else "line")


class _KeyValueLines(TextFormat):
    """A format made up for this test: ``user=u1;item=i2;ts=3`` lines."""

    name = "kv"
    extensions = (".kv",)

    def row_parser(self, table, path, layout):
        def parse(text):
            try:
                return Row(dict(part.split("=", 1) for part in text.split(";")))
            except ValueError:
                raise read_errors.RowError(f"not key=value pairs: {text[:40]!r}") from None
        return parse


def test_a_new_format_is_one_class_and_one_registry_line(tmp_path, monkeypatch):
    """Registered, a format is read by the event reader, the items reader and the pre-flight check, with bad
    rows counted and named by line: nothing else branches on the format."""
    kv = _KeyValueLines()
    monkeypatch.setitem(formats.FORMATS, kv.name, kv)  # the registry line
    monkeypatch.setattr(formats, "NAMES", tuple(formats.FORMATS))
    monkeypatch.setitem(formats._BY_EXTENSION, ".kv", kv)
    with gzip.open(tmp_path / "log.kv.gz", "wt") as f:
        f.write("user=u1;item=a;ts=10\nuser=u1;item=b;ts=20\nbroken line\nuser=u2;item=a;ts=30\n")
    (tmp_path / "items.kv").write_text("sku=a;name=Apple\nsku=b;name=Banana\n")
    spec = event_spec.EventSpec(path="log.kv.gz", user="user", item="item", timestamp="ts",
                                items=event_spec.ItemsSpec(path="items.kv", key="sku", title="name"))
    checked = events.preflight(spec, str(tmp_path))
    assert (checked.rows_checked, checked.bad_rows, checked.items) == (4, 1, 2)
    read = list(events.read_events(spec, str(tmp_path)))
    assert [(e.user, e.item, e.timestamp) for _, _, e in read if isinstance(e, events.Event)] == [
        ("u1", "a", 10), ("u1", "b", 20), ("u2", "a", 30)]
    (path, offset, error), = [r for r in read if isinstance(r[2], read_errors.RowError)]
    assert spec.format_of(path).positions(path, [offset]) == {offset: 3} and "not key=value" in str(error)
    assert {k: v.title for k, v in events.read_items(spec.items, str(tmp_path)).items.items()} == {
        "a": "Apple", "b": "Banana"}
    assert event_spec.EventSpec(path="log.x", format="kv").format_of("log.x") is kv
