"""The successor table: each item's most frequent next items in the training events, shipped in the model.

A dot product of two d-dimensional embeddings is a rank-d score: it holds what items share (a genre, a
cluster, popularity) but cannot hold a sparse item-to-item graph ("after this item, usually that one") of a
large catalogue. A Markov chain holds that graph exactly and nothing else. The model adds both: the
embedding score plus ``strength / position * count`` for each of the recent history items' top successors
(``layers.SuccessorScores``), the strength chosen on the eval split after training (``STRENGTHS``) with the
table of the training events; the exported table then also counts each user's latest known transition, into
the eval target (``latest_pairs``), as the chain a shop computes counts every event it has.
Why these choices: docs/results.md ("The successor table").

The table is ``int32 [V, S]``: entry ``index * COUNT_SCALE + min(count, COUNT_CAP)`` (0 = none), so one
constant holds both, in ``4 V S`` bytes. This module is numpy only (the Trainer counts, the layer reads).
"""

from __future__ import annotations

from typing import Iterable, Tuple

import numpy as np

COUNT_CAP = 127  # the packed count's bits; the strengths are chosen for the capped counts
COUNT_SCALE = COUNT_CAP + 1


def pack(index: np.ndarray, count: np.ndarray) -> np.ndarray:
    return (np.asarray(index, np.int64) * COUNT_SCALE + np.minimum(count, COUNT_CAP)).astype(np.int32)


def unpack(table: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(index, count)`` arrays of a packed table."""
    table = np.asarray(table, np.int64)
    return table // COUNT_SCALE, table % COUNT_SCALE


def training_pairs(context: np.ndarray, labels: np.ndarray, stride: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(previous, following)`` index pairs of a batch of training windows (``context`` most recent first,
    ``[B, N]``; ``labels`` ``[B]``), each event pair once: a window contributes the pairs whose following item
    is among its last ``stride`` targets (earlier ones are in the previous window), a user's first window
    (padding in its oldest slot) all of them, as ``training.RecommenderTrainer`` counts its loss."""
    context = np.asarray(context, np.int64)
    sequence = np.concatenate([context[:, ::-1], np.asarray(labels, np.int64).reshape(-1, 1)], axis=1)
    previous, following = sequence[:, :-1], sequence[:, 1:]
    n = following.shape[1]
    fresh = np.arange(n)[np.newaxis, :] >= n - stride
    keep = (previous > 0) & (following > 0) & (fresh | (context[:, -1:] == 0))
    return previous[keep], following[keep]


def latest_pairs(context: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(previous, following)`` index pairs of held-out examples (``context`` most recent first): the
    transition from each example's most recent history item into its target."""
    previous, following = np.asarray(context, np.int64)[:, 0], np.asarray(labels, np.int64).reshape(-1)
    keep = (previous > 0) & (following > 0)
    return previous[keep], following[keep]


def successor_table(pairs: Iterable[Tuple[np.ndarray, np.ndarray]], vocabulary_size: int,
                    successors: int) -> np.ndarray:
    """The packed ``[vocabulary_size, successors]`` table of the most frequent following items of each
    item over ``pairs`` (batches of ``(previous, following)`` index arrays), most frequent first (ties: lower
    index, the more popular item); row 0 (padding) and missing entries are 0."""
    if vocabulary_size * COUNT_SCALE > np.iinfo(np.int32).max:  # a packed entry would wrap around
        raise ValueError(f"a successor table holds up to {np.iinfo(np.int32).max // COUNT_SCALE:,} items, the "
                         f"vocabulary has {vocabulary_size:,}: turn it off with successors=0")
    keys = [np.zeros(0, np.int64)]
    for previous, following in pairs:
        keys.append(np.asarray(previous, np.int64) * vocabulary_size + np.asarray(following, np.int64))
    unique, counts = np.unique(np.concatenate(keys), return_counts=True)
    previous, following = unique // vocabulary_size, unique % vocabulary_size
    order = np.lexsort((following, -counts, previous))
    previous, following, counts = previous[order], following[order], counts[order]
    starts = np.searchsorted(previous, previous, side="left")
    rank = np.arange(len(previous)) - starts
    top = rank < successors
    table = np.zeros((vocabulary_size, successors), np.int32)
    table[previous[top], rank[top]] = pack(following[top], counts[top])
    return table


# The strengths training.fit tries for the table's scores (strength x count, counts capped at COUNT_CAP)
# once the network has trained (0: the network alone), keeping the one with the best eval recall@10 (the
# choice and every value tried go to the run summary). A geometric grid: the counts' scale differs by two
# orders of magnitude between a sparse shop log and MovieLens.
STRENGTHS = (0.0, 0.03125, 0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
