"""Turns one user's rating events into (history -> next movie) examples, split without leaking the future.

Ordering: a user's events are sorted by ``(timestamp, movie_id)``; equal timestamps (common in MovieLens)
are therefore broken by the smaller movie id first, which is deterministic whatever order the files had.

Leave-last-out split: the last event is the test target, the second to last the eval target, every earlier
position (from the second event on) a train target. A train label is therefore never later than its user's
eval or test target, and training never sees those targets as labels. Eval and test examples still use all
earlier events as context, as a deployed model would.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Iterator, List, Sequence, Tuple

from ondevice_rec.modules import features


@dataclasses.dataclass(frozen=True)
class Event:
    user_id: int
    movie_id: int
    timestamp: int
    rating: float = 0.0
    year: int = 0


@dataclasses.dataclass(frozen=True)
class WindowingOptions:
    history_length: int = 10
    min_timeline_length: int = 3  # users with fewer events give no examples (they have no train example)

    def __post_init__(self):
        if not 1 <= self.history_length <= 200:
            raise ValueError(f"history_length must be within 1..200, got {self.history_length}")
        if self.min_timeline_length < 3:
            raise ValueError("min_timeline_length must be at least 3 (one train, one eval, one test target)")


def sort_timeline(events: Iterable[Event]) -> List[Event]:
    return sorted(events, key=lambda e: (e.timestamp, e.movie_id))


def _pad(values: Sequence, length: int, pad) -> list:
    values = list(values)[:length]
    return values + [pad] * (length - len(values))


def make_example(timeline: Sequence[Event], position: int, history_length: int, with_seen: bool) -> dict:
    """Features of the example whose target is ``timeline[position]`` (a plain dict of lists / scalars)."""
    history = timeline[max(0, position - history_length):position][::-1]  # most recent first
    target = timeline[position]
    example = {
        features.USER_ID: target.user_id,
        features.CONTEXT_MOVIE_ID: _pad([e.movie_id for e in history], history_length, features.PADDING_ID),
        features.CONTEXT_MOVIE_RATING: _pad([float(e.rating) for e in history], history_length, 0.0),
        features.CONTEXT_MOVIE_YEAR: _pad([e.year for e in history], history_length, 0),
        features.CONTEXT_LENGTH: len(history),
        features.LABEL_MOVIE_ID: target.movie_id,
        features.LABEL_TIMESTAMP: target.timestamp,
    }
    if with_seen:
        example[features.SEEN_MOVIE_IDS] = [e.movie_id for e in timeline[:position]]
    return example


def window_timeline(events: Iterable[Event], options: WindowingOptions) -> Iterator[Tuple[str, dict]]:
    """Yields ``(split, example)`` for one user's events (any order) under leave-last-out."""
    timeline = sort_timeline(events)
    if len(timeline) < options.min_timeline_length:
        return
    last = len(timeline) - 1
    for position in range(1, last + 1):
        split = "test" if position == last else "eval" if position == last - 1 else "train"
        yield split, make_example(timeline, position, options.history_length, with_seen=split != "train")


def training_events(events: Iterable[Event], options: WindowingOptions) -> List[Event]:
    """The events a vocabulary may count: all but the eval and test targets (none for too-short timelines)."""
    timeline = sort_timeline(events)
    if len(timeline) < options.min_timeline_length:
        return []
    return timeline[:-2]
