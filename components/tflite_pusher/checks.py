"""Checks a converted model must pass before it is published: TFLite ranks like the SavedModel, and a
quantized model's recall stays within a relative margin of the float model's unless the loss is noise."""

from __future__ import annotations

import math
from typing import Dict, List, Tuple

import numpy as np

from ondevice_rec.modules import features
from ondevice_rec.serving import TFLiteRecommender

MIN_TOP10_OVERLAP = 0.99  # float32 TFLite vs SavedModel, mean over the held-out histories
MAX_QUANTIZED_RECALL_DROP = 0.02  # relative, quantized vs float TFLite recall@10
# A quantized model is refused only when its loss is also significant: a one-sided exact sign test on the
# histories where exactly one of the two models hits (McNemar's test) gives p below this. Without it, `auto` had
# fallen back to a 3x larger float model over a single hit (docs/results.md, "Figures behind code comments").
QUANTIZED_LOSS_SIGNIFICANCE = 0.05


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


def tflite_hits(tflite_model: bytes, signature: str, histories: List[dict], labels: List[int],
                k: int = 10) -> np.ndarray:
    """Per history, 1 where a TFLite model's top ``k`` indices hold its next item index, else 0."""
    lite = TFLiteRecommender(tflite_model, signature)
    return np.array([int(label in lite.runner(**_feed(lite, h))[features.TOP_IDS][:k].tolist())
                     for h, label in zip(histories, labels)], np.int64)


def tflite_recall(tflite_model: bytes, signature: str, histories: List[dict], labels: List[int],
                  k: int = 10) -> float:
    """recall@k of a TFLite model's top indices on held-out (history, next item index) pairs."""
    hits = tflite_hits(tflite_model, signature, histories, labels, k)
    return float(hits.mean()) if len(hits) else 0.0


def sign_test_p_value(losses: int, wins: int) -> float:
    """One-sided exact sign test: the chance of ``losses`` or more among ``losses + wins`` discordant pairs
    when either model is as likely to be the one that hits (McNemar's exact test)."""
    n = losses + wins
    return float(sum(math.comb(n, i) for i in range(losses, n + 1)) / 2.0 ** n) if n else 1.0


def paired_hits(float_hits: np.ndarray, quantized_hits: np.ndarray) -> Tuple[int, int]:
    """``(losses, wins)``: histories only the float model hits, and only the quantized model hits."""
    return (int(np.sum((float_hits == 1) & (quantized_hits == 0))),
            int(np.sum((float_hits == 0) & (quantized_hits == 1))))


def check_quantized_recall(float_model: bytes, quantized_model: bytes, signature: str, histories: List[dict],
                           labels: List[int], max_relative_drop: float = MAX_QUANTIZED_RECALL_DROP, k: int = 10,
                           significance: float = QUANTIZED_LOSS_SIGNIFICANCE) -> Dict[str, float]:
    """The quantized model's recall@k may fall at most ``max_relative_drop`` (relative) below float's on the
    same histories, unless the loss is not significant (one-sided paired sign test p >= ``significance``:
    which model hits on the histories where they disagree could be chance). The result carries the test."""
    if not histories:
        raise ParityError("no held-out histories to check the quantized model on")
    float_hits = tflite_hits(float_model, signature, histories, labels, k)
    quantized_hits = tflite_hits(quantized_model, signature, histories, labels, k)
    float_recall, quantized_recall = float(float_hits.mean()), float(quantized_hits.mean())
    losses, wins = paired_hits(float_hits, quantized_hits)
    p_value = sign_test_p_value(losses, wins)
    result = {f"float_recall@{k}": float_recall, f"quantized_recall@{k}": quantized_recall,
              "quantized_histories": len(histories), "quantized_only_float_hits": losses,
              "quantized_only_quantized_hits": wins, "quantized_loss_p_value": p_value}
    if quantized_recall < float_recall * (1.0 - max_relative_drop) and p_value < significance:
        raise ParityError(f"quantized recall@{k} {quantized_recall:.4f} is more than {max_relative_drop:.0%} below "
                          f"the float model's {float_recall:.4f} on {len(histories)} histories, and significantly "
                          f"(only float hits {losses}, only quantized {wins}: one-sided sign test p = {p_value:.2g} "
                          f"< {significance:g})")
    return result


def quantized_verdict(parity: Dict[str, float], k: int = 10) -> str:
    """One line for the published reason: the paired comparison a quantized model passed."""
    return (f"recall@{k} {parity[f'quantized_recall@{k}']:.4f} vs float {parity[f'float_recall@{k}']:.4f} on "
            f"{parity['quantized_histories']:,} histories (only float hits {parity['quantized_only_float_hits']}, "
            f"only quantized {parity['quantized_only_quantized_hits']}: p = {parity['quantized_loss_p_value']:.2g})")
