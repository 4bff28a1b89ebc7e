"""The generic event reader: formats, header and delimiter detection, bad rows, the pre-flight check."""

import gzip
import json
import os

import pytest

from ondevice_rec.data import event_spec, events, file_io, movielens, read_errors


def write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))


def read(spec, folder):
    good, bad, skipped = [], [], []
    for path, offset, event in events.read_events(spec, str(folder)):
        if isinstance(event, read_errors.RowError):
            bad.append((file_io.line_numbers(path, [offset])[offset], event.column, str(event)))
        elif isinstance(event, read_errors.Skipped):
            skipped.append(event.reason)
        else:
            good.append(event)
    return good, bad, skipped


def test_a_ratings_csv_with_or_without_header_loses_no_row(tmp_path):
    """ml-latest's header is detected from the number columns, never assumed."""
    for header in ("userId,movieId,rating,timestamp\n", ""):
        folder = tmp_path / ("with" if header else "without")
        write(folder / "ratings.csv", header + "1,10,4.0,964982703\n1,11,3.5,964982800\n")
        write(folder / "movies.csv", "movieId,title,genres\n10,A (1995),Drama\n11,B (1996),Comedy\n")
        spec = movielens.preset_spec(str(folder))
        good, bad, _ = read(spec, folder)
        assert [e.item for e in good] == ["10", "11"] and not bad, header
        assert events.preflight(spec, str(folder)).header == (("userId", "movieId", "rating", "timestamp")
                                                              if header else None)


def test_a_gzipped_ratings_csv_is_read(tmp_path):
    with gzip.open(tmp_path / "ratings.csv.gz", "wt") as f:
        f.write("userId,movieId,rating,timestamp\n1,10,4.0,964982703\n2,10,3.0,964982704\n")
    write(tmp_path / "movies.csv", "movieId,title,genres\n10,A (1995),Drama\n")
    assert movielens.detect_format(str(tmp_path)) is movielens.ML_LATEST
    good, _, _ = read(movielens.preset_spec(str(tmp_path)), tmp_path)
    assert [(e.user, e.item, e.rating) for e in good] == [("1", "10", 4.0), ("2", "10", 3.0)]


@pytest.mark.parametrize("text, user, message", [
    # a wrong delimiter is named with the one that fits
    ("user;item;ts\nu1;A;100\nu1;B;200\n", "user",
     r"log\.csv:1: the delimiter is ',' .* with ';': set \"delimiter\": \";\""),
    # a missing column is named with the columns found
    ("customer,sku,ts\nu1,A,100\n", "user",
     r"the user column 'user' is not in the header; the columns found: 'customer', 'sku', 'ts'"),
])
def test_the_preflight_check_refuses_a_spec_that_does_not_fit_the_file(tmp_path, text, user, message):
    write(tmp_path / "log.csv", text)
    spec = event_spec.EventSpec(path="log.csv", user=user, item="item" if "item" in text else "sku", timestamp="ts")
    with pytest.raises(read_errors.DataFormatError, match=message):
        events.preflight(spec, str(tmp_path))


def test_the_named_delimiter_reads_the_file(tmp_path):
    write(tmp_path / "log.csv", "user;item;ts\nu1;A;100\nu1;B;200\n")
    fixed = event_spec.EventSpec(path="log.csv", delimiter=";", user="user", item="item", timestamp="ts")
    assert events.preflight(fixed, str(tmp_path)).rows_checked == 2


def test_unparseable_timestamps_and_empty_ids_are_bad_rows_naming_line_and_column(tmp_path):
    write(tmp_path / "log.csv", "user,item,ts\nu1,A,2024-01-01T10:00:00Z\nu1,B,yesterday\n,C,2024-01-02\n"
                                "u2,,2024-01-03\nu2,D,2024-01-04T00:00:00+02:00\n")
    spec = event_spec.EventSpec(path="log.csv", user="user", item="item", timestamp="ts", timestamp_format="iso8601")
    good, bad, _ = read(spec, tmp_path)
    assert [e.item for e in good] == ["A", "D"]
    assert good[0].timestamp == 1704103200 and good[1].timestamp == 1704319200
    assert [(line, column) for line, column, _ in bad] == [(3, "ts"), (4, "user"), (5, "item")]
    assert "is not ISO-8601" in bad[0][2] and "empty user id" in bad[1][2] and "empty item id" in bad[2][2]
    # Every row of a file failing the same way is a spec that does not fit: refused up front.
    unix = event_spec.EventSpec(path="log.csv", user="user", item="item", timestamp="ts")
    with pytest.raises(read_errors.DataFormatError, match=r"log\.csv:2: column 'ts': timestamp .* is not a number"):
        events.preflight(unix, str(tmp_path))


