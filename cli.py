"""``ondevice-rec``: the command line, a thin layer over the library.

Exit codes: 0 success (a run that ends with "not published" also succeeded: the gate did its job),
1 a pipeline component or benchmark failed, 2 bad input or usage (missing data, malformed files, bad flags).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from typing import List, Optional

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")  # as publish.QUANTIZATIONS (kept TF-free)

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ logs; --verbose on `run` shows them

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

EXAMPLES = {
    "run": """examples:
  ondevice-rec run --data-dir ../shared/data/ml-100k --output-dir /tmp/out
  ondevice-rec run --dataset ml-1m --output-dir out --history-length 20 --epochs 20
  ondevice-rec run --data-dir data --output-dir out --beam-arg=--direct_num_workers=2""",
    "recommend": """examples:
  ondevice-rec recommend --model /tmp/out/serving/latest --history 50,172,181 --k 10""",
    "demo": """examples:
  ondevice-rec demo --model /tmp/out/serving/latest            # then open http://127.0.0.1:8000/""",
    "report": """examples:
  ondevice-rec report /tmp/out --quality benchmarks/results/quality.json --latency benchmarks/results/latency.json""",
    "make-synthetic": """examples:
  ondevice-rec make-synthetic --format ml-1m --out /tmp/synthetic --users 500 --items 400""",
    "benchmark": """examples:
  ondevice-rec benchmark windowing --ratings 1000000
  ondevice-rec benchmark quality --data-dir ../shared/data/ml-100k
  ondevice-rec benchmark latency --model out/serving/latest
  ondevice-rec benchmark latency --all      # every encoder x quantisation, 3,952-movie catalogue, N=10
  ondevice-rec benchmark windowing --ratings 1000000 --beam-arg=--direct_running_mode=in_memory
  ondevice-rec benchmark beam-runners --data-dir ../shared/data/ml-100k --workers 2""",
    "retrain": """examples:
  ondevice-rec retrain --data-dir /data/movielens-spans --output-dir /srv/ondevice-rec
  # cron, 03:00 daily:  0 3 * * * cd /srv && .venv/bin/ondevice-rec retrain --data-dir /data/spans --output-dir out""",
    "kubeflow": """examples:
  ondevice-rec kubeflow compile --image gcr.io/my-project/ondevice-rec:1 --pipeline-root gs://my-bucket/root \\
      --data-dir gs://my-bucket/movielens --serving-dir /gcs/my-bucket/serving --output pipeline.yaml \\
      --beam-arg=--runner=DataflowRunner --beam-arg=--project=my-project --beam-arg=--region=us-central1
  ondevice-rec kubeflow schedule --host http://localhost:8080 --pipeline pipeline.yaml \\
      --cron "0 0 3 * * *" --experiment ondevice-rec --dry-run""",
    "download": """examples:
  ondevice-rec download ml-1m            # prints the unpacked folder, pass it as --data-dir""",
}


