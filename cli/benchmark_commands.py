"""``benchmark windowing | quality | latency | beam-runners | scale | personal``: figures as a printed table and a
JSON file."""

from __future__ import annotations

import logging

from ondevice_rec.cli.common import EXIT_FAILED, EXIT_OK, add_command, add_output_dir, add_output_file, add_top_k, csv
from ondevice_rec.cli.data_source import add_data_source

EXAMPLES = """  ondevice-rec benchmark windowing --ratings 1000000
  ondevice-rec benchmark quality --data-dir ../shared/data/ml-100k
  ondevice-rec benchmark quality --run-defaults --data-dir ../shared/data/ml-100k --synthetic short-sessions
  ondevice-rec benchmark quality --run-defaults --data-dir ../shared/data --seeds 3   # every real dataset
  ondevice-rec benchmark quality --run-defaults --data-dir ../shared/data --seeds 2 --ablation user_balance=1
  ondevice-rec benchmark latency --model out/serving/latest
  ondevice-rec benchmark latency --all      # every encoder x quantisation, 3,952-movie catalogue, N=10
  ondevice-rec benchmark windowing --ratings 1000000 --beam-arg=--direct_running_mode=in_memory
  ondevice-rec benchmark beam-runners --data-dir ../shared/data/ml-100k --taskmanagers 1,2
  ondevice-rec benchmark scale --sizes 1M,5M --engines direct,flink --work-dir /tmp/scale
  ondevice-rec benchmark personal --output-dir out --users ../shared/data/ml-1m-sas/complete_users.txt"""


