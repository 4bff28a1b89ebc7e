"""The encoder registry: one module per context encoder in this folder.

Each module defines ``encode(config, x, mask)`` (TensorFlow imported inside it, so this registry stays cheap
to import for the CLI and the configuration) and ``LOSS_POSITIONS``, its default training-loss rule ("all":
a loss at every history position, as SASRec; "last": the window's label only). Adding an encoder is adding a
module here and its name to ``ENCODERS``; the configuration, the CLI choices, the published metadata's JSON
Schema and the benchmarks all read this tuple.
"""

from __future__ import annotations

import importlib

ENCODERS = ("bow", "cnn", "lstm", "transformer")


def check(name: str) -> str:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    return name


def get(name: str):
    """The module of encoder ``name`` (``encode`` and ``LOSS_POSITIONS``)."""
    return importlib.import_module(f"{__name__}.{check(name)}")
