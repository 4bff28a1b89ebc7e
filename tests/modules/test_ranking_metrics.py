"""The shared metric (Trainer, TFMA, benchmark) and the popularity baseline scored with it."""

import math

import numpy as np
import pytest

from ondevice_rec.modules import baselines, ranking_metrics

MASKED = baselines.MASKED_SCORE


def test_recall_and_ndcg_follow_the_rank_of_the_target():
    scores = np.array([
        [MASKED, 0.9, 0.1, 0.5, 0.3],  # target 3 has one item above it: rank 1
        [MASKED, 0.9, 0.1, 0.5, 0.3],  # target 1 is first: rank 0
        [MASKED, 0.9, 0.1, 0.5, 0.3],  # target 2 is last of four: rank 3
    ], np.float32)
    result = ranking_metrics.evaluate(scores, [3, 1, 2], recall_ks=(1, 2, 4), ndcg_k=2)
    assert result["recall@1"] == pytest.approx(1 / 3)
    assert result["recall@2"] == pytest.approx(2 / 3)
    assert result["recall@4"] == pytest.approx(1.0)
    assert result["ndcg@2"] == pytest.approx((1 / math.log2(3) + 1.0 + 0.0) / 3)


def test_a_masked_target_is_a_miss_even_at_large_k():
    scores = np.array([[MASKED, 0.2, MASKED, 0.1]], np.float32)  # target 2 masked (e.g. already seen)
    result = ranking_metrics.evaluate(scores, [2], recall_ks=(1, 4))
    assert result == {"recall@1": 0.0, "recall@4": 0.0, "ndcg@10": 0.0}
    assert ranking_metrics.evaluate(scores, [0], recall_ks=(4,))["recall@4"] == 0.0  # the padding id


def test_popularity_baseline_skips_seen_and_unrated_items():
    popular = [7, 3, 5, 1]  # most rated first; ids 2, 4 and 6 were never rated
    scores = baselines.popularity_scores(popular, [[7], []])
    assert scores.shape == (2, 8)
    assert np.argsort(-scores[0])[:3].tolist() == [3, 5, 1]  # 7 already seen
    assert np.argsort(-scores[1])[:4].tolist() == [7, 3, 5, 1]
    assert (scores[:, [0, 2, 4, 6]] == MASKED).all()
    examples = [{"seen_index": [7], "label_index": 3},  # rank 0 once 7 is excluded
                {"seen_index": [], "label_index": 5},   # rank 2
                {"seen_index": [], "label_index": 4},   # never rated: a miss
                {"seen_index": [], "label_index": 99}]  # beyond every id: a miss
    result = baselines.popularity_baseline(popular, examples)
    assert result["recall@1"] == pytest.approx(1 / 4)
    assert result["recall@5"] == pytest.approx(2 / 4)
    assert result["ndcg@10"] == pytest.approx((1.0 + 1 / math.log2(4)) / 4)
