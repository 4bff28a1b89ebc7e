"""Exit codes and the parser helper every command module uses."""

from __future__ import annotations

import argparse
from typing import List

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def add_command(commands, name: str, help_text: str, examples: str, handler=None) -> argparse.ArgumentParser:
    """A sub-command whose ``--help`` ends with its examples; ``handler(args) -> exit code``."""
    command = commands.add_parser(name, help=help_text, epilog="examples:\n" + examples,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    if handler is not None:
        command.set_defaults(handler=handler)
    return command


def csv(text: str) -> List[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