def _add_pipeline_arguments(parser: argparse.ArgumentParser, defaults, encoders) -> None:
    """Model, windowing and publishing options shared by run, retrain and kubeflow compile."""
    parser.add_argument("--encoder", default=defaults.encoder, choices=list(encoders),
                        help="context encoder (default: %(default)s)")
    parser.add_argument("--history-length", type=int, default=defaults.history_length,
                        help="N, the number of previous movies the model sees (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="default: %(default)s")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="default: %(default)s")
    parser.add_argument("--embedding-dim", type=int, default=defaults.embedding_dim, help="default: %(default)s")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate, help="default: %(default)s")
    parser.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE",
                        help="any model setting of modules/config.py:ModelConfig, e.g. --hparam tie_embeddings=true "
                             "--hparam transformer_blocks=3 (repeatable)")
    parser.add_argument("--top-k", type=int, default=defaults.top_k,
                        help="ids the TFLite model returns (default: %(default)s)")
    parser.add_argument("--split", choices=["leave-last-out", "temporal"], default="leave-last-out",
                        help="leave-last-out: each user's last rating is test, the one before eval; temporal: a global "
                             "time cut (default: %(default)s)")
    parser.add_argument("--min-timeline-length", type=int, default=None,
                        help="users with fewer ratings are skipped (default: 3 leave-last-out, 2 temporal)")
    parser.add_argument("--min-rating", type=float, default=0.0,
                        help="drop ratings below this before windowing (default: keep all)")
    parser.add_argument("--max-examples-per-user", type=int, default=0,
                        help="keep only each user's most recent N train examples (default: all)")
    parser.add_argument("--stride", type=int, default=None,
                        help="use every k-th train position (default: N/2 with loss_positions=all, else 1)")
    parser.add_argument("--max-bad-fraction", type=float, default=0.001,
                        help="malformed ratings lines are skipped and counted up to this share of all lines; above "
                             "it the run fails naming the first (default: %(default)s)")
    parser.add_argument("--min-recall-at-10", type=float, default=0.0,
                        help="blessing needs at least this eval recall@10 (default: %(default)s)")
    parser.add_argument("--keep-versions", type=int, default=5, help="published versions kept (default: %(default)s)")
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default="float32",
                        help="published model: float32, float16 weights, dynamic-range int8 or full int8 "
                             "(checked: recall@10 within 2%% of float) (default: %(default)s)")
    parser.add_argument("--beam-arg", action="append", default=[], metavar="ARG",
                        help="passed to every Beam stage, e.g. --beam-arg=--direct_num_workers=2 (repeatable)")


