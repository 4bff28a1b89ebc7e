"""The item vocabulary: which items a model may recommend, their keys, titles, features and training counts.

Index 0 is the padding / unknown slot; items of the tf.Transform item vocabulary (training events only) get
indices 1..V by descending count. ``Vocabulary.from_transform_output`` reads it from the transform graph;
``vocabulary.json`` (in the SavedModel's ``assets.extra`` and next to every published model) is the on-device
sidecar: index <-> external key <-> title <-> features. An item that never occurs in training has no index
and can never be recommended; a key outside the vocabulary is the app's to drop.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from . import features
from .features import PADDING_ID, VOCABULARY_FILE

FORMAT_VERSION = 2  # 1: MovieLens-only, raw movie ids in and out of the model; 2: keys and indices


@dataclasses.dataclass
class ItemEntry:
    key: str
    count: int
    title: str = ""
    categorical: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)
    numeric: Mapping[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Vocabulary:
    items: List[ItemEntry]  # in index order: items[i] has index i + 1
    # Values of each categorical item feature (value j has id j + 1, 0 = none); bucket boundaries of each
    # numeric one (bucket b + 1 holds values in [boundaries[b - 1], boundaries[b]), 0 = no value).
    categories: Dict[str, List[str]] = dataclasses.field(default_factory=dict)
    boundaries: Dict[str, List[float]] = dataclasses.field(default_factory=dict)

    @property
    def size(self) -> int:
        """Number of indices including the padding slot."""
        return len(self.items) + 1

    @property
    def training_events(self) -> int:
        """The training events the vocabulary counted (its items' counts)."""
        return sum(item.count for item in self.items)

    def keys(self) -> List[str]:
        return [item.key for item in self.items]

    def key_to_index(self) -> Dict[str, int]:
        return {item.key: i for i, item in enumerate(self.items, start=1)}

    def titles(self) -> Dict[str, str]:
        return {item.key: item.title for item in self.items}

    def category_table(self, name: str, width: int) -> np.ndarray:
        """``[V, width]`` category ids of feature ``name`` per index (0 = none)."""
        ids = {v: j for j, v in enumerate(self.categories.get(name, ()), start=1)}
        table = np.zeros((self.size, width), np.int32)
        for row, item in enumerate(self.items, start=1):
            values = [ids[v] for v in item.categorical.get(name, ()) if v in ids][:width]
            table[row, :len(values)] = values
        return table

    def bucket_table(self, name: str) -> np.ndarray:
        """``[V]`` bucket ids of numeric feature ``name`` per index (as ``tft.apply_buckets`` + 1; 0 = none)."""
        boundaries = np.asarray(self.boundaries.get(name, ()), np.float32)
        table = np.zeros(self.size, np.int32)
        for row, item in enumerate(self.items, start=1):
            if name in item.numeric:
                table[row] = 1 + int(np.searchsorted(boundaries, np.float32(item.numeric[name]), side="right"))
        return table

    def buckets(self, name: str) -> int:
        """Bucket ids of ``name``: 0 (none) .. len(boundaries) + 1."""
        return len(self.boundaries.get(name, ())) + 2

    def to_json(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "order": "count_descending",
            "padding_index": PADDING_ID,
            "categories": {k: list(v) for k, v in self.categories.items()},
            "boundaries": {k: list(v) for k, v in self.boundaries.items()},
            "items": [{"index": i, "key": m.key, "count": m.count, "title": m.title,
                       "categorical": {k: list(v) for k, v in m.categorical.items()},
                       "numeric": dict(m.numeric)} for i, m in enumerate(self.items, start=1)],
        }

    @classmethod
    def from_json(cls, data: dict) -> "Vocabulary":
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"vocabulary format {data.get('format_version', 1)} is not {FORMAT_VERSION} (a model "
                             "exported by an older version: retrain it)")
        items = [ItemEntry(m["key"], m["count"], m.get("title", ""),
                           {k: tuple(v) for k, v in m.get("categorical", {}).items()}, dict(m.get("numeric", {})))
                 for m in data["items"]]
        return cls(items, {k: list(v) for k, v in data.get("categories", {}).items()},
                   {k: [float(b) for b in v] for k, v in data.get("boundaries", {}).items()})

    def save(self, directory: str) -> str:
        import tensorflow as tf  # gfile so that GCS / S3 pipeline roots work
        tf.io.gfile.makedirs(directory)
        path = os.path.join(directory, VOCABULARY_FILE)
        with tf.io.gfile.GFile(path, "w") as f:
            json.dump(self.to_json(), f, ensure_ascii=False)
        return path

    @classmethod
    def load(cls, directory: str) -> "Vocabulary":
        import tensorflow as tf
        path = os.path.join(directory, VOCABULARY_FILE)
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"no {VOCABULARY_FILE} in {directory}")
        with tf.io.gfile.GFile(path) as f:
            return cls.from_json(json.load(f))

    @classmethod
    def from_transform_output(cls, transform_output) -> "Vocabulary":
        """From a ``tft.TFTransformOutput`` (the Transform component's ``transform_graph``)."""
        from .preprocessing import ITEM_COUNTS_VOCABULARY

        def lines(name) -> List[str]:
            try:
                path = transform_output.vocabulary_file_by_name(name)
            except (ValueError, KeyError):
                return []
            import tensorflow as tf
            if not path or not tf.io.gfile.exists(path):
                return []
            with tf.io.gfile.GFile(path, "rb") as f:
                return [line.decode("utf-8") for line in f.read().splitlines()]

        keys = lines(features.ITEM_VOCABULARY)
        counts = {}
        for line in lines(ITEM_COUNTS_VOCABULARY):
            count, _, key = line.partition(" ")
            counts[key] = int(float(count))  # a weighted vocabulary (the items split) writes "59.0 key"
        facts: Dict[str, dict] = {}
        for line in lines(features.ITEM_FACTS_VOCABULARY):
            key, kind, value = (line.split(features.FACT_SEPARATOR, 2) + ["", ""])[:3]
            facts.setdefault(key, []).append((kind, value))
        categorical_names, numeric_names = set(), set()
        items = []
        for key in keys:
            entry = ItemEntry(key, counts.get(key, 0), categorical={}, numeric={})
            grouped: Dict[str, List[str]] = {}
            for kind, value in sorted(facts.get(key, ())):
                if kind == features.TITLE_FACT:
                    entry.title = value
                elif kind.startswith("cat:"):
                    grouped.setdefault(kind[4:], []).append(value)
                    categorical_names.add(kind[4:])
                elif kind.startswith("num:"):
                    entry.numeric[kind[4:]] = float(value)
                    numeric_names.add(kind[4:])
            entry.categorical = {k: tuple(v) for k, v in grouped.items()}
            items.append(entry)
        categories = {name: lines(features.CATEGORY_VOCABULARY_PREFIX + name) for name in sorted(categorical_names)}
        boundaries = {name: sorted(float(b) for b in lines(features.BOUNDARIES_VOCABULARY_PREFIX + name))
                      for name in sorted(numeric_names)}
        return cls(items, categories, boundaries)


def build(counts: Mapping[str, int], metadata: Optional[Mapping[str, dict]] = None,
          categories: Optional[Mapping[str, Sequence[str]]] = None,
          boundaries: Optional[Mapping[str, Sequence[float]]] = None) -> Vocabulary:
    """A vocabulary from ``{key: count}`` (descending count, then key) for tests and tools;
    ``metadata[key]``: ``{"title", "categorical": {name: values}, "numeric": {name: value}}``."""
    metadata = metadata or {}
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    items = [ItemEntry(str(key), count, metadata.get(key, {}).get("title", ""),
                       {k: tuple(v) for k, v in metadata.get(key, {}).get("categorical", {}).items()},
                       dict(metadata.get(key, {}).get("numeric", {}))) for key, count in ordered]
    if categories is None:
        categories = {}
        for item in items:
            for name, values in item.categorical.items():
                categories.setdefault(name, set()).update(values)
        categories = {k: sorted(v) for k, v in categories.items()}
    return Vocabulary(items, {k: list(v) for k, v in categories.items()},
                      {k: sorted(float(b) for b in v) for k, v in (boundaries or {}).items()})
