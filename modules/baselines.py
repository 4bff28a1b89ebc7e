"""Baselines scored with the shared metric (popularity, Markov chains), and reading transformed examples.

Everything is in vocabulary-index space (index 1 the most frequent training item, 0 padding or unknown).
recall@K = share of examples whose target is among the top K items, ranking the whole vocabulary with the
padding index and the user's already-seen items excluded (``ranking_metrics``, the
definition the Trainer and the Evaluator use). With one target per example this equals hit rate@K.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence

import numpy as np

from . import features
from .features import CONTEXT_INDEX, LABEL_INDEX, MASKED_BELOW, MASKED_SCORE, PADDING_ID, SEEN_INDEX


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


# Examples scored at once: a baseline's whole score matrix for 44K users x 48K items would be 8.4 GB.
SCORED_AT_ONCE = 2048


def _ranked_in_chunks(score, examples: Sequence[dict]) -> Dict[str, float]:
    """The metrics of ``score(chunk) -> [len(chunk), C]``, ranked a chunk of examples at a time."""
    from .ranking_metrics import evaluate_ranks, target_rank
    ranks = [np.zeros(0, np.int32)]
    for start in range(0, len(examples), SCORED_AT_ONCE):
        chunk = examples[start:start + SCORED_AT_ONCE]
        scores = score(chunk)
        ranks.append(target_rank(_labels(chunk, scores.shape[1]), scores).numpy())
    return evaluate_ranks(np.concatenate(ranks))


def popularity_baseline(popular_ids: Sequence[int], examples: Sequence[dict]) -> Dict[str, float]:
    """recall@1/5/10 and NDCG@10 of recommending the most-rated unseen movies; ``examples`` need the seen
    ids and the label (a label outside the popular ids counts as a miss)."""
    return _ranked_in_chunks(lambda chunk: popularity_scores(popular_ids, [e[SEEN_INDEX] for e in chunk]), examples)


def _labels(examples: Sequence[dict], columns: int) -> np.ndarray:
    labels = np.array([e[LABEL_INDEX] for e in examples], np.int64)
    # A label beyond the score columns can never be recommended: point it at the masked padding column.
    return np.where(labels < columns, labels, 0)


@dataclasses.dataclass
class Transitions:
    """Counts of consecutive pairs as a table by previous item (CSR): the items that followed ``previous``
    are ``followers[starts[previous]:starts[previous + 1]]``, ``counts`` times each."""

    starts: np.ndarray
    followers: np.ndarray
    counts: np.ndarray

    def following(self, previous: np.ndarray):
        """``(rows, followers, counts)`` of every pair whose previous item is ``previous[row]`` (flat arrays;
        an id beyond the table has none)."""
        previous = np.where(previous < len(self.starts) - 1, previous, 0)  # 0, padding, never has followers
        first, last = self.starts[previous], self.starts[previous + 1]
        lengths = last - first
        rows = np.repeat(np.arange(len(previous)), lengths)
        positions = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths) \
            + np.repeat(first, lengths)
        return rows, self.followers[positions], self.counts[positions]


def count_transitions(train_sequences: Sequence[Sequence[int]]) -> Transitions:
    """The consecutive pairs of each sequence, counted (in numpy: 25M events' pairs in seconds, where a dict of
    Counters took minutes and the scoring over it most of an hour; docs/results.md, "The report at 25M")."""
    pairs = [np.asarray(s, np.int64) for s in train_sequences if len(s) > 1]
    previous = np.concatenate([s[:-1] for s in pairs]) if pairs else np.zeros(0, np.int64)
    following = np.concatenate([s[1:] for s in pairs]) if pairs else np.zeros(0, np.int64)
    known = (previous != PADDING_ID) & (following != PADDING_ID)  # an unknown item breaks the chain
    previous, following = previous[known], following[known]
    width = int(max(previous.max(initial=0), following.max(initial=0))) + 1
    keys, counts = np.unique(previous * width + following, return_counts=True)
    return Transitions(np.searchsorted(keys // width, np.arange(width + 1)), keys % width, counts)


def markov_scores(popular_ids: Sequence[int], train_sequences: Sequence[Sequence[int]], examples: Sequence[dict],
                  last: int = 1, num_ids: int = 0, transitions: Optional[Transitions] = None) -> np.ndarray:
    """Scores of a Markov chain over the consecutive pairs of ``train_sequences`` (each user's known events,
    oldest first: the ``seen_index`` of their example), summed over the last ``last`` history items
    of each example with weights 1, 1/2, 1/3, ...; popularity (scaled far below one transition) breaks ties
    and backs off. Seen and never-trained movies are masked. ``transitions``: ``count_transitions`` of the
    sequences, when counted already (scoring in chunks)."""
    if transitions is None:
        transitions = count_transitions(train_sequences)
    popularity = popularity_scores(popular_ids, [[]], num_ids)[0]
    recommendable = popularity > MASKED_BELOW
    back_off = np.where(recommendable, popularity / (len(popular_ids) + 1) * 1e-3, 0.0)
    scores = np.tile(back_off, (len(examples), 1))
    for k in range(last):
        previous = np.array([e[CONTEXT_INDEX][k] if len(e[CONTEXT_INDEX]) > k else PADDING_ID for e in examples],
                            np.int64)
        rows, followers, counts = transitions.following(previous)
        inside = followers < scores.shape[1]
        # One previous item a row: every (row, follower) pair once, so a fancy-indexed += adds each count.
        scores[rows[inside], followers[inside]] += counts[inside] / (k + 1)
    scores[:, ~recommendable] = MASKED_SCORE
    for i, example in enumerate(examples):
        ids = [m for m in example[SEEN_INDEX] if 0 <= m < scores.shape[1]]
        scores[i, ids] = MASKED_SCORE
    return scores


def markov_baseline(popular_ids: Sequence[int], train_sequences: Sequence[Sequence[int]],
                    examples: Sequence[dict], last: int = 1) -> Dict[str, float]:
    """recall@1/5/10 and NDCG@10 of the Markov chain of ``markov_scores``."""
    transitions = count_transitions(train_sequences)
    return _ranked_in_chunks(lambda chunk: markov_scores(popular_ids, (), chunk, last, transitions=transitions),
                             examples)


def split_baselines(popular_ids: Sequence[int], examples: Sequence[dict]) -> Dict[str, Dict[str, float]]:
    """Popularity and the Markov chains on ``examples``, by name. Popularity is the training events'; the
    chains count every event a shop knows before the targets: each user's events before their target in
    ``examples`` (the eval target too, for test examples), as the model's successor table does."""
    train_sequences = [e[features.SEEN_INDEX] for e in examples]
    return {"popularity": popularity_baseline(popular_ids, examples),
            "markov (last item)": markov_baseline(popular_ids, train_sequences, examples, 1),
            "markov (last 3 items)": markov_baseline(popular_ids, train_sequences, examples, 3)}


def read_examples(file_pattern: str) -> List[dict]:
    """Transformed examples as dicts of python lists (for small splits such as eval / test)."""
    import tensorflow as tf
    out = []
    for record in features.read_files(file_pattern):
        feature = tf.train.Example.FromString(record).features.feature
        out.append({name: (list(f.int64_list.value) or list(f.float_list.value)) for name, f in feature.items()})
        for name, value in out[-1].items():
            if name == LABEL_INDEX:
                out[-1][name] = value[0]
    return out