def _csv(text: str) -> List[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _parser() -> argparse.ArgumentParser:
    from ondevice_rec.data import download, movielens
    from ondevice_rec.modules.config import ENCODERS, ModelConfig
    defaults = ModelConfig()
    parser = argparse.ArgumentParser(
        prog="ondevice-rec", description="Train a next-movie recommender with TFX and publish it as TFLite.",
        epilog="exit codes: 0 success, 1 a component failed, 2 bad input or usage",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the whole pipeline once", epilog=EXAMPLES["run"],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", help="an unpacked MovieLens folder (ml-1m, ml-100k or ml-latest layout)")
    source.add_argument("--dataset", choices=sorted(download.ARCHIVES),
                        help="download this MovieLens archive from GroupLens (checksum-verified, cached)")
    run.add_argument("--output-dir", required=True, help="pipeline_root, metadata.sqlite and serving/ go here")
    _add_pipeline_arguments(run, defaults, ENCODERS)
    run.add_argument("--runner", choices=["beam", "local"], default="beam", help="default: %(default)s")
    run.add_argument("--no-cache", action="store_true", help="re-run every component")
    run.add_argument("--verbose", action="store_true", help="show TensorFlow / Beam logs instead of a log file")

    retrain = commands.add_parser(
        "retrain", help="one scheduled-retraining cycle: latest data span, warm start, publish only if not worse",
        epilog=EXAMPLES["retrain"], formatter_class=argparse.RawDescriptionHelpFormatter)
    retrain.add_argument("--data-dir", required=True,
                         help="a folder of data spans span-1/, span-2/, ... (each a complete MovieLens folder); "
                              "the latest span is read")
    retrain.add_argument("--output-dir", required=True, help="the same output folder on every cycle")
    _add_pipeline_arguments(retrain, defaults, ENCODERS)
    retrain.add_argument("--max-recall-regression", type=float, default=0.0,
                         help="blessing allows eval recall@10 this far below the serving model's (default: 0)")
    retrain.add_argument("--no-warm-start", action="store_true",
                         help="train from scratch instead of from the latest blessed model")
    retrain.add_argument("--verbose", action="store_true", help="show TensorFlow / Beam logs instead of a log file")

    kubeflow = commands.add_parser("kubeflow", help="compile for Kubeflow Pipelines; schedule retraining there",
                                   epilog=EXAMPLES["kubeflow"], formatter_class=argparse.RawDescriptionHelpFormatter)
    kf = kubeflow.add_subparsers(dest="kubeflow_command", required=True)
    kc = kf.add_parser("compile", help="write the KFP v2 pipeline spec (KubeflowV2DagRunner)",
                       epilog=EXAMPLES["kubeflow"], formatter_class=argparse.RawDescriptionHelpFormatter)
    kc.add_argument("--image", required=True,
                    help="the image built from kubeflow/Dockerfile, e.g. gcr.io/p/ondevice-rec:1")
    kc.add_argument("--pipeline-root", required=True, help="artifact root URI, e.g. gs://bucket/ondevice-rec")
    kc.add_argument("--data-dir", required=True,
                    help="data as the containers see it (the run parameter data_root defaults to it); with "
                         "span-N/ subfolders the latest span is read")
    kc.add_argument("--serving-dir", required=True,
                    help="where versions are published, a POSIX path in the containers (volume or /gcs/<bucket>)")
    kc.add_argument("--output", required=True, help="pipeline.yaml (PipelineSpec) or pipeline.json (PipelineJob)")
    kc.add_argument("--spans", action="store_true",
                    help="the data folder holds span-1/, span-2/, ...: every run reads the latest")
    kc.add_argument("--warm-start", action="store_true", help="start training from the latest blessed model")
    kc.add_argument("--no-cache", action="store_true", help="disable KFP caching for every step")
    _add_pipeline_arguments(kc, defaults, ENCODERS)
    ks = kf.add_parser("schedule", help="create a KFP recurring run from a compiled .yaml (kfp SDK)",
                       epilog=EXAMPLES["kubeflow"], formatter_class=argparse.RawDescriptionHelpFormatter)
    ks.add_argument("--host", required=False, default=None, help="KFP API endpoint, e.g. http://localhost:8080")
    ks.add_argument("--pipeline", required=True, help="the compiled .yaml")
    ks.add_argument("--cron", required=True, help="6-field KFP cron, seconds first: '0 0 3 * * *' = 03:00 daily")
    ks.add_argument("--experiment", required=True, help="KFP experiment (created if missing)")
    ks.add_argument("--job-name", default=None, help="default: '<pipeline> (scheduled)'")
    ks.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="a pipeline parameter, e.g. --param data_root=gs://bucket/data (repeatable)")
    ks.add_argument("--pipeline-root", default=None, help="default: the root recorded at compile time")
    ks.add_argument("--dry-run", action="store_true", help="print the request; contact no server")

    rec = commands.add_parser("recommend", help="run a published .tflite model on a history",
                              epilog=EXAMPLES["recommend"], formatter_class=argparse.RawDescriptionHelpFormatter)
    rec.add_argument("--model", required=True, help="a published version folder, e.g. OUT/serving/latest")
    rec.add_argument("--history", required=True, help="movie ids in the order watched, oldest first: 1,2,3")
    rec.add_argument("--k", type=int, default=10, help="how many to print (default: %(default)s)")

    demo = commands.add_parser("demo", help="serve a page that re-ranks on every pick, the model running in the "
                                            "browser",
                               epilog=EXAMPLES["demo"], formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--model", required=True, help="a published version folder, e.g. OUT/serving/latest")
    demo.add_argument("--port", type=int, default=8000, help="default: %(default)s (0: any free port)")
    demo.add_argument("--host", default="127.0.0.1",
                      help="address to bind (default: %(default)s, this machine only)")

    rep = commands.add_parser("report", help="write one self-contained HTML page about the model serving from OUT",
                              epilog=EXAMPLES["report"], formatter_class=argparse.RawDescriptionHelpFormatter)
    rep.add_argument("output_dir", metavar="OUT", help="a pipeline output folder (the --output-dir of run)")
    rep.add_argument("--out", default=None, help="HTML file (default: OUT/report.html)")
    rep.add_argument("--quality", default=None,
                     help="quality benchmark JSON (default: benchmarks/results/quality.json if present)")
    rep.add_argument("--latency", default=None,
                     help="latency benchmark JSON (default: benchmarks/results/latency.json if present)")

    syn = commands.add_parser("make-synthetic", help="write a synthetic dataset in a MovieLens layout",
                              epilog=EXAMPLES["make-synthetic"], formatter_class=argparse.RawDescriptionHelpFormatter)
    syn.add_argument("--format", choices=sorted(movielens.FORMATS), required=True)
    syn.add_argument("--out", required=True)
    syn.add_argument("--users", type=int, default=200)
    syn.add_argument("--items", type=int, default=300)
    syn.add_argument("--mean-ratings-per-user", type=int, default=40)
    syn.add_argument("--seed", type=int, default=0)

    bench = commands.add_parser("benchmark", help="measure speed figures (prints a table, writes JSON)",
                                epilog=EXAMPLES["benchmark"], formatter_class=argparse.RawDescriptionHelpFormatter)
    which = bench.add_subparsers(dest="benchmark", required=True)
    examples = {"epilog": EXAMPLES["benchmark"], "formatter_class": argparse.RawDescriptionHelpFormatter}
    bw = which.add_parser("windowing", help="Beam windowing vs a numpy/pandas reference at ML-1M scale", **examples)
    bw.add_argument("--ratings", type=int, default=1_000_000, help="synthetic ratings (default: %(default)s)")
    bw.add_argument("--history-length", type=int, default=10, help="default: %(default)s")
    bw.add_argument("--work-dir", default="", help="where data and outputs go (default: a new temp folder)")
    bw.add_argument("--out", default="benchmarks/results/windowing.json", help="JSON output (default: %(default)s)")
    bw.add_argument("--beam-arg", action="append", default=[], metavar="ARG",
                    help="Beam pipeline option, e.g. --beam-arg=--direct_num_workers=2 (repeatable)")

    bq = which.add_parser("quality", help="every encoder x history length vs popularity and Markov baselines",
                          **examples)
    bq.add_argument("--data-dir", required=True, help="a MovieLens folder, e.g. ../shared/data/ml-100k")
    bq.add_argument("--encoders", default="bow,cnn,lstm,transformer", help="default: %(default)s")
    bq.add_argument("--history-lengths", default="10,50,100", help="default: %(default)s")
    bq.add_argument("--epochs", type=int, default=20, help="maximum epochs (early stopping) (default: %(default)s)")
    bq.add_argument("--embedding-dim", type=int, default=64, help="default: %(default)s")
    bq.add_argument("--hparam", action="append", default=[], metavar="[ENCODER:]KEY=VALUE",
                    help="model setting for every encoder, or for one with a prefix, e.g. "
                         "--hparam transformer:dropout=0.2 (repeatable)")
    bq.add_argument("--seeds", type=int, default=1,
                    help="train each model this many times (seeds 0, 1, ...) and report the mean and spread "
                         "(default: %(default)s)")
    bq.add_argument("--out-dir", default="benchmarks/results", help="quality.json/.md/.png (default: %(default)s)")

    br = which.add_parser("beam-runners",
                          help="the Beam data stages on DirectRunner vs a local multi-worker portable engine",
                          **examples)
    br.add_argument("--data-dir", required=True, help="a MovieLens folder")
    br.add_argument("--workers", type=int, default=2, help="SDK worker processes per stage (default: %(default)s)")
    br.add_argument("--work-dir", default="", help="where outputs go (default: a new temp folder)")
    br.add_argument("--out", default="benchmarks/results/beam_runners.json", help="JSON output (default: %(default)s)")
    bl = which.add_parser("latency", help="TFLite p50/p90/p99 (1 and 4 threads) vs the SavedModel, and size",
                          **examples)
    target = bl.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", help="a published version folder (e.g. OUT/serving/latest) or a .tflite file")
    target.add_argument("--all", action="store_true",
                        help="build and measure every encoder x quantisation mode at ML-1M catalogue size")
    bl.add_argument("--saved-model", default=None, help="the SavedModel of --model (default: from metadata.json)")
    bl.add_argument("--iterations", type=int, default=2000, help="timed invocations (default: %(default)s)")
    bl.add_argument("--work-dir", default="", help="--all: where data and models go (default: a new temp folder)")
    bl.add_argument("--encoders", default="bow,cnn,lstm,transformer", help="--all: default: %(default)s")
    bl.add_argument("--quantizations", default="float32,float16,dynamic,int8", help="--all: default: %(default)s")
    bl.add_argument("--top-k", type=int, default=100, help="--all: recommendations per call (default: %(default)s)")
    bl.add_argument("--out", default="benchmarks/results/latency.json", help="JSON output (default: %(default)s)")

    dl = commands.add_parser("download", help="download and verify a MovieLens archive",
                             epilog=EXAMPLES["download"], formatter_class=argparse.RawDescriptionHelpFormatter)
    dl.add_argument("name", choices=sorted(download.ARCHIVES))
    dl.add_argument("--cache-dir", default=None, help="default: $ONDEVICE_REC_CACHE or ~/.cache/ondevice-rec")
    return parser


@contextlib.contextmanager
def _logs_to_file(log_path: str, verbose: bool):
    """Sends Python, absl and C++ (fd 1/2) output to ``log_path``; yields a writer for the real console."""
    if verbose:
        yield lambda text: print(text, flush=True)
        return
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    console = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    saved_err = os.dup(2)
    log_file = open(log_path, "a", encoding="utf-8")
    os.dup2(log_file.fileno(), 1)
    os.dup2(log_file.fileno(), 2)
    try:
        yield lambda text: console.write(text + "\n")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(console.fileno(), 1)
        os.dup2(saved_err, 2)
        os.close(saved_err)
        log_file.close()
        console.close()


@contextlib.contextmanager
def _logging_to(handler: logging.Handler):
    """Root logging to the log file (fd 2) and to ``handler`` (the console) while the block runs."""
    import absl.logging
    absl.logging.set_verbosity(absl.logging.INFO)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    to_file = logging.StreamHandler()  # fd 2, which points at the log file unless --verbose
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(to_file)
    root.addHandler(handler)
    logging.getLogger("ondevice_rec").setLevel(logging.INFO)
    try:
        yield
    finally:  # the console goes away with the block; a later command in this process logs elsewhere
        root.removeHandler(to_file)
        root.removeHandler(handler)


def _pipeline_config(args, data_dir: str, output_dir: str, **settings):
    """The PipelineConfig that the shared pipeline options (``_add_pipeline_arguments``) describe."""
    from ondevice_rec.components.history_windowing.windowing import WindowingOptions
    from ondevice_rec.modules.config import ModelConfig
    from ondevice_rec.pipeline.config import PipelineConfig
    model = ModelConfig(encoder=args.encoder, history_length=args.history_length, epochs=args.epochs,
                        batch_size=args.batch_size, embedding_dim=args.embedding_dim,
                        learning_rate=args.learning_rate, top_k=args.top_k).with_overrides(args.hparam)
    windowing = WindowingOptions(
        history_length=args.history_length, split=args.split,
        min_timeline_length=args.min_timeline_length or (3 if args.split == "leave-last-out" else 2),
        min_rating=args.min_rating, max_examples_per_user=args.max_examples_per_user,
        stride=args.stride or model.default_train_stride())
    return PipelineConfig(data_dir=data_dir, output_dir=output_dir, model=model, windowing=windowing,
                          min_recall_at_10=args.min_recall_at_10, keep_versions=args.keep_versions,
                          quantization=args.quantization, beam_args=args.beam_arg,
                          max_bad_fraction=args.max_bad_fraction, **settings)


def _run_pipeline(config, args, headline: str) -> int:
    """Runs one pipeline cycle with per-component progress on the console and the rest in a log file."""
    from ondevice_rec.pipeline import runner
    log_path = os.path.join(config.output_dir, "logs", time.strftime(f"{args.command}-%Y%m%dT%H%M%S.log"))
    print(headline)
    if args.verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        print(f"Logs: {log_path}", flush=True)
    with _logs_to_file(log_path, args.verbose) as console, _logging_to(runner.ProgressHandler(console)):
        try:
            summary = runner.run(config, runner=getattr(args, "runner", "beam"))
        except Exception as e:  # pylint: disable=broad-except
            logging.exception("pipeline failed")
            console(f"\nFAILED: {type(e).__name__}: {e}\nSee {log_path} for details.")
            return EXIT_FAILED
        console("")
        console(runner.format_summary(summary))
    return EXIT_OK


def cmd_run(args) -> int:
    from ondevice_rec.data import download, movielens

    data_dir = args.data_dir
    if args.dataset:
        print(f"Fetching {args.dataset} ...", flush=True)
        data_dir = download.download(args.dataset, progress=download.print_progress)
    fmt = movielens.detect_format(data_dir)  # fail fast, before TFX starts, on a wrong folder
    config = _pipeline_config(args, data_dir, args.output_dir, enable_cache=not args.no_cache)
    return _run_pipeline(config, args, f"ondevice-rec: {fmt.name} data in {config.data_dir}; "
                                       f"encoder {config.model.encoder}, N={config.model.history_length}")


def cmd_retrain(args) -> int:
    from ondevice_rec.data import movielens
    from ondevice_rec.pipeline.config import SPAN_PATTERN, latest_span

    span, span_dir = latest_span(args.data_dir)  # fail fast: no span folders, or a wrong layout
    fmt = movielens.detect_format(span_dir)
    config = _pipeline_config(args, args.data_dir, args.output_dir, input_pattern=SPAN_PATTERN,
                              warm_start=not args.no_warm_start, max_recall_regression=args.max_recall_regression)
    return _run_pipeline(config, args, f"ondevice-rec retrain: span {span} ({fmt.name}) of {config.data_dir}; "
                                       f"warm start {'on' if config.warm_start else 'off'}")


def cmd_kubeflow(args) -> int:
    from ondevice_rec.kubeflow import runner as kubeflow_runner, schedule
    if args.kubeflow_command == "compile":
        from ondevice_rec.pipeline.config import SPAN_PATTERN
        config = _pipeline_config(args, args.data_dir, args.pipeline_root, pipeline_root_uri=args.pipeline_root,
                                  serving_path=args.serving_dir, warm_start=args.warm_start,
                                  input_pattern=SPAN_PATTERN if args.spans else "*", enable_cache=not args.no_cache)
        path = kubeflow_runner.compile_pipeline(config, args.image, args.output)
        print(f"Compiled {path} (image {args.image}, pipeline root {config.pipeline_root})")
        return EXIT_OK
    params = {}
    for assignment in args.param:
        name, sep, value = assignment.partition("=")
        if not sep:
            raise ValueError(f"--param expects NAME=VALUE, got {assignment!r}")
        params[name] = value
    if not args.dry_run and not args.host:
        raise ValueError("--host is required (or --dry-run)")
    summary = schedule.schedule(args.host, args.pipeline, args.cron, args.experiment, job_name=args.job_name,
                                params=params, pipeline_root=args.pipeline_root, dry_run=args.dry_run)
    print(("Would create (dry run):\n" if args.dry_run else "Created recurring run:\n") +
          schedule.format_summary(summary))
    return EXIT_OK


def cmd_recommend(args) -> int:
    from ondevice_rec.serving import Recommender
    try:
        history = [int(x) for x in args.history.replace(" ", "").split(",") if x]
    except ValueError:
        print(f"--history must be comma-separated movie ids, got {args.history!r}", file=sys.stderr)
        return EXIT_BAD_INPUT
    recommender = Recommender(args.model)
    start = time.perf_counter()
    results = recommender.recommend(history, args.k)
    elapsed_ms = (time.perf_counter() - start) * 1000
    titles = recommender.titles
    print("History (oldest first): " + ", ".join(f"{m} {titles.get(m, '?')}" for m in history))
    print(f"Top {len(results)} ({elapsed_ms:.2f} ms):")
    for rank, (movie_id, score) in enumerate(results, start=1):
        print(f"{rank:3d}. {movie_id:6d}  {titles.get(movie_id, '')}  ({score:.3f})")
    return EXIT_OK


def cmd_demo(args) -> int:
    from ondevice_rec.demo import server
    httpd, url = server.make_server(args.model, port=args.port, host=args.host)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host}, reachable from other machines", file=sys.stderr)
    print(f"Demo of {os.path.abspath(args.model)} at {url}  (Ctrl-C stops)", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return EXIT_OK


def cmd_report(args) -> int:
    from ondevice_rec.pipeline import report
    for path in (args.quality, args.latency):
        if path and not os.path.exists(path):
            raise FileNotFoundError(f"{path} does not exist")
    print(f"Report: {report.write(args.output_dir, args.out, args.quality, args.latency)}")
    return EXIT_OK


def cmd_make_synthetic(args) -> int:
    from ondevice_rec.data import synthetic
    config = synthetic.SyntheticConfig(users=args.users, items=args.items,
                                       mean_ratings_per_user=args.mean_ratings_per_user, seed=args.seed)
    data = synthetic.generate(config)
    synthetic.write(data, args.out, args.format, seed=args.seed)
    print(f"wrote {len(data.user_id)} ratings by {args.users} users on {args.items} movies "
          f"({args.format} layout) to {args.out}")
    return EXIT_OK


def cmd_benchmark(args) -> int:
    import absl.logging
    absl.logging.set_verbosity(absl.logging.WARNING)
    if args.benchmark == "windowing":
        from ondevice_rec.benchmarks import windowing
        result = windowing.run(ratings=args.ratings, history_length=args.history_length, work_dir=args.work_dir,
                               beam_args=args.beam_arg, out_json=args.out)
        return EXIT_OK if result["identical"] else EXIT_FAILED
    if args.benchmark == "quality":
        from ondevice_rec.benchmarks import quality
        from ondevice_rec.modules.config import ENCODERS, ModelConfig
        encoders, lengths = _csv(args.encoders), _csv(args.history_lengths)
        problems = [f"unknown encoder {e!r}" for e in encoders if e not in ENCODERS]
        problems += [f"history length {n!r} is not a positive integer" for n in lengths
                     if not n.isdigit() or int(n) < 1]
        if not encoders or not lengths:
            problems.append("--encoders and --history-lengths need at least one value")
        if args.seeds < 1:
            problems.append("--seeds must be >= 1")
        if not os.path.isdir(args.data_dir):
            problems.append(f"no folder at {args.data_dir}")
        if problems:
            print("; ".join(problems), file=sys.stderr)
            return EXIT_BAD_INPUT
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        quality.run(args.data_dir, encoders=encoders, history_lengths=[int(n) for n in lengths], out_dir=args.out_dir,
                    base=ModelConfig(embedding_dim=args.embedding_dim, epochs=args.epochs),
                    overrides=args.hparam, seeds=args.seeds)
        print(f"written to {args.out_dir}/quality.json, quality.md, quality.png")
        return EXIT_OK
    if args.benchmark == "beam-runners":
        from ondevice_rec.benchmarks import beam_runners
        result = beam_runners.run(args.data_dir, work_dir=args.work_dir, workers=args.workers, out_json=args.out)
        return EXIT_OK if result["all_identical"] else EXIT_FAILED
    if args.benchmark == "latency":
        from ondevice_rec.benchmarks import latency
        if args.iterations < 1:
            print("--iterations must be >= 1", file=sys.stderr)
            return EXIT_BAD_INPUT
        if args.all:
            from ondevice_rec.modules.config import ENCODERS
            encoders, modes = _csv(args.encoders), _csv(args.quantizations)
            unknown = sorted(set(encoders) - set(ENCODERS)) + sorted(set(modes) - set(QUANTIZATIONS))
            if unknown or args.top_k < 1:
                print(f"unknown encoder or quantization: {', '.join(unknown)}" if unknown else "--top-k must be >= 1",
                      file=sys.stderr)
                return EXIT_BAD_INPUT
            latency.run_all(work_dir=args.work_dir, encoders=encoders, quantizations=modes, top_k=args.top_k,
                            iterations=args.iterations, out=args.out)
        else:
            if not os.path.exists(args.model):
                print(f"no model at {args.model}", file=sys.stderr)
                return EXIT_BAD_INPUT
            latency.run_model(args.model, args.saved_model, args.iterations, out=args.out)
        print(f"written to {args.out}")
        return EXIT_OK
    return EXIT_BAD_INPUT


def cmd_download(args) -> int:
    from ondevice_rec.data import download
    print(download.download(args.name, cache_dir=args.cache_dir, progress=download.print_progress))
    return EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    import warnings
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")  # Beam worker processes inherit it
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from ondevice_rec.data.download import DownloadError
    from ondevice_rec.data.movielens import DataFormatError
    args = _parser().parse_args(argv)
    handlers = {"run": cmd_run, "retrain": cmd_retrain, "kubeflow": cmd_kubeflow, "recommend": cmd_recommend,
                "demo": cmd_demo, "report": cmd_report, "make-synthetic": cmd_make_synthetic, "download": cmd_download,
                "benchmark": cmd_benchmark}
    try:
        return handlers[args.command](args)
    except (FileNotFoundError, DataFormatError, DownloadError, ValueError) as e:
        print(f"ondevice-rec {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
