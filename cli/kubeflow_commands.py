"""``kubeflow compile`` (the KFP v2 spec, TFX's KubeflowV2DagRunner) and ``kubeflow schedule``."""

from __future__ import annotations

import argparse

from ondevice_rec.cli.common import EXIT_OK, add_command
from ondevice_rec.cli.data_source import add_data_source

EXAMPLES = """  ondevice-rec kubeflow compile --image gcr.io/my-project/ondevice-rec:1 --pipeline-root gs://my-bucket/root \\
      --data-dir gs://my-bucket/movielens --serving-dir /gcs/my-bucket/serving --output pipeline.yaml \\
      --beam-arg=--runner=DataflowRunner --beam-arg=--project=my-project --beam-arg=--region=us-central1
  ondevice-rec kubeflow schedule --host http://localhost:8080 --pipeline pipeline.yaml \\
      --cron "0 0 3 * * *" --experiment ondevice-rec --dry-run"""


def register(commands) -> None:
    from ondevice_rec.pipeline.options import add_flags
    kubeflow = add_command(commands, "kubeflow", "compile for Kubeflow Pipelines; schedule retraining there",
                           EXAMPLES)
    kf = kubeflow.add_subparsers(dest="kubeflow_command", required=True)
    kc = kf.add_parser("compile", help="write the KFP v2 pipeline spec (KubeflowV2DagRunner)",
                       epilog="examples:\n" + EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    kc.set_defaults(handler=cmd_compile)
    kc.add_argument("--image", required=True,
                    help="the image built from kubeflow/Dockerfile, e.g. gcr.io/p/ondevice-rec:1")
    kc.add_argument("--pipeline-root", required=True, help="artifact root URI, e.g. gs://bucket/ondevice-rec")
    add_data_source(kc, "the data folder as the containers see it (the run parameter data_root defaults to it; "
                        "with --spans a folder of span-N/ folders, the latest read); an --events spec is read "
                        "here, its paths relative to this folder (or to each span)", data_dir_required=True)
    kc.add_argument("--serving-dir", required=True,
                    help="where versions are published, a POSIX path in the containers (volume or /gcs/<bucket>)")
    kc.add_argument("--output", required=True, help="pipeline.yaml (PipelineSpec) or pipeline.json (PipelineJob)")
    kc.add_argument("--spans", action="store_true",
                    help="the data folder holds span-1/, span-2/, ...: every run reads the latest")
    kc.add_argument("--warm-start", action="store_true", help="start training from the latest blessed model")
    kc.add_argument("--no-cache", action="store_true", help="disable KFP caching for every step")
    add_flags(kc)
    ks = kf.add_parser("schedule", help="create a KFP recurring run from a compiled .yaml (kfp SDK)",
                       epilog="examples:\n" + EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    ks.set_defaults(handler=cmd_schedule)
    ks.add_argument("--host", required=False, default=None, help="KFP API endpoint, e.g. http://localhost:8080")
    ks.add_argument("--pipeline", required=True, help="the compiled .yaml")
    ks.add_argument("--cron", required=True, help="6-field KFP cron, seconds first: '0 0 3 * * *' = 03:00 daily")
    ks.add_argument("--experiment", required=True, help="KFP experiment (created if missing)")
    ks.add_argument("--job-name", default=None, help="default: '<pipeline> (scheduled)'")
    ks.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="a pipeline parameter, e.g. --param data_root=gs://bucket/data (repeatable)")
    ks.add_argument("--pipeline-root", default=None, help="default: the root recorded at compile time")
    ks.add_argument("--dry-run", action="store_true", help="print the request; contact no server")


def cmd_compile(args) -> int:
    import dataclasses
    from ondevice_rec.kubeflow import runner as kubeflow_runner
    from ondevice_rec.pipeline.config import SPAN_PATTERN
    from ondevice_rec.pipeline.options import config_from_args
    from ondevice_rec.cli import data_source
    # The data lives in the containers: a spec file is read here, an events file only named.
    spec = data_source.resolve(args, local=False).spec
    flink_master, args.flink_master = args.flink_master, None  # the steps reach it, not this machine
    config = config_from_args(args, args.data_dir, args.pipeline_root, pipeline_root_uri=args.pipeline_root,
                              serving_path=args.serving_dir, warm_start=args.warm_start,
                              input_pattern=SPAN_PATTERN if args.spans else "*", enable_cache=not args.no_cache,
                              events=spec)
    if flink_master:
        config = dataclasses.replace(config, beam_args=kubeflow_runner.flink_beam_args(flink_master)
                                     + list(config.beam_args))
    path = kubeflow_runner.compile_pipeline(config, args.image, args.output)
    print(f"Compiled {path} (image {args.image}, pipeline root {config.pipeline_root})")
    return EXIT_OK


def cmd_schedule(args) -> int:
    from ondevice_rec.kubeflow import schedule
    params = {}
    for assignment in args.param:
        name, sep, value = assignment.partition("=")
        if not sep:
            raise ValueError(f"--param expects NAME=VALUE, got {assignment!r}")
        params[name] = value
    summary = schedule.schedule(args.host, args.pipeline, args.cron, args.experiment, job_name=args.job_name,
                                params=params, pipeline_root=args.pipeline_root, dry_run=args.dry_run)
    print(("Would create (dry run):\n" if args.dry_run else "Created recurring run:\n") +
          schedule.format_summary(summary))
    return EXIT_OK