def test_milliseconds_read_as_seconds_are_refused(tmp_path):
    write(tmp_path / "log.tsv", "u1\tA\t1700000000000\n")
    spec = event_spec.EventSpec(path="log.tsv", timestamp=2)
    _, bad, _ = read(spec, tmp_path)
    assert "milliseconds? (set timestamp_format unix_ms)" in bad[0][2]
    good, _, _ = read(event_spec.EventSpec(path="log.tsv", timestamp=2, timestamp_format="unix_ms"), tmp_path)
    assert (good[0].timestamp, good[0].millis) == (1700000000, 0)


@pytest.mark.parametrize("fmt, raw, expected", [
    ("unix_ms", "1700000000123", (1700000000, 123)),
    ("iso8601", "2023-11-14T22:13:20.456Z", (1700000000, 456)),
    ("iso8601", "2023-11-14T22:13:20+00:00", (1700000000, 0)),
    ("unix_s", "1700000000.9", (1700000000, None)),  # seconds only: no milliseconds feature
])
def test_timestamps_keep_their_milliseconds(tmp_path, fmt, raw, expected):
    write(tmp_path / "log.tsv", f"u1\tA\t{raw}\n")
    (event,), bad, _ = read(event_spec.EventSpec(path="log.tsv", timestamp=2, timestamp_format=fmt), tmp_path)
    assert (event.timestamp, event.millis) == expected and not bad


def test_json_lines_gzip_event_types_and_file_order_without_timestamps(tmp_path):
    rows = [{"c": "u1", "sku": "B01", "e": "view"}, {"c": "u1", "sku": "B02", "e": "wishlist"},
            {"c": "u1", "sku": "B03", "e": "purchase"}]
    write(tmp_path / "a.jsonl", "".join(json.dumps(r) + "\n" for r in rows[:2]) + "not json\n")
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.write(json.dumps(rows[2]) + "\n")
    spec = event_spec.EventSpec(path="*.jsonl*", user="c", item="sku", event_type="e", keep_events="view,purchase")
    good, bad, skipped = read(spec, tmp_path)
    assert [e.item for e in good] == ["B01", "B03"] and skipped == ["event_type"]
    assert bad[0][0] == 3 and "not a JSON object" in bad[0][2]
    assert good[0].timestamp < good[1].timestamp  # file order, across files in name order


def test_parquet_events_are_read(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"user": ["u1", "u1", "u2"], "item": [1000000007, 20, 1000000007],
                             "ts": [1, 2, 3]}), tmp_path / "log.parquet")
    spec = event_spec.EventSpec(path="log.parquet", user="user", item="item", timestamp="ts")
    good, _, _ = read(spec, tmp_path)
    assert [(e.user, e.item) for e in good] == [("u1", "1000000007"), ("u1", "20"), ("u2", "1000000007")]


def test_items_file_features_and_a_catalogue_matching_no_event(tmp_path):
    write(tmp_path / "log.csv", "user,item\nu1,A\nu1,B\n")
    write(tmp_path / "items.csv", 'sku,name,cats,price\nA,"Mug, blue",home|kitchen,9.5\nB,Pan,kitchen,\n')
    items = {"path": "items.csv", "key": "sku", "title": "name",
             "categorical": {"cats": {"column": "cats", "separator": "|"}}, "numeric": {"price": "price"}}
    spec = event_spec.EventSpec.from_dict({"events": "log.csv", "user": "user", "item": "item", "items": items})
    table, problems, _, _ = events.read_items(spec.items, str(tmp_path))
    assert not problems
    assert table["A"] == events.ItemInfo("Mug, blue", {"cats": ("home", "kitchen")}, {"price": 9.5})
    assert table["B"].numeric == {}
    assert events.preflight(spec, str(tmp_path)).items == 2
    write(tmp_path / "items.csv", "sku,name,cats,price\nX,Other,misc,1\n")
    with pytest.raises(read_errors.DataFormatError, match="none of the item keys of the first 2 events"):
        events.preflight(spec, str(tmp_path))


