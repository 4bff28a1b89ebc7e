"""Beam executor of EventExampleGen: an activity log (any EventSpec) -> one tf.Example per event.

Each event carries ``user_id`` and ``item_id`` (strings), ``timestamp`` and, when the log has them, ``rating``
and its item's ``title``, categorical (``cat_NAME``) and numeric (``num_NAME``) features from the items file.
Every folder holding a file matched by the split pattern is read with the spec (paths relative to that
folder); without a spec the MovieLens layout of the folder is detected.

Large inputs are read in parallel: an uncompressed file is cut into byte ranges (``CHUNK_BYTES``) that
different workers read (a line belongs to the range it starts in), a Parquet file into row ranges; a gzipped
file is read by one worker. Bad lines are skipped, counted and sampled by byte offset; their line numbers are
computed at the end, for the samples only.

Besides the ``events`` split, each reader keeps a uniform sample of its events (``data/sampling.py``), sized by
its share of the input's bytes, into the ``sample`` split: ``STATISTICS_SAMPLE_EVENTS`` events in all, the whole
log when it is smaller. StatisticsGen and ExampleValidator read that split.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import math
import os
import uuid
from typing import Any, Dict, Optional, Tuple

import apache_beam as beam
import tensorflow as tf
from google.protobuf import json_format, struct_pb2
from tfx.components.example_gen import write_split
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.util import examples_utils
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from ondevice_rec.data import event_spec, events, file_io, formats, movielens, read_errors, sampling
from ondevice_rec.modules import features, wire

DEFAULT_MAX_BAD_FRACTION = movielens.DEFAULT_MAX_BAD_FRACTION
MAX_BAD_FRACTION_KEY, SPEC_KEY = "max_bad_fraction", "spec"
REPORT_FILE = features.INPUT_REPORT_FILE
CHUNK_BYTES = 32 << 20  # an uncompressed file is read as ranges of this size by different workers
PARQUET_ROWS = 200_000
BAD_SAMPLES = 20
BAD, SKIPPED, TALLY = "bad", "skipped", "tally"
SHARD_PREFIX = "data_tfrecord"  # the file names TFX's own ExampleGen writes
# Events in the statistics sample. A log of up to this many is validated whole (every input of the reliability
# suite's anomaly tests is); above it, a uniform sample this large still meets, with probability 1 - e^-10, a
# defect on 0.01 % of the events. What the curated schema checks (ids present, timestamps >= 0, ratings within
# range) EventExampleGen checks on every row itself. Why sample: docs/results.md, "Statistics on a sample".
STATISTICS_SAMPLE_EVENTS = 100_000


def event_to_example(event: events.Event, info: Optional[events.ItemInfo]) -> tf.train.Example:
    feature = {
        features.EVENT_USER_ID: _strings([event.user]),
        features.EVENT_ITEM_ID: _strings([event.item]),
        features.EVENT_TIMESTAMP: tf.train.Feature(int64_list=tf.train.Int64List(value=[event.timestamp])),
    }
    if event.millis is not None:
        feature[features.EVENT_MILLIS] = tf.train.Feature(int64_list=tf.train.Int64List(value=[event.millis]))
    if event.rating is not None:
        feature[features.EVENT_RATING] = _floats([event.rating])
    if info is not None:
        feature[features.EVENT_TITLE] = _strings([info.title])
        for name, values in info.categorical.items():
            feature[features.CATEGORICAL_PREFIX + name] = _strings(values)
        for name, value in info.numeric.items():
            feature[features.NUMERIC_PREFIX + name] = _floats([value])
    return tf.train.Example(features=tf.train.Features(feature=feature))


class ExampleEncoder:
    """``event_to_example(event, info).SerializeToString()``, faster (what the reader emits).

    The event's own fields are written in the protobuf wire format directly (a Feature holds a BytesList
    (field 1), FloatList (2, packed) or Int64List (3, packed)); its item's features, the same in every event of
    the item, are serialized once per item and appended: concatenated messages parse as their merge, and
    the feature map merges by key. Measured on ML-1M (1M events with title, genres and year): building the
    tf.train.Example protos was 40 % of the read; the test checks that both parse to the same example.
    """

    def __init__(self):
        self._item_parts: Dict[int, bytes] = {}

    def __call__(self, event: events.Event, info: Optional[events.ItemInfo]) -> bytes:
        body = (wire.entry(features.EVENT_USER_ID, wire.BYTES, wire.bytes_payload([event.user.encode()]))
                + wire.entry(features.EVENT_ITEM_ID, wire.BYTES, wire.bytes_payload([event.item.encode()]))
                + wire.entry(features.EVENT_TIMESTAMP, wire.INT64S, wire.int64_payload([event.timestamp])))
        if event.millis is not None:
            body += wire.entry(features.EVENT_MILLIS, wire.INT64S, wire.int64_payload([event.millis]))
        if event.rating is not None:
            body += wire.entry(features.EVENT_RATING, wire.FLOATS, wire.float_payload([event.rating]))
        head = wire.example(body)
        if info is None:
            return head
        part = self._item_parts.get(id(info))
        if part is None:
            item_only = event_to_example(events.Event("", "", 0, None), info)
            for name in (features.EVENT_USER_ID, features.EVENT_ITEM_ID, features.EVENT_TIMESTAMP):
                del item_only.features.feature[name]
            part = self._item_parts[id(info)] = item_only.SerializeToString()
        return head + part


def _strings(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode("utf-8") for v in values]))


def _floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


@dataclasses.dataclass(frozen=True)
class ReadUnit:
    """A piece of one input file a worker reads: a byte range (text) or a row range (Parquet); ``size`` its
    share of the file's bytes on disk (what its share of the statistics sample follows)."""

    file_index: int
    path: str
    start: int
    end: Optional[int]
    header: Optional[Tuple[str, ...]]
    size: float = 0.0


