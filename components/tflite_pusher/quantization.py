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
# The pusher's default: int8 weights with float activations ("dynamic") for catalogues above QUANTIZED_ABOVE_ITEMS
# items, float32 below. At dimension 32 the float model passes 2 MB at 16K items (16K x 32 x 4 bytes of item
# table); int8 stores it in a quarter. Below, float costs little: int8 was no faster on ML-1M-SAS. Not full int8:
# with the successor table's scores added to the dot product, one int8 scale over the score vector was too
# coarse and lost a third of the recall (docs/results.md, "Figures behind the model's defaults"). A model whose quantized recall@10 falls more than the allowed
# drop below float's is published in float32, saying why.
AUTO_QUANTIZED = "dynamic"
AUTO = "auto"
QUANTIZED_ABOVE_ITEMS = 16_000
CHOICES = QUANTIZATIONS + (AUTO,)


def get(name: str) -> Mode:
    if name not in MODES:
        raise ValueError(f"unknown quantization {name!r}; choose one of {', '.join(QUANTIZATIONS)}")
    return MODES[name]


def check_choice(name: str) -> None:
    if name != AUTO:
        get(name)


def choose(name: str, items: int) -> tuple:
    """``(mode name, why)``: ``name`` itself, or for ``auto`` the mode for a catalogue of ``items`` items."""
    if name != AUTO:
        return get(name).name, f"{name} (asked for)"
    if items > QUANTIZED_ABOVE_ITEMS:
        return AUTO_QUANTIZED, f"{AUTO_QUANTIZED}: auto, {items:,} items > {QUANTIZED_ABOVE_ITEMS:,}"
    return FLOAT, f"float32: auto, {items:,} items <= {QUANTIZED_ABOVE_ITEMS:,}"
