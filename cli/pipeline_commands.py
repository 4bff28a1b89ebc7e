"""``run`` (one pipeline run on a data folder) and ``retrain`` (one scheduled cycle on the latest span)."""

from __future__ import annotations

from ondevice_rec.cli.common import EXIT_FAILED, EXIT_OK, add_command
from ondevice_rec.cli.data_source import add_data_source

RUN_EXAMPLES = """  ondevice-rec run --data-dir ../shared/data/ml-100k --output-dir /tmp/out
  ondevice-rec run --events shop/events.json --output-dir /tmp/shop        # any activity log (docs/event-spec.md)
  ondevice-rec run --events log.csv --event-field user=customer --event-field item=sku --output-dir /tmp/o
  ondevice-rec run --dataset ml-1m --output-dir out --history-length 20 --epochs 20
  ondevice-rec run --data-dir data --output-dir out --beam-arg=--direct_num_workers=2"""
RETRAIN_EXAMPLES = """  ondevice-rec retrain --data-dir /data/movielens-spans --output-dir /srv/ondevice-rec
  # cron, 03:00 daily:  0 3 * * * cd /srv && .venv/bin/ondevice-rec retrain --data-dir /data/spans --output-dir out"""


def register(commands) -> None:
    from ondevice_rec.pipeline.options import add_flags
    run = add_command(commands, "run", "run the whole pipeline once", RUN_EXAMPLES, cmd_run)
    add_data_source(run, "a data folder: a MovieLens layout (ml-1m, ml-100k or ml-latest), a log folder holding "
                         "its event spec events.json, or the folder an --events spec's paths are relative to",
                    dataset=True)
    run.add_argument("--output-dir", required=True, help="pipeline_root, metadata.sqlite and serving/ go here")
    add_flags(run)
    run.add_argument("--no-cache", action="store_true", help="re-run every component")
    run.add_argument("--verbose", action="store_true", help="show TensorFlow / Beam logs instead of a log file")

    retrain = add_command(commands, "retrain", "one scheduled-retraining cycle: latest data span, warm start, "
                                               "publish only if not worse", RETRAIN_EXAMPLES, cmd_retrain)
    add_data_source(retrain, "a folder of data spans span-1/, span-2/, ... (each a data folder as for run: "
                             "MovieLens, or a log whose --events spec paths are relative to each span); the "
                             "latest span is read", data_dir_required=True)
    retrain.add_argument("--output-dir", required=True, help="the same output folder on every cycle")
    add_flags(retrain)
    retrain.add_argument("--no-warm-start", action="store_true",
                         help="train from scratch instead of from the latest blessed model")
    retrain.add_argument("--verbose", action="store_true", help="show TensorFlow / Beam logs instead of a log file")


def _finish(summary) -> int:
    return EXIT_FAILED if summary is None or summary.failed else EXIT_OK


def cmd_run(args) -> int:
    from ondevice_rec.cli import data_source
    from ondevice_rec.data import download, events, movielens
    from ondevice_rec.pipeline import console
    from ondevice_rec.pipeline.options import config_from_args

    if args.download and args.data_dir:
        raise ValueError(f"{data_source.DATASET} downloads a data folder: give it or {data_source.DATA_DIR}, not both")
    folder = None
    if args.download:
        print(f"Fetching {args.download} ...", flush=True)
        folder = download.download(args.download, progress=download.print_progress)
    source = data_source.resolve(args, folder)
    # Fail fast, before TFX starts: a wrong folder, delimiter, header, column or timestamp format.
    checked_spec = source.spec or movielens.preset_spec(source.data_dir)
    checked = events.preflight(checked_spec, source.data_dir)
    config = config_from_args(args, source.data_dir, args.output_dir, enable_cache=not args.no_cache,
                              events=source.spec)
    header = f"header {list(checked.header)}" if checked.header else "no header"
    summary, _ = console.run_pipeline(config, args.command, args.verbose,
                                      f"ondevice-rec: {checked_spec.name or 'events'} in {config.data_dir} "
                                      f"({len(checked.files)} file(s), {header}); encoder "
                                      f"{config.model.encoder}, N={config.model.history_length}")
    return _finish(summary)


def cmd_retrain(args) -> int:
    from ondevice_rec.cli import data_source
    from ondevice_rec.data import events, movielens
    from ondevice_rec.pipeline import console
    from ondevice_rec.pipeline.config import SPAN_PATTERN, latest_span
    from ondevice_rec.pipeline.options import config_from_args

    span, span_dir = latest_span(args.data_dir)  # fail fast: no span folders, or a wrong layout
    spec = data_source.resolve(args, span_dir).spec  # relative to each span: checked on the latest
    checked_spec = spec or movielens.preset_spec(span_dir)
    events.preflight(checked_spec, span_dir)
    config = config_from_args(args, args.data_dir, args.output_dir, input_pattern=SPAN_PATTERN,
                              warm_start=not args.no_warm_start, events=spec)
    summary, _ = console.run_pipeline(config, args.command, args.verbose,
                                      f"ondevice-rec retrain: span {span} ({checked_spec.name or 'events'}) of "
                                      f"{config.data_dir}; warm start {'on' if config.warm_start else 'off'}")
    return _finish(summary)
