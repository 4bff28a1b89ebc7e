"""The popularity baseline and example reading for evaluation, scored with the shared metric.

recall@K = share of examples whose target is among the top K movies, ranking the whole vocabulary with the
padding id, movies unseen in training and the user's already-seen movies excluded (``ranking_metrics``, the
definition the Trainer and the Evaluator use). With one target per example this equals hit rate@K.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

MASKED_SCORE = -1e9


def popularity_scores(popular_ids: Sequence[int], seen: Sequence[Sequence[int]], num_ids: int = 0) -> np.ndarray:
    """Scores ``[B, num_ids]`` (default: max id + 1) that rank the movies by training popularity
    (``popular_ids``, most rated first); every other id (padding, never rated) and each row's already-seen
    movies are masked."""
    popular_ids = np.asarray(popular_ids, np.int64)
    row = np.full(max(num_ids, int(popular_ids.max(initial=0)) + 1), MASKED_SCORE, np.float32)
    row[popular_ids] = np.arange(len(popular_ids), 0, -1, dtype=np.float32)
    scores = np.tile(row, (len(seen), 1))
    for i, ids in enumerate(seen):
        ids = [m for m in ids if 0 <= m < len(row)]
        scores[i, ids] = MASKED_SCORE
    return scores


def popularity_baseline(popular_ids: Sequence[int], examples: Sequence[dict]) -> Dict[str, float]:
    """recall@1/5/10 and NDCG@10 of recommending the most-rated unseen movies; ``examples`` need the seen
    ids and the label (a label outside the popular ids counts as a miss)."""
    from .ranking_metrics import evaluate
    scores = popularity_scores(popular_ids, [e["seen_movie_ids"] for e in examples])
    labels = np.array([e["label_movie_id"] for e in examples], np.int64)
    # A label beyond the score columns can never be recommended: point it at the masked padding column.
    return evaluate(scores, np.where(labels < scores.shape[1], labels, 0))


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
