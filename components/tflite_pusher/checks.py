"""Checks a converted model must pass before it is published: TFLite ranks like the SavedModel, and a
quantized model's recall stays within a relative margin of the float model's."""

from __future__ import annotations

from typing import Dict, List

import numpy as np

from ondevice_rec.modules import features
from ondevice_rec.serving import TFLiteRecommender

MIN_TOP10_OVERLAP = 0.99  # float32 TFLite vs SavedModel, mean over the held-out histories
MAX_QUANTIZED_RECALL_DROP = 0.02  # relative, quantized vs float TFLite recall@10


class ParityError(RuntimeError):
    """The TFLite model does not rank like the SavedModel it was converted from."""


def top_k_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    return len(set(a[:k].tolist()) & set(b[:k].tolist())) / float(k)


def _feed(lite: TFLiteRecommender, history) -> Dict[str, np.ndarray]:
    if not isinstance(history, dict):
        history = {features.CONTEXT_INDEX: history}
    return lite.inputs(history[features.CONTEXT_INDEX], history.get(features.CONTEXT_RATING))


def check_parity(tflite_model: bytes, saved_model_dir: str, histories: List[dict], signature: str,
                 min_overlap: float = MIN_TOP10_OVERLAP, k: int = 10) -> Dict[str, float]:
    """Mean top-k overlap between TFLite and SavedModel on ``histories`` (dicts with ``context_index`` and
    optionally ``context_rating``, or plain index lists); raises ParityError below the bar."""
    import tensorflow as tf
    if not histories:
        raise ParityError("no held-out histories to check parity on")
    lite = TFLiteRecommender(tflite_model, signature)
    reference = tf.saved_model.load(saved_model_dir).signatures[signature]
    overlaps = []
    for history in histories:
        feed = _feed(lite, history)
        expected = reference(**{name: tf.constant(value) for name, value in feed.items()})[features.TOP_IDS].numpy()
        got = lite.runner(**feed)[features.TOP_IDS]
        overlaps.append(top_k_overlap(expected, got, k))
    result = {"parity_histories": len(overlaps), f"parity_top{k}_overlap": float(np.mean(overlaps)),
              f"parity_top{k}_min_overlap": float(np.min(overlaps))}
    if result[f"parity_top{k}_overlap"] < min_overlap:
        raise ParityError(f"TFLite top-{k} overlaps the SavedModel's by {result[f'parity_top{k}_overlap']:.4f} "
                          f"on {len(overlaps)} histories, below the required {min_overlap}")
    return result


def tflite_recall(tflite_model: bytes, signature: str, histories: List[dict], labels: List[int],
                  k: int = 10) -> float:
    """recall@k of a TFLite model's top indices on held-out (history, next item index) pairs."""
    lite = TFLiteRecommender(tflite_model, signature)
    hits = [int(label in lite.runner(**_feed(lite, h))[features.TOP_IDS][:k].tolist()) for h, label in zip(histories, labels)]
    return float(np.mean(hits)) if hits else 0.0


def check_quantized_recall(float_model: bytes, quantized_model: bytes, signature: str, histories: List[dict],
                           labels: List[int], max_relative_drop: float = MAX_QUANTIZED_RECALL_DROP, k: int = 10) -> Dict[str, float]:
    """The quantized model's recall@k may fall at most ``max_relative_drop`` (relative) below float's."""
    if not histories:
        raise ParityError("no held-out histories to check the quantized model on")
    float_recall = tflite_recall(float_model, signature, histories, labels, k)
    quantized_recall = tflite_recall(quantized_model, signature, histories, labels, k)
    result = {f"float_recall@{k}": float_recall, f"quantized_recall@{k}": quantized_recall,
              "quantized_histories": len(histories)}
    if quantized_recall < float_recall * (1.0 - max_relative_drop):
        raise ParityError(f"quantized recall@{k} {quantized_recall:.4f} is more than {max_relative_drop:.0%} below "
                          f"the float model's {float_recall:.4f} on {len(histories)} histories")
    return result
