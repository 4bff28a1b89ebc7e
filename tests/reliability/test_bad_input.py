"""Messy input: every case gives a clear error naming file and line, or a counted skip recorded on the artifact."""

import os

import pytest
from google.protobuf import message

from ondevice_rec.components.history_windowing import windowing
from ondevice_rec.components.event_example_gen import executor
from ondevice_rec.components.event_example_gen.component import EventExampleGen
from ondevice_rec.data import movielens

MOVIES_1M = "1::Toy Story (1995)::Animation|Children's\n2::Heat (1995)::Action\n3::Se7en (1995)::Thriller\n"


def ratings_lines(users=40, per_user=10):
    """Valid ml-1m ratings lines: user u rates movies 1..3 in turn, one per minute."""
    return [f"{u}::{1 + i % 3}::{1 + i % 5}::{978300000 + 60 * (u * per_user + i)}"
            for u in range(1, users + 1) for i in range(per_user)]


def write_ml1m(folder, lines, movies=MOVIES_1M, encoding="latin-1"):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "ratings.dat"), "w", encoding=encoding) as f:
        f.write("".join(line + "\n" for line in lines))
    with open(os.path.join(folder, "movies.dat"), "wb") as f:
        f.write(movies if isinstance(movies, bytes) else movies.encode("latin-1"))
    return str(folder)


def run_example_gen(input_base, out_dir, pattern="*", max_bad_fraction=0.001, spec=None):
    """The ExampleGen executor as the launcher calls it (exec properties as JSON); returns (artifact, report)."""
    import json
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils
    component = EventExampleGen(input_base, split_pattern=pattern, max_bad_fraction=max_bad_fraction, spec=spec)
    properties = {k: proto_utils.proto_to_json(v) if isinstance(v, message.Message) else v
                  for k, v in component.exec_properties.items() if v is not None}
    examples = standard_artifacts.Examples()
    examples.uri = str(out_dir)
    executor.Executor().Do({}, {"examples": [examples]}, properties)
    with open(os.path.join(str(out_dir), executor.REPORT_FILE)) as f:
        return examples, json.load(f)


def _property(artifact, key):
    return artifact.get_int_custom_property(key)


def test_a_malformed_line_is_skipped_counted_and_named(tmp_path):
    lines = ratings_lines()
    lines.insert(7, "3::2::4")  # line 8: a field short
    folder = write_ml1m(tmp_path / "data", lines)
    artifact, report = run_example_gen(folder, tmp_path / "out", max_bad_fraction=0.01)
    assert _property(artifact, "bad_lines") == 1 and _property(artifact, "input_lines") == 401
    assert report["bad_line_samples"][0]["line"] == 8
    assert report["bad_line_samples"][0]["error"].startswith(os.path.join(folder, "ratings.dat") + ":8: expected 4")


def test_too_many_malformed_lines_fail_the_run_naming_the_first(tmp_path):
    lines = ratings_lines()
    lines[2] = "1::2::three::978300000"
    folder = write_ml1m(tmp_path / "data", lines)
    with pytest.raises(movielens.DataFormatError, match=r"1 of 400 lines \(0\.25%\) are malformed, more "
                                                         r"than --max-bad-fraction 0\.001 allows") as error:
        run_example_gen(folder, tmp_path / "out")
    assert "ratings.dat:3: column 2: rating 'three' is not a number" in str(error.value)


@pytest.mark.parametrize("bad_line, message", [
    ("7\t2\t4\t978300000", "expected 4 fields separated by '::', got 1"),           # wrong separator
    ("u7::2::4::978300000", "column 0: id 'u7' is not a positive integer"),        # non-numeric id
    ("7::2::4::978300000123", "milliseconds? (set timestamp_format unix_ms)"),     # timestamp in ms
    ("7::2::9::978300000", "rating 9 is outside 0.5..5"),                          # rating out of range
    ("7::2::0::978300000", "rating 0 is outside 0.5..5"),
    ("7::0::4::978300000", "column 1: id '0' is not a positive integer"),
    ("7::2::4::978300000::extra", "expected 4 fields separated by '::', got 5"),   # extra column
    ("7::::4::978300000", "empty item id"),
    ("7::2::4::last tuesday", "column 3: timestamp 'last tuesday' is not a number"),
])
def test_each_kind_of_bad_line_is_named(tmp_path, bad_line, message):
    folder = write_ml1m(tmp_path / "data", ratings_lines()[:20] + [bad_line])
    with pytest.raises(movielens.DataFormatError) as error:
        run_example_gen(folder, tmp_path / "out")
    assert "ratings.dat:21: " in str(error.value) and message in str(error.value)


def test_a_file_with_the_wrong_separator_throughout_fails_on_its_first_line(tmp_path):
    folder = write_ml1m(tmp_path / "data", [line.replace("::", ",") for line in ratings_lines()])
    with pytest.raises(movielens.DataFormatError) as error:
        run_example_gen(folder, tmp_path / "out")
    assert "ratings.dat:1: the delimiter is '::' but the lines split into 1 field(s) with it and into 4 with ','" \
        in str(error.value)


def test_ratings_of_movies_missing_from_the_movies_file_are_kept_and_counted(tmp_path):
    folder = write_ml1m(tmp_path / "data", ratings_lines()[:30] + ["1::99::4::978399999", "2::98::5::978399999"])
    artifact, report = run_example_gen(folder, tmp_path / "out")
    assert _property(artifact, "events_of_unlisted_items") == 2 and report["events"] == 32
    assert _property(artifact, "bad_lines") == 0


