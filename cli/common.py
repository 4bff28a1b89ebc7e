"""Exit codes and the parser helper every command module uses."""

from __future__ import annotations

import argparse
from typing import List

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

# The command line's grammar (docs/cli.md; tests/test_cli.py walks every parser against it): a folder written or
# a run's output folder read is --output-dir DIR, a file written is --output FILE, a published model is --model,
# a number of recommendations is --top-k.
OUTPUT_DIR, OUTPUT_FILE, MODEL, TOP_K = "--output-dir", "--output", "--model", "--top-k"
RETIRED_FLAGS = ("--out", "--out-dir", "--k")  # the old spellings, refused by the grammar test


def add_output_dir(parser, help_text: str, **kwargs) -> None:
    parser.add_argument(OUTPUT_DIR, dest="output_dir", metavar="DIR", help=help_text, **kwargs)


def add_output_file(parser, help_text: str, default=None) -> None:
    parser.add_argument(OUTPUT_FILE, dest="output", metavar="FILE", default=default,
                        help=help_text + (" (default: %(default)s)" if default else ""))


def add_model(parser, **kwargs) -> None:
    parser.add_argument(MODEL, metavar="VERSION_DIR",
                        help="a published version folder, e.g. OUT/serving/latest", **kwargs)


def add_top_k(parser, default: int, help_text: str) -> None:
    parser.add_argument(TOP_K, dest="top_k", type=int, default=default, help=help_text + " (default: %(default)s)")


def add_command(commands, name: str, help_text: str, examples: str, handler=None) -> argparse.ArgumentParser:
    """A sub-command whose ``--help`` ends with its examples; ``handler(args) -> exit code``."""
    command = commands.add_parser(name, help=help_text, epilog="examples:\n" + examples,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    if handler is not None:
        command.set_defaults(handler=handler)
    return command


def csv(text: str) -> List[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
