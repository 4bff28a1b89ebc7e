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


# The per-user state (modules/personal.py): TFLite's update_state may differ from the SavedModel's by float
# rounding only (relative to the state's size).
MAX_STATE_DIFFERENCE = 1e-4
# A quantized file stores the item table in int8 (one step ~1/127 of its largest magnitude): its states may
# differ by a few steps (measured 0.0099 on the pusher's test model in full int8).
MAX_QUANTIZED_STATE_DIFFERENCE = 0.03
# Histories whose every update is also run through the SavedModel (an eager call each, ~1 ms: 50 histories of
# up to personal_history + N picks keep the check to seconds); the rest are replayed in TFLite only.
REFERENCE_REPLAYS = 50


def replay_order(history: dict) -> List[int]:
    """A held-out history's picks in time order (oldest first): its earlier items, then its context."""
    earlier = list(history.get(features.EARLIER_INDEX, []))[::-1]
    context = list(history[features.CONTEXT_INDEX])[::-1]
    return [int(i) for i in earlier + context if i > features.PADDING_ID]


def check_personal_state(tflite_model: bytes, saved_model_dir: str, histories: List[dict], labels: List[int],
                         min_overlap: float = MIN_TOP10_OVERLAP, k: int = 10,
                         significance: float = QUANTIZED_LOSS_SIGNIFICANCE, quantized: bool = False
                         ) -> Dict[str, float]:
    """The per-user state's signatures, on held-out histories replayed pick by pick through ``update_state``.

    Refused (ParityError): a TFLite update that differs from the SavedModel's; a state that is not finite
    (diverges); ``recommend_personal`` with a zero state not giving exactly ``recommend``'s output; an update
    that changes nothing (every replayed state still zero, or no recommendation changed by its state);
    ``recommend_personal`` not ranking like the SavedModel's; and a state that makes recall@k significantly
    worse than no state (one-sided sign test, as for quantization).

    ``quantized``: a quantized file, checked after its float twin passed: its states may differ from the
    SavedModel's by a few int8 steps (``MAX_QUANTIZED_STATE_DIFFERENCE``), and since a calibrated int8 file
    quantizes each signature's activations on their own ranges, its zero state and its ranking are held to
    recall (not significantly below ``recommend``'s, as for quantization), not to identity.
    """
    import tensorflow as tf
    if not histories:
        raise ParityError("no held-out histories to check the per-user state on")
    exact_zero = not quantized
    max_difference = MAX_QUANTIZED_STATE_DIFFERENCE if quantized else MAX_STATE_DIFFERENCE
    lite = TFLiteRecommender(tflite_model, features.RECOMMEND_SIGNATURE)
    update = lite.interpreter.get_signature_runner(features.UPDATE_STATE_SIGNATURE)
    personal = lite.interpreter.get_signature_runner(features.RECOMMEND_PERSONAL_SIGNATURE)
    loaded = tf.saved_model.load(saved_model_dir)
    reference_update = loaded.signatures[features.UPDATE_STATE_SIGNATURE]
    reference_personal = loaded.signatures[features.RECOMMEND_PERSONAL_SIGNATURE]
    size = int(update.get_input_details()[features.USER_STATE]["shape"][0])
    zero = np.zeros(size, np.float32)
    difference, overlaps, zero_overlaps, zero_hits, changed, moved = 0.0, [], [], [], 0, 0
    plain_hits, personal_hits = [], []
    for number, (history, label) in enumerate(zip(histories, labels)):
        state = reference = zero
        for item in replay_order(history):
            state = update(user_state=state, item_index=np.int32(item))[features.USER_STATE]
            if number < REFERENCE_REPLAYS:
                reference = reference_update(user_state=tf.constant(reference),
                                             item_index=tf.constant(item, tf.int32))[features.USER_STATE].numpy()
                difference = max(difference, float(np.max(np.abs(state - reference))
                                                   / max(1.0, np.max(np.abs(reference)))))
        if not np.all(np.isfinite(state)):
            raise ParityError(f"the per-user state diverged (not finite) after {len(replay_order(history))} picks")
        changed += int(np.any(state != 0))
        feed = _feed(lite, history)
        plain = lite.runner(**feed)
        at_zero = personal(**feed, user_state=zero)
        zero_overlaps.append(top_k_overlap(plain[features.TOP_IDS], at_zero[features.TOP_IDS], k))
        zero_hits.append(int(label in at_zero[features.TOP_IDS][:k].tolist()))
        if exact_zero and not (np.array_equal(plain[features.TOP_IDS], at_zero[features.TOP_IDS])
                               and np.array_equal(plain[features.TOP_SCORES], at_zero[features.TOP_SCORES])):
            raise ParityError("recommend_personal with a zero state does not give recommend's output")
        got = personal(**feed, user_state=state)
        if not np.all(np.isfinite(got[features.TOP_SCORES])):
            raise ParityError("recommend_personal gives scores that are not finite")
        expected = reference_personal(**{name: tf.constant(value) for name, value in feed.items()},
                                      user_state=tf.constant(state))[features.TOP_IDS].numpy()
        overlaps.append(top_k_overlap(expected, got[features.TOP_IDS], k))
        moved += int(not np.array_equal(got[features.TOP_IDS][:k], plain[features.TOP_IDS][:k]))
        plain_hits.append(int(label in plain[features.TOP_IDS][:k].tolist()))
        personal_hits.append(int(label in got[features.TOP_IDS][:k].tolist()))
    if difference > max_difference:
        raise ParityError(f"TFLite's update_state differs from the SavedModel's by {difference:.2g} (relative), "
                          f"more than {max_difference:g}")
    if not changed or not moved:
        raise ParityError(f"the per-user state changes nothing: {changed} of {len(histories)} replayed states are "
                          f"not zero, {moved} change a top-{k}")
    zero_hits = np.array(zero_hits)
    zero_losses, zero_wins = paired_hits(np.array(plain_hits), zero_hits)
    if (not exact_zero and zero_hits.mean() < np.mean(plain_hits) * (1.0 - MAX_QUANTIZED_RECALL_DROP)
            and sign_test_p_value(zero_losses, zero_wins) < significance):
        raise ParityError(f"recommend_personal with a zero state: recall@{k} {zero_hits.mean():.4f}, significantly "
                          f"below recommend's {np.mean(plain_hits):.4f}")
    overlap = float(np.mean(overlaps))
    if overlap < min_overlap and not quantized:
        raise ParityError(f"TFLite recommend_personal's top-{k} overlaps the SavedModel's by {overlap:.4f}, below "
                          f"the required {min_overlap}")
    plain_hits, personal_hits = np.array(plain_hits), np.array(personal_hits)
    losses, wins = paired_hits(plain_hits, personal_hits)
    p_value = sign_test_p_value(losses, wins)
    result = {"personal_histories": len(histories), "personal_update_difference": difference,
              f"personal_zero_state_top{k}_overlap": float(np.mean(zero_overlaps)),
              f"personal_top{k}_overlap": overlap, f"personal_top{k}_changed": moved,
              f"plain_recall@{k}": float(plain_hits.mean()), f"personal_recall@{k}": float(personal_hits.mean()),
              "personal_only_plain_hits": losses, "personal_only_personal_hits": wins,
              "personal_loss_p_value": p_value}
    if personal_hits.mean() < plain_hits.mean() and p_value < significance:
        raise ParityError(f"recall@{k} with the per-user state {personal_hits.mean():.4f} is significantly below "
                          f"{plain_hits.mean():.4f} without it on {len(histories)} histories (only without hits "
                          f"{losses}, only with {wins}: one-sided sign test p = {p_value:.2g} < {significance:g})")
    return result