def test_an_empty_ratings_file_is_refused_before_the_pipeline_starts(tmp_path):
    folder = write_ml1m(tmp_path / "data", [])
    with pytest.raises(movielens.DataFormatError, match="ratings.dat: the ratings file is empty"):
        movielens.detect_format(folder)
    with pytest.raises(movielens.DataFormatError, match="ratings.dat: the ratings file is empty"):
        run_example_gen(folder, tmp_path / "out")
    # Only blank or bad lines: nothing to train on, whatever the allowed fraction (refused up front).
    folder = write_ml1m(tmp_path / "blank", ["", "x", ""])
    with pytest.raises(movielens.DataFormatError, match=r"ratings.dat:1: expected 4 fields separated by '::', "
                                                        r"got 1: 'x'"):
        run_example_gen(folder, tmp_path / "out2", max_bad_fraction=1.0)


def test_missing_files_are_named(tmp_path):
    folder = write_ml1m(tmp_path / "data", ratings_lines()[:5])
    os.remove(os.path.join(folder, "movies.dat"))
    with pytest.raises(FileNotFoundError, match="movies.dat is missing"):
        movielens.detect_format(folder)
    with pytest.raises(FileNotFoundError, match="holds no MovieLens ratings file"):
        movielens.detect_format(str(tmp_path))


def test_titles_mixing_latin1_and_utf8_lines_both_decode(tmp_path):
    movies = "1::Café Society (1995)::Drama\n".encode("latin-1") + "2::Amélie (2001)::Comedy\n".encode("utf-8")
    folder = write_ml1m(tmp_path / "data", ratings_lines()[:5], movies=movies)
    titles = {m.movie_id: m.title for m in movielens.read_movies(folder).values()}
    assert titles == {1: "Café Society", 2: "Amélie"}


def test_a_later_span_with_an_extra_column_fails_naming_that_span(tmp_path):
    spans = tmp_path / "spans"
    write_ml1m(spans / "span-1", ratings_lines())
    write_ml1m(spans / "span-2", [line + "::web" for line in ratings_lines()])
    artifact, _ = run_example_gen(str(spans), tmp_path / "out1", pattern="span-1/*")
    assert _property(artifact, "bad_lines") == 0
    with pytest.raises(movielens.DataFormatError) as error:
        run_example_gen(str(spans), tmp_path / "out2", pattern="span-2/*")
    assert os.path.join("span-2", "ratings.dat") + ":1: expected 4 fields separated by '::', got 5" in str(error.value)


def test_a_later_span_with_a_missing_column_fails_naming_that_span(tmp_path):
    spans = tmp_path / "spans"
    write_ml1m(spans / "span-3", [line.rsplit("::", 1)[0] for line in ratings_lines()])
    with pytest.raises(movielens.DataFormatError) as error:
        run_example_gen(str(spans), tmp_path / "out", pattern="span-3/*")
    assert os.path.join("span-3", "ratings.dat") + ":1: expected 4 fields separated by '::', got 3" in str(error.value)


def test_duplicate_rows_and_re_ratings_keep_the_first_rating_only():
    e = windowing.Event
    events = [e("1", "10", 100, 4.0), e("1", "11", 200, 3.0), e("1", "11", 200, 3.0), e("1", "12", 300, 5.0),
              e("1", "10", 400, 2.0), e("1", "13", 500, 4.0)]
    timeline = windowing.sort_timeline(events)
    assert [(x.item, x.timestamp) for x in timeline] == [("10", 100), ("11", 200), ("12", 300), ("13", 500)]
    options = windowing.WindowingOptions(history_length=3)
    for _, example in windowing.window_timeline(events, options):
        assert example["label_item"] not in example["context_item"]


def test_users_with_one_rating_are_skipped_and_counted():
    options = windowing.WindowingOptions(history_length=3)
    assert list(windowing.window_timeline([windowing.Event("5", "1", 100, 4.0)], options)) == []
    assert windowing.training_events([windowing.Event("5", "1", 100, 4.0)], options) == []


def test_an_event_log_spec_reads_strings_counts_filtered_events_and_reports_bad_lines(tmp_path):
    """A generic log through the ExampleGen executor: string keys, a filtered event type, a bad line named
    by file, line and column, and the file cut into byte ranges read separately (a tiny chunk size)."""
    import json
    from ondevice_rec.data import events as event_log
    folder = tmp_path / "shop"
    folder.mkdir()
    rows = [{"u": f"c{i % 5}", "sku": f"B{i:03d}", "t": 1_700_000_000_000 + i * 1000,
             "kind": "wishlist" if i % 10 == 0 else "view"} for i in range(60)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    text = text.replace(json.dumps(rows[33]), json.dumps({**rows[33], "t": "soon"}))
    (folder / "log.jsonl").write_text(text)
    spec = event_log.EventSpec(path="log.jsonl", user="u", item="sku", timestamp="t", timestamp_format="unix_ms",
                               event_type="kind", keep_events=("view",))
    import ondevice_rec.components.event_example_gen.executor as executor_module
    original = executor_module.CHUNK_BYTES
    executor_module.CHUNK_BYTES = 512
    try:
        artifact, report = run_example_gen(str(folder), tmp_path / "out", max_bad_fraction=0.05, spec=spec)
    finally:
        executor_module.CHUNK_BYTES = original
    assert report["input_lines"] == 60 and report["filtered_events"] == 6 and report["bad_lines"] == 1
    assert _property(artifact, "events") == 53
    sample = report["bad_line_samples"][0]
    assert sample["line"] == 34 and "log.jsonl:34: column 't': timestamp 'soon' is not a number" in sample["error"]