def read_units(spec: event_spec.EventSpec, folder: str):
    """The pieces of every events file of ``folder`` (layout checked per file on the driver; each format cuts
    its files: byte ranges of text, a gzipped file whole, row ranges of Parquet)."""
    units = []
    for file_index, path in enumerate(spec.files(folder)):
        layout = events.event_layout(spec, path)
        ranges = spec.format_of(path).ranges(path, CHUNK_BYTES, PARQUET_ROWS)
        file_bytes = file_io.file_size(path)
        spans = [(file_bytes if end is None else end) - start for start, end in ranges]
        total = max(1, sum(spans))
        units += [ReadUnit(file_index, path, start, end, layout.header, file_bytes * span / total)
                  for (start, end), span in zip(ranges, spans)]
    return units


def sample_sizes(units, sample_events: Optional[int] = None):
    """Each unit's share of the statistics sample (``STATISTICS_SAMPLE_EVENTS``), by its share of the input's
    bytes (rounded up)."""
    sample_events = STATISTICS_SAMPLE_EVENTS if sample_events is None else sample_events
    total = sum(u.size for u in units) or 1.0
    return [math.ceil(sample_events * u.size / total) for u in units]


class _ReadEvents(beam.DoFn):
    """A ReadUnit -> serialized event tf.Examples joined with the item table; bad rows go to ``BAD`` as (file,
    offset, message), rows the spec filters out to ``SKIPPED`` as the reason, and one ``(events, events of
    unlisted items)`` tally per unit to ``TALLY`` (counting in the reader, not in a stage over every event:
    in-memory Beam pays per element and stage)."""

    def __init__(self, spec_json: str, items: Dict[str, events.ItemInfo], has_items: bool):
        self._spec_json, self._items, self._has_items = spec_json, items, has_items
        self._spec = None

    def setup(self):
        self._spec = event_spec.EventSpec.from_json(self._spec_json)
        self._encode = ExampleEncoder()

    def process(self, unit: ReadUnit):
        yield from self._read(unit)

    def _read(self, unit: ReadUnit):
        spec, encode, items = self._spec, self._encode, self._items
        layout = formats.Layout(unit.header)
        count = unlisted = 0
        for offset, row in spec.rows(unit.path, layout, unit.start, unit.end):
            try:
                if isinstance(row, read_errors.RowError):
                    raise row
                event = events.parse_event(spec, row, events.order_of(unit.file_index, offset))
            except read_errors.Skipped as e:
                yield beam.pvalue.TaggedOutput(SKIPPED, e.reason)
                continue
            except read_errors.RowError as e:
                column = f"column {e.column!r}: " if e.column is not None else ""
                yield beam.pvalue.TaggedOutput(BAD, (unit.path, offset, column + str(e)))
                continue
            info = items.get(event.item)
            count += 1
            unlisted += info is None
            yield encode(event, info)
        yield beam.pvalue.TaggedOutput(TALLY, (count, unlisted if self._has_items else 0))


