"""Where a command's events come from: the options every command that reads a log shares (``run``, ``retrain``,
``kubeflow compile``, ``benchmark quality`` and ``benchmark beam-runners``), declared once here.

* ``--data-dir DIR``: a data folder: a MovieLens layout, a log folder holding its event spec ``events.json``
  (as ``make-synthetic`` writes), or the folder an ``--events`` spec's paths are relative to. ``retrain`` and
  ``kubeflow compile --spans``: a folder of ``span-N/`` folders, each such a folder.
* ``--events SPEC_OR_FILE``: an event spec (JSON / YAML) or an events file itself; without ``--data-dir`` the
  file's folder holds the data.
* ``--event-field KEY=VALUE``: sets or overrides one field of the spec (the MovieLens preset's without
  ``--events``); repeatable.
* ``--dataset NAME`` (``run``): a MovieLens archive downloaded from GroupLens.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

DATA_DIR, EVENTS, EVENT_FIELD, DATASET = "--data-dir", "--events", "--event-field", "--dataset"
SPEC_EXTENSIONS = (".json", ".yaml", ".yml")  # an --events path ending so is a spec (``.jsonl`` is events)


def add_data_source(parser, data_dir_help: str, *, data_dir_required: bool = False, repeat: bool = False,
                    dataset: bool = False) -> None:
    """The data-source options; ``repeat``: ``--data-dir`` may be given more than once (a list)."""
    parser.add_argument(DATA_DIR, dest="data_dir", metavar="DIR", required=data_dir_required,
                        action="append" if repeat else "store", default=[] if repeat else None,
                        help=data_dir_help)
    parser.add_argument(EVENTS, dest="events", metavar="SPEC_OR_FILE", default=None,
                        help="an event spec (JSON / YAML: what the log's files and columns are; its paths relative "
                             f"to {DATA_DIR} when given, else to its own folder) or an events file itself, "
                             f"described by {EVENT_FIELD} (docs/event-spec.md)")
    parser.add_argument(EVENT_FIELD, dest="event_field", action="append", default=[], metavar="KEY=VALUE",
                        help="set or override one event spec field (user=, item=, timestamp=, timestamp_format=, "
                             "rating=, event_type=, keep_events=, header=, delimiter=, format=, items.path=, ...); "
                             f"without {EVENTS}, of the MovieLens preset of the data folder; repeatable")
    if dataset:
        from ondevice_rec.data import download
        parser.add_argument(DATASET, dest="download", choices=sorted(download.ARCHIVES), default=None,
                            help="download this MovieLens archive from GroupLens (checksum-verified, cached)")


@dataclasses.dataclass(frozen=True)
class DataSource:
    data_dir: str  # the folder the spec's paths are relative to
    spec: Optional[object] = None  # data.event_spec.EventSpec; None: the data folder's MovieLens preset


def spec_of(events: str, fields, base_dir: str = "", local: bool = True):
    """``(spec, data folder)`` of ``--events`` with ``--event-field``s: a spec file (read here), or an events file
    described by the fields alone. ``local=False``: the data lives elsewhere (in containers); only a spec file is
    read here."""
    from ondevice_rec.data import event_spec, file_io
    if events.endswith(SPEC_EXTENSIONS):
        if not os.path.isfile(events):
            raise FileNotFoundError(f"no event spec {events!r}")
        return event_spec.load_spec(events, fields), base_dir or os.path.dirname(os.path.abspath(events))
    if not local:
        if not base_dir:
            raise ValueError(f"{EVENTS} {events!r}: an events file the containers read needs {DATA_DIR}")
        return event_spec.spec_with_overrides({"events": events}, fields), base_dir
    if not file_io.glob_files(events):
        raise FileNotFoundError(f"{EVENTS} {events!r}: no such spec or events file")
    folder = base_dir or os.path.dirname(os.path.abspath(events))
    relative = os.path.relpath(os.path.abspath(events), folder)
    return event_spec.spec_with_overrides({"events": relative}, fields), folder


def resolve(args, data_dir: Optional[str] = None, local: bool = True) -> DataSource:
    """The folder and spec the options name. ``data_dir``: the folder the spec is relative to when it is not
    ``--data-dir`` itself (a span folder; a download). Refuses a missing source (exit 2 from the CLI)."""
    folder = data_dir if data_dir is not None else args.data_dir
    if args.events:
        spec, folder = spec_of(args.events, args.event_field, folder or "", local)
        return DataSource(folder, spec)
    if not folder:
        raise ValueError(f"give {DATA_DIR} or {EVENTS}" + (f" or {DATASET}" if hasattr(args, "download") else ""))
    from ondevice_rec.data import event_spec
    spec = event_spec.folder_spec(folder) if local else None
    if args.event_field and not local:
        raise ValueError(f"{EVENT_FIELD} refines a spec: give {EVENTS} too (the data folder {folder!r} is the "
                         "containers', not read here)")
    if args.event_field:
        from ondevice_rec.data import movielens
        base = spec or movielens.preset_spec(folder)
        spec = event_spec.spec_with_overrides(base.to_dict(), args.event_field)
    return DataSource(folder, spec)
