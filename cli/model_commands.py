"""Commands on a published model: ``recommend``, ``evaluate``, ``demo`` and ``report``."""

from __future__ import annotations

import os
import sys
import time

from ondevice_rec.cli.common import EXIT_BAD_INPUT, EXIT_OK, add_command, add_model, add_output_dir, add_output_file, add_top_k


def register(commands) -> None:
    rec = add_command(commands, "recommend", "run a published .tflite model on a history",
                      "  ondevice-rec recommend --model /tmp/out/serving/latest --history 50,172,181 --top-k 10",
                      cmd_recommend)
    add_model(rec, required=True)
    rec.add_argument("--history", required=True,
                     help="item keys in the order seen, oldest first: 1,2,3 (MovieLens ids) or B00X,B00Y (SKUs)")
    add_top_k(rec, 10, "how many to print")

    ev = add_command(commands, "evaluate", "score a published model on its run's test split, overall and on a "
                     "list of users",
                     "  ondevice-rec evaluate --output-dir /tmp/out-sas --users ../shared/data/ml-1m-sas/complete_users.txt",
                     cmd_evaluate)
    add_output_dir(ev, "the run's output folder (the --output-dir of run)", required=True)
    ev.add_argument("--version", default="latest", help="published version (default: %(default)s)")
    ev.add_argument("--users", default=None, metavar="FILE", help="also score the users listed in FILE, one key a line")
    ev.add_argument("--split", default="test", choices=("eval", "test"), help="default: %(default)s")

    demo = add_command(commands, "demo", "serve a page that re-ranks on every pick, the model running in the browser",
                       "  ondevice-rec demo --model /tmp/out/serving/latest            # then open "
                       "http://127.0.0.1:8000/", cmd_demo)
    add_model(demo, required=True)
    demo.add_argument("--port", type=int, default=8000, help="default: %(default)s (0: any free port)")
    demo.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")

    rep = add_command(commands, "report", "write one self-contained HTML page about a run's output folder: every pipeline run, the serving model, its training",
                      "  ondevice-rec report --output-dir /tmp/out\n"
                      "  ondevice-rec report --output-dir /tmp/out --quality benchmarks/results/quality.json "
                      "--latency benchmarks/results/latency.json", cmd_report)
    add_output_dir(rep, "the run's output folder (the --output-dir of run)", required=True)
    add_output_file(rep, "the HTML file (default: report.html in the output folder)")
    rep.add_argument("--quality", default=None,
                     help="quality benchmark JSON (default: benchmarks/results/quality.json if present)")
    rep.add_argument("--latency", default=None,
                     help="latency benchmark JSON (default: benchmarks/results/latency.json if present)")


def cmd_recommend(args) -> int:
    from ondevice_rec.serving import Recommender
    keys = [x.strip() for x in args.history.split(",")]
    if not keys or any(not k for k in keys):
        print(f"--history must be comma-separated item keys with none empty, got {args.history!r}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.top_k < 1:
        print("--top-k must be at least 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    recommender = Recommender(args.model)
    encoded = recommender.encode(keys)
    if encoded.unknown:
        print(f"dropped {len(encoded.unknown)} key(s) not in the model's vocabulary (never seen in training, "
              f"or another catalogue's): {', '.join(encoded.unknown)}", file=sys.stderr)
    if encoded.repeated:
        print(f"dropped {len(encoded.repeated)} repeated key(s) (each item counts once): "
              f"{', '.join(encoded.repeated)}", file=sys.stderr)
    if not encoded.indices:
        print("no key of --history is in the vocabulary: nothing to recommend from", file=sys.stderr)
        return EXIT_BAD_INPUT
    start = time.perf_counter()
    results = recommender.recommend_encoded(encoded, args.top_k)
    elapsed_ms = (time.perf_counter() - start) * 1000
    titles = recommender.titles
    print("History (oldest first): " + ", ".join(f"{k} {titles.get(k) or ''}".strip() for k in encoded.keys))
    print(f"Top {len(results)} ({elapsed_ms:.2f} ms):")
    for rank, (key, score) in enumerate(results, start=1):
        print(f"{rank:3d}. {key:>10s}  {titles.get(key, '')}  ({score:.3f})")
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


def cmd_evaluate(args) -> int:
    from ondevice_rec.pipeline import evaluation
    result = evaluation.evaluate_published(args.output_dir, args.version, args.users, args.split)
    from ondevice_rec.modules import ranking_metrics
    print(f"| users | count |{ranking_metrics.table_header()}\n|---|---|" + "---|" * len(ranking_metrics.METRICS))
    for name, m in result.items():
        label = "all" if name == "all" else f"listed in {os.path.basename(args.users)} ({m['users_listed']} listed)"
        print(f"| {label} | {m['users']:,} |{ranking_metrics.table_cells(m)}")
    return EXIT_OK


def cmd_report(args) -> int:
    from ondevice_rec.pipeline import report
    print(f"Report: {report.write(args.output_dir, args.output, args.quality, args.latency)}")
    return EXIT_OK
