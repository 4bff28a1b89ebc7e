"""The shared metric (Trainer, TFMA, benchmark) and the popularity baseline scored with it."""

import math

import numpy as np
import pytest

from ondevice_rec.modules import baselines, ranking_metrics

MASKED = baselines.MASKED_SCORE


def _metrics(*names):
    """Registry entries for ``kind@k`` names (any cut-off)."""
    return [ranking_metrics.RankingMetric(*name.split("@")[:1], int(name.split("@")[1]), name) for name in names]


def test_recall_and_ndcg_follow_the_rank_of_the_target():
    scores = np.array([
        [MASKED, 0.9, 0.1, 0.5, 0.3],  # target 3 has one item above it: rank 1
        [MASKED, 0.9, 0.1, 0.5, 0.3],  # target 1 is first: rank 0
        [MASKED, 0.9, 0.1, 0.5, 0.3],  # target 2 is last of four: rank 3
    ], np.float32)
    result = ranking_metrics.evaluate(scores, [3, 1, 2], metrics=_metrics("recall@1", "recall@2", "recall@4", "ndcg@2"))
    assert result["recall@1"] == pytest.approx(1 / 3)
    assert result["recall@2"] == pytest.approx(2 / 3)
    assert result["recall@4"] == pytest.approx(1.0)
    assert result["ndcg@2"] == pytest.approx((1 / math.log2(3) + 1.0 + 0.0) / 3)


def test_mrr_is_the_reciprocal_rank_inside_the_cut_off():
    scores = np.array([[MASKED, 0.9, 0.1, 0.5, 0.3]] * 3, np.float32)  # ranks of targets 3, 1, 2: 1, 0, 3
    assert ranking_metrics.evaluate(scores, [3, 1, 2], metrics=_metrics("mrr@10"))["mrr@10"] == \
        pytest.approx((1 / 2 + 1 + 1 / 4) / 3)
    assert ranking_metrics.evaluate(scores, [3, 1, 2], metrics=_metrics("mrr@2"))["mrr@2"] == \
        pytest.approx((1 / 2 + 1) / 3)  # rank 3 is past the cut-off
    assert ranking_metrics.BY_NAME["mrr@10"].title == "MRR@10"  # reported everywhere


def test_a_masked_target_is_a_miss_even_at_large_k():
    scores = np.array([[MASKED, 0.2, MASKED, 0.1]], np.float32)  # target 2 masked (e.g. already seen)
    result = ranking_metrics.evaluate(scores, [2])
    assert result == {name: 0.0 for name in ranking_metrics.NAMES}
    assert ranking_metrics.evaluate(scores, [0], metrics=_metrics("recall@4")) == {"recall@4": 0.0}  # padding


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


def test_markov_scores_add_each_transition_count_weighted_by_the_history_position():
    """The table of consecutive pairs against a plain count of them: each history item's followers get their
    count / (position + 1); padding and unknown items break chains; seen and untrained items are masked."""
    rng = np.random.default_rng(1)
    popular = list(range(1, 30))
    sequences = [rng.choice(range(0, 34), 12).tolist() for _ in range(40)]  # 0: an unknown item; 30-33 untrained
    examples = [{"seen_index": rng.choice(popular, 4, replace=False).tolist(),
                 "context_index": rng.choice(range(0, 36), 3).tolist() + [0], "label_index": 1}
                for _ in range(25)]
    pairs = {}
    for sequence in sequences:
        for a, b in zip(sequence[:-1], sequence[1:]):
            if a and b:
                pairs[(a, b)] = pairs.get((a, b), 0) + 1
    table = baselines.count_transitions(sequences)
    assert {(int(a), int(b)): int(c) for a, b, c in zip(*table.following(np.arange(40)))} == \
        {(a, b): c for (a, b), c in pairs.items()}
    scores = baselines.markov_scores(popular, sequences, examples, 3, num_ids=34)
    for i, example in enumerate(examples):
        expected = np.zeros(34)
        for k, previous in enumerate(example["context_index"][:3]):
            for (a, b), count in pairs.items():
                if a == previous:
                    expected[b] += count / (k + 1)
        for item in range(1, 30):
            if item not in example["seen_index"]:
                assert scores[i, item] == pytest.approx(expected[item], abs=2e-3)  # + the popularity back-off
        assert (scores[i, example["seen_index"]] == MASKED).all() and (scores[i, [0, 30, 31, 32, 33]] == MASKED).all()


def test_baselines_and_scored_records_rank_in_chunks_with_the_metrics_of_the_whole_matrix(monkeypatch):
    """Baselines and the published model's scoring rank a chunk at a time (a 44K x 48K score matrix is
    8.4 GB): the metrics are those of the whole matrix."""
    rng = np.random.default_rng(0)
    popular = list(range(1, 40))
    examples = [{"seen_index": rng.choice(popular, 5, replace=False).tolist(),
                 "context_index": rng.choice(popular, 3, replace=False).tolist(),
                 "label_index": int(rng.integers(1, 45))} for _ in range(50)]
    sequences = [rng.choice(popular, 8).tolist() for _ in range(30)]
    whole = {name: fn() for name, fn in {
        "popularity": lambda: baselines.popularity_baseline(popular, examples),
        "markov": lambda: baselines.markov_baseline(popular, sequences, examples, 3)}.items()}
    scores = baselines.markov_scores(popular, sequences, examples, 3)
    assert whole["markov"] == ranking_metrics.evaluate(scores, baselines._labels(examples, scores.shape[1]))
    monkeypatch.setattr(baselines, "SCORED_AT_ONCE", 7)
    assert baselines.popularity_baseline(popular, examples) == whole["popularity"]
    assert baselines.markov_baseline(popular, sequences, examples, 3) == whole["markov"]

    import tensorflow as tf
    from ondevice_rec.modules import features
    from ondevice_rec.pipeline.evaluation import score_records
    # a stand-in serving function: a record is its own row of scores, the label's in column 0
    table = rng.normal(size=(50, 30)).astype(np.float32)
    table[::5, 0] = MASKED  # some labels masked: misses
    records = [str(i).encode() for i in range(50)]

    def serve(examples):
        return {features.SCORES: tf.constant(table[[int(e) for e in examples.numpy()]])}
    expected = ranking_metrics.evaluate(table, np.zeros(50, np.int64))
    for batch_size in (7, 1024):
        result = score_records(serve, records, batch_size=batch_size)["all"]
        assert {k: v for k, v in result.items() if k != "users"} == pytest.approx(expected) and \
            result["users"] == 50
