"""Turns one user's rating events into (history -> next movie) examples, split without leaking the future.

Ordering: a user's events are sorted by timestamp. Equal timestamps (MovieLens records seconds, and 44 % of
ML-100K users' last two ratings share one) are ordered by ``tie_break(user_id, movie_id)``, a fixed hash: the
order is deterministic whatever order the files had, yet unrelated to the movie id. Ordering ties by movie id
made every same-second burst ascend in id, and as MovieLens ids grow with the date a movie was added, the
held-out last rating became systematically the newest, rarest movie of its burst.

Splits (``WindowingOptions.split``):

* ``leave-last-out`` (default): the last event is the test target, the second to last the eval target,
  every earlier position (from the second event on) a train target.
* ``temporal``: a global time cut. Targets at or after ``test_start`` are test, at or after ``eval_start``
  eval, earlier ones train. Every user's history is used as context whatever its period.

Either way a train label is never later than its user's eval or test targets and training never sees those
targets. Eval and test examples use all earlier events as context, as a deployed model would.

Padding: context lists are right-padded with 0 (``PADDING_ID``; genre id 0; rating 0.0; year 0) after the
``context_length`` real entries, which are ordered most recent first. ``context_movie_genre`` holds
``genres_per_movie`` genre ids per context position (row-major ``[N, G]`` flattened), 0-padded.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from ondevice_rec.modules import features
from ondevice_rec.modules.config import MAX_HISTORY_LENGTH, JsonFields, setting

LEAVE_LAST_OUT = "leave-last-out"
TEMPORAL = "temporal"
SPLIT_MODES = (LEAVE_LAST_OUT, TEMPORAL)


@dataclasses.dataclass(frozen=True)
class Event:
    user_id: int
    movie_id: int
    timestamp: int
    rating: float = 0.0
    year: int = 0
    genres: Tuple[str, ...] = ()


def minimum_timeline_length(split: str) -> int:
    """The fewest events a user needs to give examples: a train, an eval and a test target for
    leave-last-out; a context and a target for the temporal split."""
    return 3 if split == LEAVE_LAST_OUT else 2


@dataclasses.dataclass(frozen=True)
class WindowingOptions(JsonFields):
    """How events become examples. Crosses the TFX boundary as one JSON execution parameter (``to_json``).

    ``history_length`` is not a knob of its own: ``PipelineConfig`` sets it from ``ModelConfig.history_length``.
    """

    KIND = "windowing options"

    history_length: int = setting(10, "", flag=False)
    split: str = setting(LEAVE_LAST_OUT, "leave-last-out: each user's last event is test, the one before eval; "
                                         "temporal: a global time cut", SPLIT_MODES)
    # Users with fewer (kept) events give no examples; None: the split's minimum (minimum_timeline_length).
    min_timeline_length: Optional[int] = setting(None, "users with fewer events are skipped (default: 3 "
                                                       "leave-last-out, 2 temporal)")
    min_rating: float = setting(0.0, "drop events rated below this before windowing (0: keep all)")
    max_examples_per_user: int = setting(0, "keep only each user's most recent N train examples (0: all)")
    # Every stride-th train target, counted back from the last one. None: every position standalone; the
    # pipeline sets the model's ModelConfig.default_train_stride() (N/2 with a loss at every position).
    stride: Optional[int] = setting(None, "use every k-th train position (default: N/2 with loss_positions=all, "
                                          "else 1)")
    genres_per_movie: int = 3
    # Temporal split: first timestamps of the eval and test periods; None: derived from the fractions below
    # (day-aligned cuts, ``temporal_cuts``).
    eval_start: Optional[int] = None
    test_start: Optional[int] = None
    eval_fraction: float = setting(0.1, "temporal split without explicit cuts: share of events in eval")
    test_fraction: float = setting(0.1, "temporal split without explicit cuts: share of events in test")

    def __post_init__(self):
        if self.split not in SPLIT_MODES:
            raise ValueError(f"split must be one of {', '.join(SPLIT_MODES)}, got {self.split!r}")
        if not 1 <= self.history_length <= MAX_HISTORY_LENGTH:
            raise ValueError(f"history_length must be within 1..{MAX_HISTORY_LENGTH}, got {self.history_length}")
        minimum = minimum_timeline_length(self.split)
        if self.min_timeline_length is None:
            object.__setattr__(self, "min_timeline_length", minimum)
        if self.stride is None:
            object.__setattr__(self, "stride", 1)
        if self.min_timeline_length < minimum:
            raise ValueError(f"min_timeline_length must be at least {minimum} for the {self.split} split")
        if self.stride < 1 or self.max_examples_per_user < 0 or self.genres_per_movie < 1:
            raise ValueError("stride and genres_per_movie must be >= 1, max_examples_per_user >= 0")
        if not 0 < self.test_fraction < 1 or not 0 < self.eval_fraction < 1 \
                or self.eval_fraction + self.test_fraction >= 1:
            raise ValueError("temporal fractions must be in (0, 1) and sum to less than 1")
        if self.split == TEMPORAL and self.eval_start is not None and self.test_start is not None \
                and self.eval_start > self.test_start:
            raise ValueError("eval_start must not be later than test_start")


_MASK32 = 0xFFFFFFFF


def tie_break(user_id, movie_id):
    """Order of events within one second: a 32-bit hash of (user, movie) (MurmurHash3's finaliser).

    Works on Python ints and, elementwise, on numpy integer arrays (the vectorised benchmark windowing), with
    identical results."""
    h = ((user_id & _MASK32) * 0x9E3779B1 + (movie_id & _MASK32)) & _MASK32
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK32
    return h ^ (h >> 16)


def sort_timeline(events: Iterable[Event], min_rating: float = 0.0) -> List[Event]:
    """The user's events by timestamp (ties by ``tie_break``), below ``min_rating`` dropped; a movie rated again
    (a duplicate row or a re-rating) keeps only its first rating, so a history never contains its own target."""
    seen, timeline = set(), []
    for event in sorted((e for e in events if e.rating >= min_rating),
                        key=lambda e: (e.timestamp, tie_break(e.user_id, e.movie_id))):
        if event.movie_id not in seen:
            seen.add(event.movie_id)
            timeline.append(event)
    return timeline


def _pad(values: Sequence, length: int, pad) -> list:
    values = list(values)[:length]
    return values + [pad] * (length - len(values))


class _Columns:
    """A sorted timeline as per-field lists, so each example is a few slices (no per-item work)."""

    def __init__(self, timeline: Sequence[Event], options: WindowingOptions, genre_index: Mapping[str, int]):
        g = options.genres_per_movie
        self.movie_ids = [e.movie_id for e in timeline]
        self.ratings = [float(e.rating) for e in timeline]
        self.years = [e.year for e in timeline]
        self.genres = [_pad([genre_index.get(x, 0) for x in e.genres], g, 0) for e in timeline]
        self.timeline, self.n, self.g = timeline, options.history_length, g

    def example(self, position: int, with_seen: bool) -> dict:
        n, start = self.n, max(0, position - self.n)
        missing = n - (position - start)
        ids = self.movie_ids[start:position][::-1]
        genres = [genre for row in self.genres[start:position][::-1] for genre in row]
        target = self.timeline[position]
        example = {
            features.USER_ID: target.user_id,
            features.CONTEXT_MOVIE_ID: ids + [features.PADDING_ID] * missing,
            features.CONTEXT_MOVIE_GENRE: genres + [0] * (missing * self.g),
            features.CONTEXT_MOVIE_RATING: self.ratings[start:position][::-1] + [0.0] * missing,
            features.CONTEXT_MOVIE_YEAR: self.years[start:position][::-1] + [0] * missing,
            features.CONTEXT_LENGTH: position - start,
            features.LABEL_MOVIE_ID: target.movie_id,
            features.LABEL_TIMESTAMP: target.timestamp,
        }
        if with_seen:
            example[features.SEEN_MOVIE_IDS] = self.movie_ids[:position]
        return example


def assign_splits(timeline: Sequence[Event], options: WindowingOptions) -> List[Tuple[int, str]]:
    """``(position, split)`` for every target position of a sorted timeline, after stride and cap."""
    if len(timeline) < options.min_timeline_length:
        return []
    last = len(timeline) - 1
    if options.split == LEAVE_LAST_OUT:
        labelled = [(p, "train") for p in range(1, last - 1)] + [(last - 1, "eval"), (last, "test")]
    else:
        if options.eval_start is None or options.test_start is None:
            raise ValueError("the temporal split needs eval_start and test_start")

        def period(ts):
            return "test" if ts >= options.test_start else "eval" if ts >= options.eval_start else "train"
        labelled = [(p, period(timeline[p].timestamp)) for p in range(1, last + 1)]
    train = [p for p, s in labelled if s == "train"]
    kept = train[::-1][::options.stride][::-1]
    if options.max_examples_per_user:
        kept = kept[-options.max_examples_per_user:]
    kept_set = set(kept)
    return [(p, s) for p, s in labelled if s != "train" or p in kept_set]


def window_timeline(events: Iterable[Event], options: WindowingOptions,
                    genre_index: Optional[Mapping[str, int]] = None) -> Iterator[Tuple[str, dict]]:
    """Yields ``(split, example)`` for one user's events (any order)."""
    timeline = sort_timeline(events, options.min_rating)
    positions = assign_splits(timeline, options)
    if positions:
        columns = _Columns(timeline, options, genre_index or {})
        for position, split in positions:
            yield split, columns.example(position, split != "train")


def training_events(events: Iterable[Event], options: WindowingOptions) -> List[Event]:
    """The events a vocabulary may count: those before every eval / test target of the user."""
    timeline = sort_timeline(events, options.min_rating)
    if len(timeline) < options.min_timeline_length:
        return []
    if options.split == LEAVE_LAST_OUT:
        return timeline[:-2]
    return [e for e in timeline if e.timestamp < options.eval_start]


def genre_index(genre_names: Iterable[str]) -> dict:
    """Genre name -> id, 1-based in sorted order (0 is padding)."""
    return {name: i for i, name in enumerate(sorted(set(genre_names)), start=1)}


def temporal_cuts(day_counts: Mapping[int, int], eval_fraction: float, test_fraction: float
                  ) -> Tuple[int, int]:
    """Day-aligned (UTC) eval and test start timestamps so that roughly the last ``test_fraction`` of events
    fall in test and the ``eval_fraction`` before them in eval. ``day_counts`` maps day number -> events."""
    if not 0 < test_fraction < 1 or not 0 < eval_fraction < 1 or eval_fraction + test_fraction >= 1:
        raise ValueError("temporal fractions must be in (0, 1) and sum to less than 1")
    total = sum(day_counts.values())
    days = sorted(day_counts)
    if len(days) < 3:
        raise ValueError("the temporal split needs events on at least 3 different days")

    def start_of_tail(fraction):
        tail = 0
        for day in reversed(days):
            tail += day_counts[day]
            if tail >= fraction * total - 1e-9:
                return day
        return days[0]
    test_day = max(start_of_tail(test_fraction), days[2])
    eval_day = min(max(start_of_tail(test_fraction + eval_fraction), days[1]), test_day - 1)
    return eval_day * 86400, test_day * 86400
