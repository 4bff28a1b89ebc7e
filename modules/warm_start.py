"""Warm start: initialise a new model from an earlier exported one, matching items by key.

The exported model keeps its trainable weights in ``assets.extra/weights.npz`` (in the model's weight order,
with their names) next to its vocabulary. A later span has a different vocabulary (new items, another
popularity order), so rows of the vocabulary-indexed tables are copied by item key (string keys match across
spans); items the old model never saw keep their fresh initialisation. Any other weight is copied when its shape matches; if the architecture differs (another encoder,
dimension or history length) nothing is copied and the caller is told why.
"""

from __future__ import annotations

import io
import logging
import os
from typing import Dict

import numpy as np

from .features import ASSETS_EXTRA
from .vocabulary import Vocabulary

WEIGHTS_FILE = "weights.npz"

log = logging.getLogger("ondevice_rec.warm_start")


def vocabulary_indexed(model) -> np.ndarray:
    """Per trainable weight: is its first axis the vocabulary index (item and label embeddings, label bias)?"""
    scores = model.get_layer("scores")
    tables = [model.get_layer("context_embedding").embeddings, scores.label_bias]
    if hasattr(scores, "label_embedding"):
        tables.append(scores.label_embedding)
    ids = {id(t) for t in tables}
    return np.array([id(w) in ids for w in model.trainable_weights])


def save_weights(model, directory: str) -> str:
    """Writes ``model``'s trainable weights to ``directory/weights.npz``."""
    import tensorflow as tf
    path = os.path.join(directory, WEIGHTS_FILE)
    buffer = io.BytesIO()  # np.savez seeks, which a GCS / S3 file does not allow
    np.savez(buffer, names=np.array([w.name for w in model.trainable_weights]), indexed=vocabulary_indexed(model),
             **{f"w{i}": w.numpy() for i, w in enumerate(model.trainable_weights)})
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue())
    return path


def index_mapping(old: Vocabulary, new: Vocabulary) -> np.ndarray:
    """``mapping[new_index]`` = the old index of the same item key, or -1 (index 0, padding, maps to 0)."""
    old_index = old.key_to_index()
    return np.array([0] + [old_index.get(m.key, -1) for m in new.items], np.int64)


def warm_start(model, vocab: Vocabulary, base_dir: str) -> Dict[str, int]:
    """Copies weights from the exported model at ``base_dir`` into ``model`` (built for ``vocab``).

    Returns counts: ``copied_weights``, ``items_carried_over`` and ``new_items``; raises ValueError (and
    copies nothing) when the architectures differ.
    """
    import tensorflow as tf
    extra = os.path.join(base_dir, ASSETS_EXTRA)
    path = os.path.join(extra, WEIGHTS_FILE)
    if not tf.io.gfile.exists(path):
        raise ValueError(f"{base_dir} has no {ASSETS_EXTRA}/{WEIGHTS_FILE} (exported by an older version)")
    with tf.io.gfile.GFile(path, "rb") as f:
        saved = np.load(io.BytesIO(f.read()))
        names = [str(n) for n in saved["names"]]
        old_indexed = saved["indexed"].tolist()
        old = [saved[f"w{i}"] for i in range(len(names))]
    # Matched by position (Keras may number sub-layer names differently in another process); the
    # vocabulary-indexed tables must sit at the same positions.
    if len(old) != len(model.trainable_weights):
        raise ValueError(f"the base model has {len(old)} trainable weights, this one "
                         f"{len(model.trainable_weights)} (another architecture)")
    mapping = index_mapping(Vocabulary.load(extra), vocab)
    known = mapping >= 0
    values = []
    indexed = vocabulary_indexed(model).tolist()
    if indexed != old_indexed:
        raise ValueError(f"weights {names} do not line up with this model's (another architecture)")
    for weight, is_indexed, previous in zip(model.trainable_weights, indexed, old):
        current = weight.numpy()
        if is_indexed:
            if previous.shape[1:] != current.shape[1:]:
                raise ValueError(f"{weight.name}: base shape {previous.shape} vs {current.shape}")
            current[known] = previous[mapping[known]]
            values.append(current)
        elif previous.shape != current.shape:
            raise ValueError(f"{weight.name}: base shape {previous.shape} vs {current.shape}")
        else:
            values.append(previous)
    for weight, value in zip(model.trainable_weights, values):
        weight.assign(value)
    stats = {"copied_weights": len(values), "items_carried_over": int(known[1:].sum()),
             "new_items": int((~known[1:]).sum())}
    log.info("warm start from %s: %d weights, %d items carried over, %d new", base_dir, stats["copied_weights"],
             stats["items_carried_over"], stats["new_items"])
    return stats