def register(commands) -> None:
    from ondevice_rec.components.tflite_pusher.quantization import QUANTIZATIONS
    from ondevice_rec.benchmarks.latency import REFERENCE_MODELS_DIR
    from ondevice_rec.benchmarks import anchors, quality
    from ondevice_rec.modules.encoders import ENCODERS
    from ondevice_rec.data import synthetic
    from ondevice_rec.pipeline.options import add_model_flags
    bench = add_command(commands, "benchmark", "measure speed figures (prints a table, writes JSON)", EXAMPLES)
    which = bench.add_subparsers(dest="benchmark", required=True)

    def sub(name: str, help_text: str, handler):
        return add_command(which, name, help_text, EXAMPLES, handler)

    bw = sub("windowing", "Beam windowing vs a numpy/pandas reference at ML-1M scale", cmd_windowing)
    bw.add_argument("--ratings", type=int, default=1_000_000, help="synthetic ratings (default: %(default)s)")
    bw.add_argument("--history-length", type=int, default=10, help="default: %(default)s")
    bw.add_argument("--work-dir", default="", help="where data and outputs go (default: a temporary folder, "
                                                   "deleted at the end)")
    add_output_file(bw, "the JSON results", default="benchmarks/results/windowing.json")
    bw.add_argument("--beam-arg", action="append", default=[], metavar="ARG",
                    help="Beam pipeline option, e.g. --beam-arg=--direct_num_workers=2 (repeatable)")

    bq = sub("quality", "every encoder x history length vs popularity and Markov baselines", cmd_quality)
    add_data_source(bq, "a MovieLens folder (e.g. ../shared/data/ml-100k), a log's folder with its event spec "
                        "events.json, or a folder of such folders (e.g. ../shared/data: every dataset in it); "
                        "repeat it (or add --synthetic) for the cross-dataset table, which sets each dataset "
                        "beside its published results", repeat=True)
    bq.add_argument("--synthetic", action="append", default=[], choices=sorted(synthetic.SHAPES), metavar="SHAPE",
                    help="also a generated log of this shape: " + ", ".join(sorted(synthetic.SHAPES)) +
                         " (repeatable)")
    bq.add_argument("--encoders", default=None, help=f"the encoders trained (default: {','.join(ENCODERS)})")
    bq.add_argument("--history-lengths", default=None,
                    help=f"the history lengths N trained (default: {','.join(map(str, quality.HISTORY_LENGTHS))})")
    bq.add_argument("--run-defaults", action="store_true",
                    help="train only the encoder and N `ondevice-rec run` trains (with the same settings as "
                         "always): is the default better than the baselines on this data?")
    # The model settings are `run`'s flags, generated from the same config fields with the same defaults.
    add_model_flags(bq, skip=("encoder", "history_length"),
                    hparam_help="a model setting for every encoder, or for one with a prefix, e.g. "
                                "--hparam transformer:dropout=0.2 (repeatable)")
    bq.add_argument("--ablation", action="append", default=[], metavar="KEY=VALUE",
                    help="also train the model with this one setting changed (repeatable: one change at a "
                         "time); the table gives each change's recall beside the unchanged model's")
    bq.add_argument("--seeds", type=int, default=1,
                    help="train each model this many times (seeds 0, 1, ...) and report the mean and spread "
                         "(default: %(default)s)")
    bq.add_argument("--work-dir", default="", help="the data stages' pipeline root and MLMD store (default: a "
                                                   "temporary folder, deleted at the end; reuse one to skip the "
                                                   "cached stages)")
    add_output_dir(bq, "where quality.json/.md/.png go (default: %(default)s)", default="benchmarks/results")
    bq.add_argument("--users", default="", metavar="FILE",
                    help="also score every model on the users listed in FILE, one key a line (default: the "
                         f"dataset folder's {anchors.USERS_FILE}, when it has one)")

    br = sub("beam-runners", "the Beam data stages on DirectRunner vs a local Flink cluster of 1 and 2 "
                             "TaskManagers", cmd_beam_runners)
    add_data_source(br, "a MovieLens folder, or a log's folder with its event spec events.json")
    br.add_argument("--taskmanagers", default="1,2",
                    help="one Flink run per count, each on a new local cluster (default: %(default)s)")
    br.add_argument("--work-dir", default="", help="where outputs go (default: a temporary folder, deleted at "
                                                   "the end)")
    add_output_file(br, "the JSON results", default="benchmarks/results/beam_runners.json")

    bs = sub("scale", "the data stages on synthetic MovieLens-25M-shaped logs of growing size: seconds, CPU per "
                      "event and peak memory per stage", cmd_scale)
    bs.add_argument("--sizes", default="1M,5M,25M", help="events per log, e.g. 500K,1M (default: %(default)s)")
    bs.add_argument("--engines", default="direct", help="direct, flink or both (default: %(default)s)")
    bs.add_argument("--taskmanagers", type=int, default=2,
                    help="flink: a new local cluster of this many TaskManagers (default: %(default)s)")
    bs.add_argument("--seed", type=int, default=0, help="the generator's seed (default: %(default)s)")
    bs.add_argument("--work-dir", default="", help="where the logs and outputs go (default: a temporary folder, "
                                                   "deleted at the end; reuse one to skip generating the logs)")
    add_output_file(bs, "the JSON results", default="benchmarks/results/scale.json")

    bl = sub("latency", "TFLite p50/p90/p99 (1 and 4 threads) vs the SavedModel, and size", cmd_latency)
    target = bl.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", help="a published version folder (e.g. OUT/serving/latest) or a .tflite file")
    target.add_argument("--all", action="store_true",
                        help="build and measure every encoder x quantisation mode at ML-1M catalogue size")
    bl.add_argument("--saved-model", default=None, help="the SavedModel of --model (default: from metadata.json)")
    bl.add_argument("--iterations", type=int, default=2000, help="timed invocations (default: %(default)s)")
    bl.add_argument("--work-dir", default="", help="--all: where data and models go (default: a temporary "
                                                   "folder, deleted at the end)")
    bl.add_argument("--encoders", default=",".join(ENCODERS), help="--all: default: %(default)s")
    bl.add_argument("--quantizations", default=",".join(QUANTIZATIONS), help="--all: default: %(default)s")
    add_top_k(bl, 100, "--all: recommendations per call")
    add_output_file(bl, "the JSON results", default="benchmarks/results/latency.json")
    bl.add_argument("--reference-models", default=REFERENCE_MODELS_DIR, metavar="DIR",
                    help="--model: also time every .tflite in DIR in the same run, when it exists (default: "
                         "%(default)s, the 2020 solution's two published models; '' to skip)")


    bp = sub("personal", "the per-user state on the published TFLite model: each test user's history replayed "
                         "through update_state, recall@10 / NDCG@10 with and without the state, the update's "
                         "latency", cmd_personal)
    bp.add_argument("--output-dir", required=True, help="the output folder of an `ondevice-rec run` whose model "
                                                        "has a per-user state")
    bp.add_argument("--version", default="latest", help="published version (default: %(default)s)")
    bp.add_argument("--users", default=None, metavar="FILE",
                    help="also score the users listed in FILE, one key a line")
    bp.add_argument("--split", default="test", choices=("eval", "test"), help="default: %(default)s")
    bp.add_argument("--gradient", action="store_true",
                    help="also measure the other kind of update on the same model: gradient steps of its loss on "
                         "a user vector (the rate chosen on the eval split; in TensorFlow, on the model's weights)")
    add_output_file(bp, "the JSON results", default="benchmarks/results/personal.json")


def _quiet() -> None:
    import absl.logging
    absl.logging.set_verbosity(absl.logging.WARNING)


