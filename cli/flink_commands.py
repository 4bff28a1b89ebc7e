"""``flink install | up | down | status``: the engine's files and a local standalone Flink cluster."""

from __future__ import annotations

import argparse
import os
import sys

from ondevice_rec.cli.common import EXIT_BAD_INPUT, EXIT_OK, add_command

EXAMPLES = """  ondevice-rec flink up                      # a JobManager and 2 TaskManagers; prints the web UI address
  ondevice-rec run --dataset ml-100k --output-dir out --flink-master localhost:8081
  ondevice-rec flink down"""


def register(commands) -> None:
    from ondevice_rec.pipeline import flink
    group = add_command(commands, "flink", "prepare the Flink engine; start or stop a local Flink cluster", EXAMPLES)
    sub = group.add_subparsers(dest="flink_command", required=True)

    def command(name: str, help_text: str, handler) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, epilog="examples:\n" + EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(handler=handler)
        p.add_argument("--cluster-dir", default=None,
                       help="the local cluster's configuration, logs and pid files (default: <cache>/flink-cluster)")
        p.add_argument("--rest-port", type=int, default=flink.DEFAULT_REST_PORT,
                       help="the JobManager's REST port and web UI (default: %(default)s)")
        return p

    command("install", f"fetch Flink {flink.FLINK_VERSION} (PyPI) and Beam's Flink job server (Maven Central) "
                       "into the cache, once; check the JDK", cmd_install)
    up = command("up", "start a local standalone cluster (JobManager + TaskManagers, separate JVMs)", cmd_up)
    up.add_argument("--taskmanagers", type=int, default=flink.DEFAULT_TASKMANAGERS, help="default: %(default)s")
    up.add_argument("--slots", type=int, default=flink.DEFAULT_SLOTS, help="task slots per TaskManager "
                                                                          "(default: %(default)s)")
    command("down", "stop the local cluster", cmd_down)
    command("status", "the cluster's TaskManagers, slots and jobs (its REST API)", cmd_status)


def _cluster(args, **kwargs):
    from ondevice_rec.pipeline import flink
    state = args.cluster_dir or os.path.join(flink.cache_dir(), "flink-cluster")
    return flink.LocalFlinkCluster(state, rest_port=args.rest_port, **kwargs)


def _engine_errors(handler):
    def wrapped(args) -> int:
        from ondevice_rec.pipeline.flink import EngineError
        try:
            return handler(args)
        except EngineError as e:
            print(f"ondevice-rec flink {args.flink_command}: error: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
    return wrapped


@_engine_errors
def cmd_install(args) -> int:
    from ondevice_rec.pipeline import flink
    flink.install()
    return EXIT_OK


@_engine_errors
def cmd_up(args) -> int:
    cluster = _cluster(args, taskmanagers=args.taskmanagers, slots=args.slots)
    print(f"Starting Flink: a JobManager and {args.taskmanagers} TaskManager(s) of {args.slots} slot(s) ...")
    overview = cluster.start()
    print(f"Flink {overview.get('flink-version')} up: {overview['taskmanagers']} TaskManagers, "
          f"{overview['slots-total']} slots\n  web UI: {cluster.web_ui}\n  logs:   {cluster.state_dir}/log\n"
          f"  use:    ondevice-rec run ... --flink-master {cluster.master}\n  stop:   ondevice-rec flink down"
          + (f" --cluster-dir {args.cluster_dir}" if args.cluster_dir else ""))
    return EXIT_OK


@_engine_errors
def cmd_down(args) -> int:
    cluster = _cluster(args)
    cluster.stop()
    print(f"Flink stopped ({cluster.state_dir})")
    return EXIT_OK


@_engine_errors
def cmd_status(args) -> int:
    from ondevice_rec.pipeline import flink
    cluster = _cluster(args)
    overview = flink.cluster_overview(cluster.master)
    print(f"Flink {overview.get('flink-version')} at {cluster.web_ui}: {overview['taskmanagers']} TaskManagers, "
          f"{overview['slots-total']} slots ({overview['slots-available']} free); jobs: "
          f"{overview['jobs-running']} running, {overview['jobs-finished']} finished, "
          f"{overview['jobs-failed']} failed, {overview['jobs-cancelled']} cancelled")
    return EXIT_OK