class _WriteEvents(_ReadEvents):
    """``_ReadEvents`` that writes each unit's examples itself, in input order, to one gzipped TFRecord shard
    of ``output_dir`` (TensorFlow's C++ writer), and its share of the statistics sample to a shard of
    ``sample_dir``, emitting only the bad rows, skips and tallies.

    Instead of TFX's WriteSplit (Reshuffle, then Beam's per-record Python writer): every event crossed a
    shuffle and two stages as a Beam element (docs/results.md, "The data stages on batches"). A retried unit
    rewrites its shards under the same names: written in a temporary folder beside each output folder (which
    readers never glob), then renamed into it."""

    def __init__(self, spec_json: str, items: Dict[str, events.ItemInfo], has_items: bool, output_dir: str,
                 shards: int, sample_dir: str):
        super().__init__(spec_json, items, has_items)
        self._output_dir, self._shards, self._sample_dir = output_dir, shards, sample_dir

    def process(self, indexed_unit):
        shard, unit, sample_size = indexed_unit
        name = f"{SHARD_PREFIX}-{shard:05d}-of-{self._shards:05d}.gz"
        reservoir = sampling.Reservoir(sample_size, seed=shard)
        with _shard_writer(self._output_dir, name) as writer:
            for out in self._read(unit):
                if isinstance(out, bytes):
                    writer.write(out)
                    reservoir.add(out)
                else:
                    yield out
        with _shard_writer(self._sample_dir, name) as writer:
            for record in reservoir.items:
                writer.write(record)


@contextlib.contextmanager
def _shard_writer(output_dir: str, name: str):
    """A gzipped TFRecord writer of ``output_dir/name``, written beside it and renamed into it when done."""
    path = os.path.join(output_dir, name)
    temporary = os.path.join(writing_dir(output_dir), f"{name}.{uuid.uuid4().hex}")
    tf.io.gfile.makedirs(os.path.dirname(temporary))
    try:
        with tf.io.TFRecordWriter(temporary, options="GZIP") as writer:
            yield writer
    except BaseException:
        if tf.io.gfile.exists(temporary):
            tf.io.gfile.remove(temporary)
        raise
    tf.io.gfile.rename(temporary, path, overwrite=True)


def matched_folders(input_base: str, split_pattern: str):
    files = fileio.glob(os.path.join(input_base, split_pattern))
    if not files:
        raise FileNotFoundError(f"no files match {os.path.join(input_base, split_pattern)}")
    return sorted({os.path.dirname(f) for f in files})


def folder_spec(spec_json: str, folder: str) -> event_spec.EventSpec:
    return event_spec.EventSpec.from_json(spec_json) if spec_json else movielens.preset_spec(folder)


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def EventsToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],  # pylint: disable=invalid-name
                    split_pattern: str, report_path: Optional[str] = None) -> beam.pvalue.PCollection:
    """Serialized event tf.Examples of every matched folder, as a PCollection; with ``report_path``, also writes
    counts and bad-line samples."""
    return _read_events(pipeline, exec_properties, split_pattern, report_path)


def writing_dir(output_dir: str) -> str:
    """Where ``_WriteEvents`` writes shards before renaming them into ``output_dir`` (removed after the run)."""
    return os.path.join(os.path.dirname(output_dir.rstrip("/")), ".writing-" + os.path.basename(output_dir.rstrip("/")))


def write_events(pipeline: beam.Pipeline, exec_properties: Dict[str, Any], split_pattern: str, output_dir: str,
                 report_path: str, sample_dir: str) -> None:
    """Writes the serialized event tf.Examples of every matched folder as gzipped TFRecord shards of
    ``output_dir``, one per read unit, a uniform sample of them (``STATISTICS_SAMPLE_EVENTS``) as shards of
    ``sample_dir``, and the counts and bad-line samples to ``report_path``."""
    _read_events(pipeline, exec_properties, split_pattern, report_path, output_dir, sample_dir)