def cmd_windowing(args) -> int:
    from ondevice_rec.benchmarks import windowing
    _quiet()
    result = windowing.run(ratings=args.ratings, history_length=args.history_length, work_dir=args.work_dir,
                           beam_args=args.beam_arg, out_json=args.output)
    return EXIT_OK if result["identical"] else EXIT_FAILED


def cmd_quality(args) -> int:
    from ondevice_rec.benchmarks import quality
    from ondevice_rec.cli import data_source
    from ondevice_rec.modules.config import ENCODERS
    from ondevice_rec.pipeline.options import model_from_args
    _quiet()
    model = model_from_args(args)
    encoders = args.encoders or (model.encoder if args.run_defaults else ",".join(ENCODERS))
    history_lengths = args.history_lengths or (str(model.history_length) if args.run_defaults else
                                               ",".join(map(str, quality.HISTORY_LENGTHS)))
    lengths = []
    for n in csv(history_lengths):
        try:
            lengths.append(int(n))
        except ValueError:
            raise ValueError(f"history length {n!r} is not a positive integer") from None
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = dict(encoders=csv(encoders), history_lengths=lengths, out_dir=args.output_dir, base=model,
                    overrides=[h for h in args.hparam if ":" in h.partition("=")[0]], seeds=args.seeds,
                    work_dir=args.work_dir, users_file=args.users, ablations=args.ablation)
    if args.events or args.event_field:  # one log, described by the spec options
        if len(args.data_dir) > 1 or args.synthetic:
            raise ValueError(f"{data_source.EVENTS} and {data_source.EVENT_FIELD} describe one log: give at most "
                             f"one {data_source.DATA_DIR} and no --synthetic with them")
        source = data_source.resolve(args, args.data_dir[0] if args.data_dir else None)
        datasets, events = [source.data_dir], source.spec
    else:
        datasets = quality.expand_datasets(args.data_dir) + [quality.SYNTHETIC_PREFIX + s for s in args.synthetic]
        events = None
    if not datasets:
        raise ValueError(f"benchmark quality needs a {data_source.DATA_DIR}, {data_source.EVENTS} or a --synthetic "
                         "shape")
    if len(datasets) == 1 and not args.synthetic:
        from ondevice_rec.benchmarks import anchors
        from ondevice_rec.data import event_spec
        settings["users_file"] = args.users or anchors.users_file(datasets[0])
        quality.run(datasets[0], events=events or event_spec.folder_spec(datasets[0]), **settings)
        print(f"written to {args.output_dir}/quality.json, quality.md, quality.png")
    else:
        quality.run_datasets(datasets, **settings)
        print(f"written to {args.output_dir}/datasets.json, datasets.md and a quality.* folder per dataset")
    return EXIT_OK


def cmd_beam_runners(args) -> int:
    from ondevice_rec.benchmarks import beam_runners
    from ondevice_rec.cli import data_source
    _quiet()
    source = data_source.resolve(args)
    result = beam_runners.run(source.data_dir, work_dir=args.work_dir, events=source.spec,
                              taskmanagers=[int(n) for n in csv(args.taskmanagers)], out_json=args.output)
    return EXIT_OK if result["all_identical"] else EXIT_FAILED


def cmd_scale(args) -> int:
    from ondevice_rec.benchmarks import scale
    sizes = [scale.parse_size(text) for text in csv(args.sizes)]
    _quiet()
    scale.run(sizes, work_dir=args.work_dir, engines=csv(args.engines), taskmanagers=args.taskmanagers,
              seed=args.seed, out_json=args.output)
    print(f"written to {args.output}")
    return EXIT_OK


def cmd_personal(args) -> int:
    import json
    import os
    from ondevice_rec.benchmarks import personal
    _quiet()
    result = personal.run(args.output_dir, args.version, args.users, args.split)
    print(personal.table(result))
    if args.gradient:
        result["gradient"] = personal.run_gradient(args.output_dir, args.version)
        print(personal.gradient_table(result["gradient"]))
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump({**result, "command": "benchmark personal", "output_dir": os.path.abspath(args.output_dir),
                   "users_file": args.users}, f, indent=2)
    print(f"written to {args.output}")
    return EXIT_OK


def cmd_latency(args) -> int:
    from ondevice_rec.benchmarks import latency
    _quiet()
    if args.all:
        latency.run_all(work_dir=args.work_dir, encoders=csv(args.encoders), quantizations=csv(args.quantizations),
                        top_k=args.top_k, iterations=args.iterations, out=args.output)
    else:
        latency.run_model(args.model, args.saved_model, args.iterations, out=args.output,
                          references=args.reference_models)
    print(f"written to {args.output}")
    return EXIT_OK
