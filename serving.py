"""Runs a published model folder (``model.tflite`` + ``metadata.json`` + ``vocabulary.json``) on a history."""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ondevice_rec.components.tflite_pusher.publish import METADATA_FILE
from ondevice_rec.modules import features


class TFLiteRecommender:
    """The TFLite interpreter on one signature; takes a history ordered most recent first."""

    def __init__(self, model_path_or_bytes, signature: str = features.RECOMMEND_SIGNATURE, num_threads: int = 1):
        import tensorflow as tf
        if isinstance(model_path_or_bytes, (bytes, bytearray)):
            self.interpreter = tf.lite.Interpreter(model_content=bytes(model_path_or_bytes), num_threads=num_threads)
        else:
            self.interpreter = tf.lite.Interpreter(model_path=model_path_or_bytes, num_threads=num_threads)
        self.runner = self.interpreter.get_signature_runner(signature)
        details = self.runner.get_input_details()
        self.input_names = sorted(details)
        self.input_name = features.CONTEXT_MOVIE_ID
        self.uses_ratings = features.CONTEXT_MOVIE_RATING in details
        self.history_length = int(details[self.input_name]["shape"][0])

    def pad(self, values: Sequence, dtype=np.int32) -> np.ndarray:
        values = list(values)[:self.history_length]
        return np.array(values + [0] * (self.history_length - len(values)), dtype=dtype)

    def inputs(self, recent_first: Sequence[int], ratings: Optional[Sequence[float]] = None) -> Dict[str, np.ndarray]:
        """Padded inputs; ratings default to 4.0 (a liked movie) when the model uses them and none are given."""
        feed = {self.input_name: self.pad(recent_first)}
        if self.uses_ratings:
            if ratings is None:
                ratings = [4.0] * min(len(recent_first), self.history_length)
            feed[features.CONTEXT_MOVIE_RATING] = self.pad(ratings, np.float32)
        return feed

    def __call__(self, recent_first: Sequence[int], ratings: Optional[Sequence[float]] = None
                 ) -> Dict[str, np.ndarray]:
        return self.runner(**self.inputs(recent_first, ratings))


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
        self.titles = {m["movie_id"]: m["title"] for m in self.vocabulary["movies"]}
        self.model = TFLiteRecommender(os.path.join(model_dir, self.metadata["model_file"]),
                                       self.metadata["signature"])

    def recommend(self, history_oldest_first: Sequence[int], k: int = 10) -> List[Tuple[int, float]]:
        """Top ``k`` (id, score), never the padding id or a movie of the history."""
        result = self.model(list(history_oldest_first)[::-1])
        seen = set(history_oldest_first)
        out = []
        for movie_id, score in zip(result[features.TOP_IDS].tolist(), result[features.TOP_SCORES].tolist()):
            if movie_id == 0 or movie_id in seen or score <= features.MASKED_BELOW:
                continue
            out.append((int(movie_id), float(score)))
            if len(out) == k:
                break
        return out