def test_lines_mixing_latin1_and_utf8_both_decode(tmp_path):
    (tmp_path / "log.csv").write_bytes("u1,Café\n".encode("latin-1") + "u1,Amélie\n".encode("utf-8"))
    good, _, _ = read(event_spec.EventSpec(path="log.csv", header="no", encoding="latin-1"), tmp_path)
    assert [e.item for e in good] == ["Café", "Amélie"]


def test_byte_ranges_read_every_line_exactly_once(tmp_path):
    lines = [f"u{i % 7},item-{i},{i}" for i in range(500)]
    write(tmp_path / "log.csv", "\n".join(lines) + "\n")
    size = os.path.getsize(tmp_path / "log.csv")
    for chunk in (1, 7, 64, 1000, size):
        got = [text for start in range(0, size, chunk)
               for _, text in file_io.read_lines(str(tmp_path / "log.csv"), start, min(start + chunk, size))]
        assert got == lines, chunk
    offsets = [o for o, _ in file_io.read_lines(str(tmp_path / "log.csv"))]
    assert file_io.line_numbers(str(tmp_path / "log.csv"), offsets[::97]) == {
        o: 1 + i * 97 for i, o in enumerate(offsets[::97])}


def test_a_spec_round_trips_through_json_and_refuses_unknown_keys(tmp_path):
    spec = movielens.ML_100K.spec()
    assert event_spec.EventSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ValueError, match="unknown event spec keys: colour"):
        event_spec.EventSpec.from_dict({"events": "x.csv", "colour": "red"})
    with pytest.raises(ValueError, match="keep_events needs the event_type column"):
        event_spec.EventSpec(path="x.csv", keep_events=("buy",))
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"events": "log.csv", "user": "customer"}))
    assert event_spec.load_spec(str(path), ["item=sku", "items.path=catalog.csv"]).items.path == "catalog.csv"


def test_an_items_file_repeating_a_key_keeps_the_first_row_and_counts_the_others(tmp_path):
    write(tmp_path / "log.csv", "user,item\nu1,A\nu1,B\n")
    write(tmp_path / "items.csv", "sku,name\nA,First A\nB,Only B\nA,Second A\nA,Third A\n")
    spec = event_spec.EventSpec.from_dict({"events": "log.csv", "user": "user", "item": "item",
                                       "items": {"path": "items.csv", "key": "sku", "title": "name"}})
    table, problems, duplicate_keys, duplicates = events.read_items(spec.items, str(tmp_path))
    assert table["A"].title == "First A" and table["B"].title == "Only B" and not problems
    assert duplicate_keys == 2
    assert duplicates == [f"{tmp_path / 'items.csv'}:4: item key 'A' again; the first row (line 2) kept",
                          f"{tmp_path / 'items.csv'}:5: item key 'A' again; the first row (line 2) kept"]


def test_a_nul_byte_or_control_character_in_an_id_makes_a_bad_row(tmp_path):
    write(tmp_path / "log.csv", "user,item,ts\nu1,A,1\nu1,B\x00X,2\nu\x012,C,3\nu2,D,4\n")
    good, bad, _ = read(event_spec.EventSpec(path="log.csv", user="user", item="item", timestamp="ts"), tmp_path)
    assert [e.item for e in good] == ["A", "D"]
    assert [(line, column) for line, column, _ in bad] == [(3, "item"), (4, "user")]
    assert "contains the control character '\\x00'" in bad[0][2]


def test_a_gzip_cut_short_is_named_when_read(tmp_path):
    data = gzip.compress(b"".join(b"u%d,I%d,%d\n" % (i % 7, i % 13, i) for i in range(5000)))
    (tmp_path / "log.csv.gz").write_bytes(data[:len(data) * 2 // 3])
    spec = event_spec.EventSpec(path="log.csv.gz", header="no", timestamp=2)
    with pytest.raises(read_errors.DataFormatError, match=r"log\.csv\.gz: the gzip file is truncated \(it ends after "):
        read(spec, tmp_path)
    with pytest.raises(read_errors.DataFormatError, match="truncated"):
        events.preflight(spec, str(tmp_path))
    (tmp_path / "log.csv.gz").write_bytes(data)
    assert events.preflight(spec, str(tmp_path)).bad_rows == 0
