"""The quantization modes of the published model: one registry, read by the converter, the options, the CLI
choices and the metadata JSON Schema. Adding a mode is adding an entry here (TensorFlow is imported by the
converter, not by this module)."""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    description: str
    # Sets the converter's optimisation options (``tf`` is the TensorFlow module).
    configure: Callable[[object, object], None]
    calibrated: bool = False  # needs representative inputs (held-out histories)


def _float32(converter, tf) -> None:
    pass


def _float16(converter, tf) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


def _dynamic(converter, tf) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]


MODES: Dict[str, Mode] = {mode.name: mode for mode in (
    Mode("float32", "float32 weights and activations", _float32),
    Mode("float16", "weights stored as float16", _float16),
    Mode("dynamic", "int8 weights, float activations (dynamic range)", _dynamic),
    # int8 weights and activations calibrated on held-out histories; float kernels kept where an op has no
    # integer one (the id lookups, top-k).
    Mode("int8", "full integer, calibrated on held-out histories", _dynamic, calibrated=True),
)}
QUANTIZATIONS = tuple(MODES)
FLOAT = "float32"


def get(name: str) -> Mode:
    if name not in MODES:
        raise ValueError(f"unknown quantization {name!r}; choose one of {', '.join(QUANTIZATIONS)}")
    return MODES[name]
