"""What the TFLitePusher publishes and how it checks it: one options object, crossing the TFX boundary as one
JSON execution parameter (TensorFlow-free, so the configuration and the CLI import it cheaply)."""

from __future__ import annotations

import dataclasses

from ondevice_rec.components.tflite_pusher import checks, quantization
from ondevice_rec.modules.config import JsonFields, setting


@dataclasses.dataclass(frozen=True)
class PublishOptions(JsonFields):
    """What the pusher publishes and how it checks it before publishing."""

    KIND = "publish options"

    # A POSIX folder: versions are published by atomic rename and the symlink ``latest``.
    serving_dir: str = ""
    dataset: str = ""  # recorded in metadata.json
    quantization: str = setting(quantization.AUTO, "published model: " + "; ".join(
        f"{m.name}: {m.description}" for m in quantization.MODES.values()) + " (a quantized model must keep "
        f"recall@10 within {checks.MAX_QUANTIZED_RECALL_DROP:.0%} of float); auto: {quantization.AUTO_QUANTIZED} above "
        f"{quantization.QUANTIZED_ABOVE_ITEMS:,} items (float32 if it loses more recall), float32 below",
        quantization.CHOICES)
    keep_versions: int = setting(5, "published versions kept")
    # Held-out test histories the float TFLite model is compared with the SavedModel on (and a quantized one
    # with the float one).
    parity_samples: int = setting(500, "held-out test histories the float TFLite model must rank like the "
                                       "SavedModel on")
    # A quantized model's recall@10 is compared with float's on this many (a paired test, checks.py): on 500, a
    # hit or two had decided for a 3x larger model (docs/results.md, "Figures behind code comments").
    quantized_samples: int = setting(5000, "held-out test histories a quantized model's recall@10 is compared "
                                           "with float's on")
    min_top10_overlap: float = checks.MIN_TOP10_OVERLAP
    max_quantized_recall_drop: float = checks.MAX_QUANTIZED_RECALL_DROP

    def __post_init__(self):
        quantization.check_choice(self.quantization)
        if min(self.keep_versions, self.parity_samples, self.quantized_samples) < 1:
            raise ValueError("keep_versions, parity_samples and quantized_samples must be >= 1")

    def histories_needed(self) -> int:
        """Held-out histories the checks read: the parity check takes the first ``parity_samples``."""
        return max(self.parity_samples, self.quantized_samples)
