"""``run`` (one pipeline run on a data folder) and ``retrain`` (one scheduled cycle on the latest span)."""

from __future__ import annotations

from ondevice_rec.cli.common import EXIT_FAILED, EXIT_OK, add_command

RUN_EXAMPLES = """  ondevice-rec run --data-dir ../shared/data/ml-100k --output-dir /tmp/out
  ondevice-rec run --events shop/events.json --output-dir /tmp/shop        # any activity log (docs/event-spec.md)
  ondevice-rec run --events log.csv --event-field user=customer --event-field item=sku --output-dir /tmp/o
  ondevice-rec run --dataset ml-1m --output-dir out --history-length 20 --epochs 20
  ondevice-rec run --data-dir data --output-dir out --beam-arg=--direct_num_workers=2"""
RETRAIN_EXAMPLES = """  ondevice-rec retrain --data-dir /data/movielens-spans --output-dir /srv/ondevice-rec
  # cron, 03:00 daily:  0 3 * * * cd /srv && .venv/bin/ondevice-rec retrain --data-dir /data/spans --output-dir out"""


def register(commands) -> None:
    from ondevice_rec.data import download
    from ondevice_rec.pipeline.options import add_flags
    run = add_command(commands, "run", "run the whole pipeline once", RUN_EXAMPLES, cmd_run)
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", help="an unpacked MovieLens folder (ml-1m, ml-100k or ml-latest layout)")
    source.add_argument("--events", help="an event spec (JSON / YAML: what the log's files and columns are) or "
                                         "an events file itself, described by --event-field")
    source.add_argument("--dataset", dest="download", choices=sorted(download.ARCHIVES),
                        help="download this MovieLens archive from GroupLens (checksum-verified, cached)")
    run.add_argument("--output-dir", required=True, help="pipeline_root, metadata.sqlite and serving/ go here")
    _add_event_fields(run)
    add_flags(run)
    run.add_argument("--no-cache", action="store_true", help="re-run every component")
    run.add_argument("--verbose", action="store_true", help="show TensorFlow / Beam logs instead of a log file")

    retrain = add_command(commands, "retrain", "one scheduled-retraining cycle: latest data span, warm start, "
                                               "publish only if not worse", RETRAIN_EXAMPLES, cmd_retrain)
    retrain.add_argument("--data-dir", required=True,
                         help="a folder of data spans span-1/, span-2/, ... (each a complete MovieLens folder); "
                              "the latest span is read")
    retrain.add_argument("--events", default=None,
                         help="an event spec whose paths are relative to each span folder (default: MovieLens)")
    retrain.add_argument("--output-dir", required=True, help="the same output folder on every cycle")
    _add_event_fields(retrain)
    add_flags(retrain)
    retrain.add_argument("--no-warm-start", action="store_true",
                         help="train from scratch instead of from the latest blessed model")
    retrain.add_argument("--verbose", action="store_true", help="show TensorFlow / Beam logs instead of a log file")


def _add_event_fields(parser) -> None:
    parser.add_argument("--event-field", action="append", default=[], metavar="KEY=VALUE",
                        help="set or override one event spec field (user=, item=, timestamp=, timestamp_format=, "
                             "rating=, event_type=, keep_events=, header=, delimiter=, format=, items.path=, ...); "
                             "repeatable")


def event_spec(path: str, fields, base_dir: str = ""):
    """``(spec, data folder)`` from ``--events`` and ``--event-field``: a spec file (its folder holds the
    data), or an events file described by the fields alone."""
    import os
    from ondevice_rec.data import events
    if path.endswith((".json", ".yaml", ".yml")) and not path.endswith(".jsonl"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no event spec {path!r}")
        return events.load_spec(path, fields), base_dir or os.path.dirname(os.path.abspath(path))
    if not events.glob_files(path):
        raise FileNotFoundError(f"--events {path!r}: no such spec or events file")
    folder = base_dir or os.path.dirname(os.path.abspath(path))
    relative = os.path.relpath(os.path.abspath(path), folder)
    return events.spec_with_overrides({"events": relative}, fields), folder


def _finish(summary) -> int:
    return EXIT_FAILED if summary is None or summary.failed else EXIT_OK


def cmd_run(args) -> int:
    from ondevice_rec.data import download, events, movielens
    from ondevice_rec.pipeline import console
    from ondevice_rec.pipeline.options import config_from_args

    data_dir, spec = args.data_dir, None
    if args.download:
        print(f"Fetching {args.download} ...", flush=True)
        data_dir = download.download(args.download, progress=download.print_progress)
    if args.events:
        spec, data_dir = event_spec(args.events, args.event_field)
    elif args.event_field:
        spec = movielens.preset_spec(data_dir)
        spec = events.spec_with_overrides(spec.to_dict(), args.event_field)
    # Fail fast, before TFX starts: a wrong folder, delimiter, header, column or timestamp format.
    checked_spec = spec or movielens.preset_spec(data_dir)
    checked = events.preflight(checked_spec, data_dir)
    config = config_from_args(args, data_dir, args.output_dir, enable_cache=not args.no_cache, events=spec)
    header = f"header {list(checked.header)}" if checked.header else "no header"
    summary, _ = console.run_pipeline(config, args.command, args.verbose,
                                      f"ondevice-rec: {checked_spec.name or 'events'} in {config.data_dir} "
                                      f"({len(checked.files)} file(s), {header}); encoder "
                                      f"{config.model.encoder}, N={config.model.history_length}")
    return _finish(summary)


def cmd_retrain(args) -> int:
    from ondevice_rec.data import events, movielens
    from ondevice_rec.pipeline import console
    from ondevice_rec.pipeline.config import SPAN_PATTERN, latest_span
    from ondevice_rec.pipeline.options import config_from_args

    span, span_dir = latest_span(args.data_dir)  # fail fast: no span folders, or a wrong layout
    spec = event_spec(args.events, args.event_field, span_dir)[0] if args.events else None
    checked_spec = spec or movielens.preset_spec(span_dir)
    events.preflight(checked_spec, span_dir)
    config = config_from_args(args, args.data_dir, args.output_dir, input_pattern=SPAN_PATTERN,
                              warm_start=not args.no_warm_start, events=spec)
    summary, _ = console.run_pipeline(config, args.command, args.verbose,
                                      f"ondevice-rec retrain: span {span} ({checked_spec.name or 'events'}) of "
                                      f"{config.data_dir}; warm start {'on' if config.warm_start else 'off'}")
    return _finish(summary)
