"""Runs a published model folder (``model.tflite`` + ``metadata.json`` + ``vocabulary.json``) on a history.

The model speaks vocabulary indices; ``Recommender`` does what an app does: external keys -> indices (keys
outside the vocabulary and repeats are dropped and reported), indices -> keys and titles.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ondevice_rec.components.tflite_pusher.publish import METADATA_FILE
from ondevice_rec.modules import features


def interpreter(model_path_or_bytes, num_threads: int = 1):
    """A LiteRT interpreter (``ai-edge-litert``, the runtime that replaces the deprecated
    ``tf.lite.Interpreter``; the same kernels an Android app links) on a ``.tflite`` file or its bytes."""
    from ai_edge_litert.interpreter import Interpreter
    if isinstance(model_path_or_bytes, (bytes, bytearray)):
        return Interpreter(model_content=bytes(model_path_or_bytes), num_threads=num_threads)
    return Interpreter(model_path=model_path_or_bytes, num_threads=num_threads)


class SignatureCall:
    """One signature of a LiteRT interpreter called the way an app calls it: tensors allocated once, then per
    call the inputs copied in, ``invoke`` and the outputs copied out (Python's SignatureRunner re-allocates on
    every call, ~0.3 ms here). Works on any signature of a file holding several (each its own subgraph)."""

    def __init__(self, interpreter, signature: str):
        self._wrapper = interpreter._interpreter  # pylint: disable=protected-access
        tensors = interpreter._get_full_signature_list()[signature]  # pylint: disable=protected-access
        self._subgraph = self._wrapper.GetSubgraphIndexFromSignature(signature)
        self._wrapper.AllocateTensors(self._subgraph)
        self._inputs = dict(tensors["inputs"])
        self._outputs = dict(tensors["outputs"])

    def __call__(self, **feed) -> Dict[str, np.ndarray]:
        wrapper, subgraph = self._wrapper, self._subgraph
        for name, index in self._inputs.items():
            wrapper.SetTensor(index, feed[name], subgraph)
        wrapper.Invoke(subgraph)
        return {name: wrapper.GetTensor(index, subgraph) for name, index in self._outputs.items()}


class TFLiteRecommender:
    """The LiteRT interpreter on one signature; takes a history ordered most recent first."""

    def __init__(self, model_path_or_bytes, signature: str = features.RECOMMEND_SIGNATURE, num_threads: int = 1):
        self.interpreter = interpreter(model_path_or_bytes, num_threads)
        self.runner = self.interpreter.get_signature_runner(signature)
        details = self.runner.get_input_details()
        self.input_names = sorted(details)
        self.input_name = features.CONTEXT_INDEX
        self.uses_ratings = features.CONTEXT_RATING in details
        self.history_length = int(details[self.input_name]["shape"][0])

    def pad(self, values: Sequence, dtype=np.int32) -> np.ndarray:
        values = list(values)[:self.history_length]
        return np.array(values + [0] * (self.history_length - len(values)), dtype=dtype)

    def inputs(self, recent_first: Sequence[int], ratings: Optional[Sequence[float]] = None) -> Dict[str, np.ndarray]:
        """Padded inputs; ratings default to 4.0 (a liked item) when the model uses them and none are given."""
        feed = {self.input_name: self.pad(recent_first)}
        if self.uses_ratings:
            if ratings is None:
                ratings = [4.0] * min(len(recent_first), self.history_length)
            feed[features.CONTEXT_RATING] = self.pad(ratings, np.float32)
        return feed

    def __call__(self, recent_first: Sequence[int], ratings: Optional[Sequence[float]] = None
                 ) -> Dict[str, np.ndarray]:
        return self.runner(**self.inputs(recent_first, ratings))


@dataclasses.dataclass
class EncodedHistory:
    """A history of external keys as the model's indices, and what was dropped on the way (and why)."""

    indices: List[int]  # oldest first
    keys: List[str]  # the kept keys, oldest first
    unknown: List[str]  # not in the vocabulary (never seen in training, or another catalogue's ids)
    repeated: List[str]  # a second occurrence of a key (the model reads each item once)


class Recommender:
    """A published version folder, e.g. ``OUT/serving/latest``."""

    def __init__(self, model_dir: str):
        metadata_path = os.path.join(model_dir, METADATA_FILE)
        if not os.path.exists(metadata_path):
            raise FileNotFoundError(f"{model_dir} is not a published model folder (no {METADATA_FILE})")
        with open(metadata_path) as f:
            self.metadata = json.load(f)
        with open(os.path.join(model_dir, self.metadata["vocabulary_file"]), encoding="utf-8") as f:
            self.vocabulary = json.load(f)
        if self.vocabulary.get("format_version") != 2:
            raise ValueError(f"{model_dir} was published by an older version (raw-id contract); retrain it")
        self.items = {m["index"]: m for m in self.vocabulary["items"]}
        self.index_of = {m["key"]: m["index"] for m in self.vocabulary["items"]}
        self.titles = {m["key"]: m.get("title", "") for m in self.vocabulary["items"]}
        self.model = TFLiteRecommender(os.path.join(model_dir, self.metadata["model_file"]),
                                       self.metadata["signature"])

    def encode(self, keys_oldest_first: Sequence[str]) -> EncodedHistory:
        encoded = EncodedHistory([], [], [], [])
        for key in (str(k).strip() for k in keys_oldest_first):
            if key not in self.index_of:
                encoded.unknown.append(key)
            elif key in encoded.keys:
                encoded.repeated.append(key)
            else:
                encoded.keys.append(key)
                encoded.indices.append(self.index_of[key])
        return encoded

    def recommend(self, history_oldest_first: Sequence[str], k: int = 10) -> List[Tuple[str, float]]:
        """Top ``k`` (key, score), never a key of the history (unknown keys are dropped: see ``encode``)."""
        return self.recommend_encoded(self.encode(history_oldest_first), k)

    def recommend_encoded(self, encoded: EncodedHistory, k: int = 10) -> List[Tuple[str, float]]:
        result = self.model(encoded.indices[::-1])
        seen = set(encoded.indices)
        out = []
        for index, score in zip(result[features.TOP_IDS].tolist(), result[features.TOP_SCORES].tolist()):
            if index == features.PADDING_ID or index in seen or index not in self.items \
                    or score <= features.MASKED_BELOW:
                continue
            out.append((self.items[index]["key"], float(score)))
            if len(out) == k:
                break
        return out
