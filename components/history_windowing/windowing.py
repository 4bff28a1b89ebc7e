"""Turns one user's events into (history -> next item) examples, split without leaking the future.

Ordering: a user's events are sorted by timestamp, then by milliseconds where the log has them (a log without
timestamps gets its input order as the timestamp, see ``data/events.py``). Equal timestamps (MovieLens records
seconds, and 44 % of ML-100K users' last two ratings share one) are ordered by ``tie_break(user, item)``, a fixed
hash of the keys: the order is deterministic whatever order the files had, yet unrelated to the item id. Ordering
ties by movie id made every same-second burst ascend in id, and as MovieLens ids grow with the date a movie was
added, the held-out last rating became systematically the newest, rarest movie of its burst.

Splits (``WindowingOptions.split``):

* ``leave-last-out`` (default): the last event is the test target, the second to last the eval target,
  every earlier position (from the second event on) a train target.
* ``temporal``: a global time cut. Targets at or after ``test_start`` are test, at or after ``eval_start``
  eval, earlier ones train. Every user's history is used as context whatever its period.

Either way a train label is never later than its user's eval or test targets and training never sees those
targets. Eval and test examples use all earlier events as context, as a deployed model would.

Padding: context lists are right-padded (``PADDING_KEY``; rating 0.0) after the ``context_length`` real
entries, which are ordered most recent first.

Vocabulary accounting: the training events (``training_events``: a user's events before every eval / test
target, for users with a train example) are counted per item, and each counted item becomes one record of the
``items`` split (``vocabulary_record``): its key weighted by that count, and its facts. tf.Transform analyses
that split only, so the vocabularies count each training event once while each item's facts are read once, not
once per event.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from ondevice_rec.modules import features
from ondevice_rec.modules.config import MAX_HISTORY_LENGTH, JsonFields, setting

LEAVE_LAST_OUT = "leave-last-out"
TEMPORAL = "temporal"
SPLIT_MODES = (LEAVE_LAST_OUT, TEMPORAL)


@dataclasses.dataclass(frozen=True)
class Event:
    user_id: str
    item: str
    timestamp: int
    rating: float = 0.0
    millis: int = 0  # past the second (unix_ms and ISO-8601 logs), before the tie-break


def minimum_timeline_length(split: str) -> int:
    """The fewest events a user needs to give examples: a train, an eval and a test target for
    leave-last-out; a context and a target for the temporal split."""
    return 3 if split == LEAVE_LAST_OUT else 2


@dataclasses.dataclass(frozen=True)
class WindowingOptions(JsonFields):
    """How events become examples. Crosses the TFX boundary as one JSON execution parameter (``to_json``).

    ``history_length`` and ``earlier_length`` are not knobs of their own: ``PipelineConfig`` sets them from
    ``ModelConfig.history_length`` and ``ModelConfig.personal_history``.
    """

    KIND = "windowing options"

    history_length: int = setting(10, "", flag=False)
    earlier_length: int = setting(0, "", flag=False)  # EARLIER_ITEM's length (0: not written)
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
        if self.earlier_length < 0:
            raise ValueError(f"earlier_length must be >= 0, got {self.earlier_length}")
        minimum = minimum_timeline_length(self.split)
        if self.min_timeline_length is None:
            object.__setattr__(self, "min_timeline_length", minimum)
        if self.stride is None:
            object.__setattr__(self, "stride", 1)
        if self.min_timeline_length < minimum:
            raise ValueError(f"min_timeline_length must be at least {minimum} for the {self.split} split")
        if self.stride < 1 or self.max_examples_per_user < 0:
            raise ValueError("stride must be >= 1, max_examples_per_user >= 0")
        if not 0 < self.test_fraction < 1 or not 0 < self.eval_fraction < 1 \
                or self.eval_fraction + self.test_fraction >= 1:
            raise ValueError("temporal fractions must be in (0, 1) and sum to less than 1")
        if self.split == TEMPORAL and self.eval_start is not None and self.test_start is not None \
                and self.eval_start > self.test_start:
            raise ValueError("eval_start must not be later than test_start")


def tie_break(user_id: str, item: str) -> int:
    """Order of events within one second: a 32-bit BLAKE2b hash of the two keys. (CRC-32, being linear, gave
    two users of a 20-item burst the same order in 50.)"""
    return int.from_bytes(hashlib.blake2b(f"{user_id}\x1f{item}".encode("utf-8"), digest_size=4).digest(), "big")


def sort_timeline(events: Iterable[Event], min_rating: float = 0.0) -> List[Event]:
    """The user's events by timestamp and milliseconds (ties by ``tie_break``), below ``min_rating`` dropped; an
    item seen again (a duplicate row, a re-rating, a second purchase) keeps only its first event, so a history
    never contains its own target."""
    seen, timeline = set(), []
    for event in sorted((e for e in events if e.rating >= min_rating),
                        key=lambda e: (e.timestamp, e.millis, tie_break(e.user_id, e.item))):
        if event.item not in seen:
            seen.add(event.item)
            timeline.append(event)
    return timeline


class _Columns:
    """A sorted timeline as per-field lists, so each example is a few slices (no per-item work)."""

    def __init__(self, timeline: Sequence[Event], options: WindowingOptions):
        self.items = [e.item for e in timeline]
        self.ratings = [float(e.rating) for e in timeline]
        self.timeline, self.n, self.m = timeline, options.history_length, options.earlier_length

    def example(self, position: int, with_seen: bool, user_train_examples: int = 0) -> dict:
        n, start = self.n, max(0, position - self.n)
        missing = n - (position - start)
        target = self.timeline[position]
        return {
            features.USER_ID: target.user_id,
            features.CONTEXT_ITEM: self.items[start:position][::-1] + [features.PADDING_KEY] * missing,
            features.CONTEXT_RATING: self.ratings[start:position][::-1] + [0.0] * missing,
            features.CONTEXT_LENGTH: position - start,
            features.LABEL_ITEM: target.item,
            features.LABEL_TIMESTAMP: target.timestamp,
            features.LABEL_COLUMN: 0,
            features.USER_TRAIN_EXAMPLES: 0 if with_seen else user_train_examples,
            features.SEEN_ITEMS: self.items[:position] if with_seen else [],
            **self.earlier(start),
        }

    def earlier(self, start: int) -> dict:
        """``EARLIER_ITEM``: the items before ``start`` (the context's oldest), most recent first, padded."""
        if not self.m:
            return {}
        older = self.items[max(0, start - self.m):start][::-1]
        return {features.EARLIER_ITEM: older + [features.PADDING_KEY] * (self.m - len(older))}


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


@dataclasses.dataclass
class UserWindows:
    """One user's windowing: ``(split, example)`` pairs, the items its training events count for the
    vocabulary (``training_events``: none when the user has no train example), and its kept timeline length."""

    examples: List[Tuple[str, dict]]
    counted_items: List[str]
    timeline_length: int


def window_user(events: Iterable[Event], options: WindowingOptions) -> UserWindows:
    """One user's events (any order) -> ``UserWindows``."""
    timeline = sort_timeline(events, options.min_rating)
    positions = assign_splits(timeline, options)
    if not positions:
        return UserWindows([], [], len(timeline))
    columns = _Columns(timeline, options)
    train_examples = sum(split == "train" for _, split in positions)
    examples = [(split, columns.example(position, split != "train", train_examples))
                for position, split in positions]
    counted = [timeline[p].item for p in training_positions(timeline, options)] if train_examples else []
    return UserWindows(examples, counted, len(timeline))


def window_timeline(events: Iterable[Event], options: WindowingOptions) -> Iterator[Tuple[str, dict]]:
    """Yields ``(split, example)`` for one user's events (any order)."""
    yield from window_user(events, options).examples


def vocabulary_record(item: str, count: int, facts: Sequence[str], numeric: Sequence[Tuple[str, float]],
                      history_length: int, earlier_length: int = 0) -> dict:
    """The ``items`` split's record of one training item: its key weighted by its training events, its facts
    ("key\tkind\tvalue") and numeric values; the windowed examples' fixed-length features padded (the split
    shares their schema, and is analysed, never transformed)."""
    return {
        features.USER_ID: features.PADDING_KEY,
        features.CONTEXT_ITEM: [features.PADDING_KEY] * history_length,
        features.CONTEXT_RATING: [0.0] * history_length,
        features.CONTEXT_LENGTH: 0,
        features.LABEL_ITEM: features.PADDING_KEY,
        features.LABEL_TIMESTAMP: 0,
        features.LABEL_COLUMN: 0,
        features.USER_TRAIN_EXAMPLES: 0,
        features.VOCAB_ITEMS: [item],
        features.VOCAB_WEIGHT: [count],
        features.ITEM_FACTS: [f"{item}{features.FACT_SEPARATOR}{fact}" for fact in facts],
        **{features.VOCAB_NUMERIC_PREFIX + name: [value] for name, value in numeric},
        **({features.EARLIER_ITEM: [features.PADDING_KEY] * earlier_length} if earlier_length else {}),
    }


def training_positions(timeline: Sequence[Event], options: WindowingOptions) -> List[int]:
    """Positions of the events a vocabulary may count: those before every eval / test target of the user."""
    if len(timeline) < options.min_timeline_length:
        return []
    if options.split == LEAVE_LAST_OUT:
        return list(range(len(timeline) - 2))
    return [p for p, e in enumerate(timeline) if e.timestamp < options.eval_start]


def training_events(events: Iterable[Event], options: WindowingOptions) -> List[Event]:
    """The events a vocabulary may count: those before every eval / test target of the user."""
    timeline = sort_timeline(events, options.min_rating)
    return [timeline[p] for p in training_positions(timeline, options)]


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