def _read_events(pipeline, exec_properties, split_pattern, report_path, output_dir=None, sample_dir=None):
    settings = custom_settings(exec_properties)
    good, bad, skipped, tallies, headers, file_formats = [], [], [], [], {}, {}
    item_rows = {"item_rows_skipped": 0, "duplicate_item_keys": 0, "item_samples": []}
    plans = []
    for folder in matched_folders(exec_properties["input_base"], split_pattern):
        spec = folder_spec(settings.get(SPEC_KEY, ""), folder)
        # The command line checked each .gz to its end before the run; a damaged one still fails its reader here,
        # with the same message (file_io.read_lines), so this check does not decompress the whole log once more.
        events.preflight(spec, folder, whole_gzip=False)
        items = {}
        if spec.items is not None:
            items, problems, duplicate_keys, duplicates = events.read_items(spec.items, folder)
            item_rows["item_rows_skipped"] += len(problems)
            item_rows["duplicate_item_keys"] += duplicate_keys
            item_rows["item_samples"] += (problems + duplicates)[:BAD_SAMPLES]
            for problem in problems[:BAD_SAMPLES]:
                logging.warning("items file: skipped %s", problem)
            for duplicate in duplicates[:BAD_SAMPLES]:
                logging.warning("items file: %s", duplicate)
        units = read_units(spec, folder)
        headers.update({u.path: list(u.header) for u in units if u.header and u.start == 0})
        file_formats.update({u.path: spec.format_of(u.path).name for u in units})
        plans.append((spec, items, units))
    shards = sum(len(units) for _, _, units in plans)
    sizes = iter(sample_sizes([u for _, _, units in plans for u in units]))
    first_shard = 0
    for i, (spec, items, units) in enumerate(plans):
        if output_dir is None:
            reader, elements = _ReadEvents(spec.to_json(), items, spec.items is not None), units
        else:
            reader = _WriteEvents(spec.to_json(), items, spec.items is not None, output_dir, shards, sample_dir)
            elements = [(shard, unit, next(sizes)) for shard, unit in enumerate(units, first_shard)]
        first_shard += len(units)
        parsed = (pipeline
                  | f"Units[{i}]" >> beam.Create(elements)
                  | f"Spread[{i}]" >> beam.Reshuffle()
                  | f"Read[{i}]" >> beam.ParDo(reader).with_outputs(BAD, SKIPPED, TALLY, main="examples"))
        good.append(parsed.examples)
        bad.append(parsed[BAD])
        skipped.append(parsed[SKIPPED])
        tallies.append(parsed[TALLY])
    examples = good | "Flatten" >> beam.Flatten()
    if report_path:
        bad_lines = bad | "FlattenBad" >> beam.Flatten()
        tally = tallies | "FlattenTally" >> beam.Flatten()
        counts = {
            "events": tally | "Events" >> beam.Map(lambda t: t[0]) | "CountEvents" >> beam.CombineGlobally(sum),
            "unlisted": tally | "Unlisted" >> beam.Map(lambda t: t[1]) | "CountUnlisted" >> beam.CombineGlobally(sum),
            "bad": bad_lines | "CountBad" >> beam.combiners.Count.Globally(),
            "samples": bad_lines | "FirstBad" >> beam.combiners.Top.Smallest(BAD_SAMPLES),
            "skipped": (skipped | "FlattenSkipped" >> beam.Flatten()
                        | "CountSkipped" >> beam.combiners.Count.PerElement()
                        | "SkippedDict" >> beam.combiners.ToDict()),
        }
        _ = (pipeline
             | "Report" >> beam.Create([None])
             | "WriteReport" >> beam.Map(_write_report, report_path, headers, file_formats, item_rows,
                                         **{k: beam.pvalue.AsSingleton(v) for k, v in counts.items()}))
    return examples


def _write_report(_, path: str, headers, file_formats, item_rows, events: int, unlisted: int, bad: int, samples,
                  skipped) -> None:
    report = {"input_lines": events + bad + sum(skipped.values()), "events": events, "bad_lines": bad,
              "filtered_events": sum(skipped.values()), "filtered_by": dict(skipped),
              "events_of_unlisted_items": unlisted, "headers": headers, "formats": file_formats, **item_rows,
              "bad_line_samples": [{"file": f, "offset": o, "error": e} for f, o, e in samples]}
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(report, f, indent=1)


def locate_samples(report: dict) -> None:
    """Adds ``line`` (a line or row number, as the file's format counts) to each bad-line sample and
    ``file:line: `` to its error (one pass per file)."""
    by_file = collections.defaultdict(list)
    for sample in report["bad_line_samples"]:
        by_file[sample["file"]].append(sample["offset"])
    file_formats = report.get("formats", {})
    numbers = {path: (formats.get(file_formats[path]) if path in file_formats else formats.for_path(path)
                      ).positions(path, offsets) for path, offsets in by_file.items()}
    for sample in report["bad_line_samples"]:
        sample["line"] = numbers[sample["file"]][sample["offset"]]
        sample["error"] = f"{sample['file']}:{sample['line']}: {sample['error']}"


