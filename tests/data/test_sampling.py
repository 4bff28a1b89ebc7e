"""The reservoir's sample is uniform over a stream of unknown length, and whole when the stream is short."""

import collections

import pytest

from ondevice_rec.data.sampling import Reservoir


def _sample(n, size, seed):
    reservoir = Reservoir(size, seed)
    for i in range(n):
        reservoir.add(i)
    return reservoir


def test_a_short_stream_is_kept_whole_in_order():
    reservoir = _sample(70, 100, seed=3)
    assert reservoir.items == list(range(70)) and reservoir.seen == 70
    assert _sample(100, 100, seed=3).items == list(range(100))
    assert _sample(5, 0, seed=3).items == []


def test_every_item_is_equally_likely_to_be_kept():
    n, size, runs = 2000, 50, 400
    kept = collections.Counter()
    for seed in range(runs):
        sample = _sample(n, size, seed).items
        assert len(sample) == size == len(set(sample))
        kept.update(i * 10 // n for i in sample)  # by tenth of the stream
    expected = runs * size / 10  # 2,000 per tenth
    # Binomial spread ~ 42: every tenth within 5 standard deviations (the first tenth is the filling, the
    # last the longest skips, where an off-by-one in the skips would show).
    assert all(abs(kept[t] - expected) < 220 for t in range(10)), kept


def test_the_same_seed_gives_the_same_sample():
    assert _sample(10_000, 30, seed=7).items == _sample(10_000, 30, seed=7).items
    assert _sample(10_000, 30, seed=7).items != _sample(10_000, 30, seed=8).items
    with pytest.raises(ValueError):
        Reservoir(-1)
