"""``ondevice-rec``: the command line, a thin layer over the library.

One module per group of commands, each holding its parsers next to its handlers (``register`` adds them and
sets ``handler``). Exit codes: 0 success (a run that ends with "not published" also succeeded: the gate did
its job), 1 a pipeline component or benchmark failed, 2 bad input or usage (missing data, malformed files,
bad flags), with the reason on stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from ondevice_rec.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK  # noqa: F401  (the exit codes)

COMMAND_MODULES = ("pipeline_commands", "kubeflow_commands", "model_commands", "data_commands",
                   "benchmark_commands", "flink_commands")


def parser() -> argparse.ArgumentParser:
    import importlib
    root = argparse.ArgumentParser(
        prog="ondevice-rec", description="Train a next-item recommender with TFX and publish it as TFLite.",
        epilog="exit codes: 0 success, 1 a component failed, 2 bad input or usage",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = root.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(commands)
    return root


def main(argv: Optional[List[str]] = None) -> int:
    from ondevice_rec.pipeline import console
    console.quiet_environment()
    from ondevice_rec.data.download import DownloadError
    from ondevice_rec.data.movielens import DataFormatError
    from ondevice_rec.pipeline.flink import EngineError
    args = parser().parse_args(argv)
    try:
        return args.handler(args)
    except (FileNotFoundError, DataFormatError, DownloadError, ValueError, EngineError) as e:
        print(f"ondevice-rec {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
