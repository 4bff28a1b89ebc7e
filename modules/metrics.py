"""Ranking metrics and baselines in numpy, on the same definition the Evaluator uses.

recall@K = share of examples whose target is among the top K movies, ranking the whole vocabulary with the
padding id, movies unseen in training and the user's already-seen movies excluded. With one target per
example this equals hit rate@K.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Sequence

import numpy as np


def recall_at_k(ranked: Sequence[Sequence[int]], targets: Sequence[int], ks: Iterable[int] = (1, 5, 10)
                ) -> Dict[str, float]:
    ks = list(ks)
    hits = {k: 0 for k in ks}
    for ranking, target in zip(ranked, targets):
        top = list(ranking)
        for k in ks:
            hits[k] += int(target in top[:k])
    n = max(1, len(targets))
    return {f"recall@{k}": hits[k] / n for k in ks}


def popularity_ranking(popular_ids: Sequence[int], seen: Iterable[int], k: int) -> List[int]:
    """The ``k`` most popular movies the user has not seen."""
    seen = set(seen)
    out = []
    for movie_id in popular_ids:
        if movie_id not in seen:
            out.append(movie_id)
            if len(out) == k:
                break
    return out


def popularity_baseline(popular_ids: Sequence[int], examples: Sequence[dict], ks: Iterable[int] = (1, 5, 10)
                        ) -> Dict[str, float]:
    """recall@K of recommending the most-rated unseen movies; ``examples`` need seen ids and the label."""
    ks = list(ks)
    ranked = [popularity_ranking(popular_ids, e["seen_movie_ids"], max(ks)) for e in examples]
    return recall_at_k(ranked, [e["label_movie_id"] for e in examples], ks)


def read_examples(file_pattern: str) -> List[dict]:
    """Windowed examples as dicts of python lists (for small splits such as eval / test)."""
    import tensorflow as tf
    files = sorted(tf.io.gfile.glob(file_pattern))
    out = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        out.append({name: (list(f.int64_list.value) or list(f.float_list.value)) for name, f in feature.items()})
        for name, value in out[-1].items():
            if name in ("user_id", "label_movie_id", "label_timestamp", "context_length"):
                out[-1][name] = value[0]
    return out


def top_ids(scores: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-scores, kind="stable")[:k]
