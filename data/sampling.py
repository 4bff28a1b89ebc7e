"""A uniform sample of a stream of unknown length in one pass (what StatisticsGen reads on a large log).

``Reservoir`` keeps ``size`` items such that every item of the stream is in it with the same probability
(Li's "Algorithm L": the number of items to skip before the next replacement is drawn at once, so an item that
is skipped costs one integer comparison, not a random draw). Seeded, so a re-run keeps the same sample.
"""

from __future__ import annotations

import math
import random
from typing import Generic, List, TypeVar

T = TypeVar("T")


class Reservoir(Generic[T]):
    """``add`` every item of a stream; ``items`` is then a uniform sample of ``min(size, seen)`` of them
    (the whole stream when it had no more than ``size``)."""

    def __init__(self, size: int, seed: int = 0):
        if size < 0:
            raise ValueError(f"a reservoir holds 0 or more items, got {size}")
        self.size, self.seen = size, 0
        self.items: List[T] = []
        self._random = random.Random(seed)
        self._weight = 1.0
        self._next = size  # the 0-based index of the next item taken once the first `size` filled it
        if size:
            self._advance()
            self._next += self._skip()

    def _draw(self) -> float:
        return self._random.random() or 1e-300  # never log(0)

    def _advance(self) -> None:
        self._weight *= math.exp(math.log(self._draw()) / self.size)

    def _skip(self) -> int:
        if self._weight >= 1.0:
            return 0
        return int(math.floor(math.log(self._draw()) / math.log1p(-self._weight)))

    def add(self, item: T) -> None:
        index, self.seen = self.seen, self.seen + 1
        if index < self.size:
            self.items.append(item)
        elif index == self._next and self.size:
            self.items[self._random.randrange(self.size)] = item
            self._advance()
            self._next = index + 1 + self._skip()