def check_report(report: dict, max_bad_fraction: float, has_items: bool) -> None:
    """Raises DataFormatError when there is nothing to train on, too many lines are malformed, or the items
    file describes none of the events' items."""
    samples = report["bad_line_samples"]
    where = report.get("input", "input")
    if report["events"] == 0:
        detail = f"; first error: {samples[0]['error']}" if samples else ""
        filtered = f"; {report['filtered_events']} filtered out by the spec ({report['filtered_by']})" \
            if report.get("filtered_events") else ""
        raise read_errors.DataFormatError(where, None, f"no valid events{detail}{filtered}")
    fraction = report["bad_lines"] / max(1, report["input_lines"])
    if fraction > max_bad_fraction:
        first = "\n  ".join(s["error"] for s in samples[:5])
        raise read_errors.DataFormatError(
            where, None,
            f"{report['bad_lines']} of {report['input_lines']} lines ({fraction:.2%}) are malformed, more "
            f"than --max-bad-fraction {max_bad_fraction:g} allows; the first:\n  {first}")
    if has_items and report["events_of_unlisted_items"] == report["events"]:
        raise read_errors.DataFormatError(where, None, "the items file lists none of the events' items (wrong key "
                                                  "column, or another catalogue?)")


def custom_settings(exec_properties: Dict[str, Any]) -> Dict[str, Any]:
    """The component's ``custom_config`` (a Struct packed in example_gen_pb2.CustomConfig) as a dict."""
    raw = exec_properties.get("custom_config")
    if not raw:
        return {}
    config = example_gen_pb2.CustomConfig()
    proto_utils.json_to_proto(raw, config) if isinstance(raw, str) else config.CopyFrom(raw)
    if not config.HasField("custom_config"):
        return {}
    settings = struct_pb2.Struct()
    config.custom_config.Unpack(settings)
    return json_format.MessageToDict(settings)


class Executor(BaseExampleGenExecutor):
    """Reads activity logs into event tf.Examples.

    Malformed lines are skipped and counted; more than ``max_bad_fraction`` of them fails the component
    with the first errors (file, line, column). Counts (``features.INPUT_REPORT_COUNTS``) are recorded on the
    examples artifact and in ``input_report.json`` next to its splits, with samples of the skipped lines and item
    rows.
    """

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return EventsToExample  # what TFX's own Do would write; this executor's Do writes the shards itself

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        """TFX's ExampleGen ``Do`` (split names, payload and file format on the artifact) with the events written
        by their readers (``write_events``) instead of TFX's WriteSplit."""
        self._log_startup(input_dict, output_dict, exec_properties)
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        if len(input_config.splits) != 1:
            raise ValueError(f"EventExampleGen reads one input split, got {len(input_config.splits)}")
        split = input_config.splits[0]
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        examples.split_names = artifact_utils.encode_split_names([split.name, features.SAMPLE_SPLIT])
        self._report_path = os.path.join(examples.uri, REPORT_FILE)
        split_dir = artifact_utils.get_split_uri([examples], split.name)
        sample_dir = artifact_utils.get_split_uri([examples], features.SAMPLE_SPLIT)
        for folder in (split_dir, sample_dir):
            tf.io.gfile.makedirs(folder)
        with self._make_beam_pipeline() as pipeline:
            write_events(pipeline, exec_properties, split.pattern, split_dir, self._report_path, sample_dir)
        for folder in (split_dir, sample_dir):
            if tf.io.gfile.exists(writing_dir(folder)):
                tf.io.gfile.rmtree(writing_dir(folder))
        examples_utils.set_payload_format(examples, exec_properties.get(
            standard_component_specs.OUTPUT_DATA_FORMAT_KEY) or example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(examples, write_split.to_file_format_str(exec_properties.get(
            standard_component_specs.OUTPUT_FILE_FORMAT_KEY, example_gen_pb2.FILE_FORMAT_UNSPECIFIED)))
        with tf.io.gfile.GFile(self._report_path) as f:
            report = json.load(f)
        report["input"] = os.path.join(exec_properties["input_base"], "")
        locate_samples(report)
        with tf.io.gfile.GFile(self._report_path, "w") as f:
            json.dump(report, f, indent=1)
        for key in features.INPUT_REPORT_COUNTS:
            examples.set_int_custom_property(key, int(report.get(key, 0)))
        for sample in report["bad_line_samples"]:
            logging.warning("skipped: %s", sample["error"])
        settings = custom_settings(exec_properties)
        spec_json = settings.get(SPEC_KEY, "")
        has_items = bool(event_spec.EventSpec.from_json(spec_json).items) if spec_json else True
        check_report(report, float(settings.get(MAX_BAD_FRACTION_KEY, DEFAULT_MAX_BAD_FRACTION)), has_items)
