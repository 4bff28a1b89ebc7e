"""What a person sees while a pipeline runs: per-node progress and our own log lines on the console, while
TensorFlow, Beam and absl output (Python logging and the C++ logs on fds 1 and 2) goes to a log file."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import Callable, Optional, Tuple

LOG_FOLDER = "logs"


def quiet_environment() -> None:
    """Before TensorFlow loads: C++ logs off (``--verbose`` turns them back on), no FutureWarning spam (Beam
    worker processes inherit the variable)."""
    import warnings
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


class ConsoleHandler(logging.Handler):
    """Shows the project's own INFO records (``ondevice_rec.*``: node progress from the orchestrator hook in
    ``runner``, training epochs, the pusher's outcome) on the console; everything else stays in the log."""

    def __init__(self, emit: Callable[[str], None]):
        super().__init__(logging.INFO)
        self._emit = emit

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("ondevice_rec") or record.levelno < logging.INFO:
            return
        try:
            message = record.getMessage()
        except Exception:  # pylint: disable=broad-except
            return
        self._emit(message if record.name == "ondevice_rec.progress" else f"      {message}")


@contextlib.contextmanager
def logs_to_file(log_path: str, verbose: bool):
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
def logging_to(handler: logging.Handler):
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


def run_pipeline(config, command: str, verbose: bool, headline: str) -> Tuple[Optional[object], str]:
    """Runs one pipeline cycle with progress on the console and the rest in ``OUT/logs/COMMAND-*.log``.

    Returns ``(summary, log_path)``; the summary is None when a component failed (the reason is printed).
    Raises ``runner.OutputBusy`` (before printing anything) when another run holds the output folder."""
    from ondevice_rec.pipeline import runner
    with runner.output_lock(config.output_dir):
        return _run_pipeline(config, command, verbose, headline)


def _run_pipeline(config, command: str, verbose: bool, headline: str) -> Tuple[Optional[object], str]:
    from ondevice_rec.pipeline import runner
    log_path = os.path.join(config.output_dir, LOG_FOLDER, time.strftime(f"{command}-%Y%m%dT%H%M%S.log"))
    print(headline)
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        print(f"Logs: {log_path}", flush=True)
    with logs_to_file(log_path, verbose) as console, logging_to(ConsoleHandler(console)):
        try:
            summary = runner.run(config)
        except Exception as e:  # pylint: disable=broad-except
            logging.exception("pipeline failed")
            from ondevice_rec.pipeline.flink import engine_description
            console(f"\nFAILED ({engine_description(config.beam_pipeline_args())}): {type(e).__name__}: {e}\n"
                    f"See {log_path} for details.")
            return None, log_path
        console("")
        console(runner.format_summary(summary))
    return summary, log_path
