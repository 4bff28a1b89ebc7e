"""``run`` (one pipeline run on a data folder) and ``retrain`` (one scheduled cycle on the latest span)."""

from __future__ import annotations

from ondevice_rec.cli.common import EXIT_FAILED, EXIT_OK, add_command

RUN_EXAMPLES = """  ondevice-rec run --data-dir ../shared/data/ml-100k --output-dir /tmp/out
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
    source.add_argument("--dataset", dest="download", choices=sorted(download.ARCHIVES),
                        help="download this MovieLens archive from GroupLens (checksum-verified, cached)")
    run.add_argument("--output-dir", required=True, help="pipeline_root, metadata.sqlite and serving/ go here")
    add_flags(run)
    run.add_argument("--no-cache", action="store_true", help="re-run every component")
    run.add_argument("--verbose", action="store_true", help="show TensorFlow / Beam logs instead of a log file")

    retrain = add_command(commands, "retrain", "one scheduled-retraining cycle: latest data span, warm start, "
                                               "publish only if not worse", RETRAIN_EXAMPLES, cmd_retrain)
    retrain.add_argument("--data-dir", required=True,
                         help="a folder of data spans span-1/, span-2/, ... (each a complete MovieLens folder); "
                              "the latest span is read")
    retrain.add_argument("--output-dir", required=True, help="the same output folder on every cycle")
    add_flags(retrain)
    retrain.add_argument("--no-warm-start", action="store_true",
                         help="train from scratch instead of from the latest blessed model")
    retrain.add_argument("--verbose", action="store_true", help="show TensorFlow / Beam logs instead of a log file")


def _finish(summary) -> int:
    return EXIT_FAILED if summary is None or summary.failed else EXIT_OK


def cmd_run(args) -> int:
    from ondevice_rec.data import download, movielens
    from ondevice_rec.pipeline import console
    from ondevice_rec.pipeline.options import config_from_args

    data_dir = args.data_dir
    if args.download:
        print(f"Fetching {args.download} ...", flush=True)
        data_dir = download.download(args.download, progress=download.print_progress)
    fmt = movielens.detect_format(data_dir)  # fail fast, before TFX starts, on a wrong folder
    config = config_from_args(args, data_dir, args.output_dir, enable_cache=not args.no_cache)
    summary, _ = console.run_pipeline(config, args.command, args.verbose,
                                      f"ondevice-rec: {fmt.name} data in {config.data_dir}; encoder "
                                      f"{config.model.encoder}, N={config.model.history_length}")
    return _finish(summary)


def cmd_retrain(args) -> int:
    from ondevice_rec.data import movielens
    from ondevice_rec.pipeline import console
    from ondevice_rec.pipeline.config import SPAN_PATTERN, latest_span
    from ondevice_rec.pipeline.options import config_from_args

    span, span_dir = latest_span(args.data_dir)  # fail fast: no span folders, or a wrong layout
    fmt = movielens.detect_format(span_dir)
    config = config_from_args(args, args.data_dir, args.output_dir, input_pattern=SPAN_PATTERN,
                              warm_start=not args.no_warm_start)
    summary, _ = console.run_pipeline(config, args.command, args.verbose,
                                      f"ondevice-rec retrain: span {span} ({fmt.name}) of {config.data_dir}; "
                                      f"warm start {'on' if config.warm_start else 'off'}")
    return _finish(summary)
