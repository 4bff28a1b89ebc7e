"""The successor table: pairs counted once per event, top successors by count, packing."""

import numpy as np
import pytest

from ondevice_rec.modules import successors


def test_pairs_of_overlapping_windows_count_each_event_pair_once():
    # One user's events 1..9 as the windowing makes its train windows with N=4 at stride 2 (8 and 9 are the
    # eval and test targets; train targets every 2nd counted back from 7; contexts most recent first): each
    # training pair (k, k + 1) exactly once.
    context = np.array([[2, 1, 0, 0], [4, 3, 2, 1], [6, 5, 4, 3]])
    labels = np.array([3, 5, 7])
    previous, following = successors.training_pairs(context, labels, stride=2)
    assert sorted(zip(previous.tolist(), following.tolist())) == [(k, k + 1) for k in range(1, 7)]


def test_pairs_skip_padding_and_unknown_items():
    previous, following = successors.training_pairs(np.array([[3, 0, 2, 0]]), np.array([4]), stride=4)
    assert list(zip(previous.tolist(), following.tolist())) == [(3, 4)]  # 0 (unknown) breaks the chain


def test_table_keeps_the_most_frequent_successors_most_frequent_first():
    pairs = [(np.array([1, 1, 1, 1, 1, 1, 2]), np.array([3, 3, 3, 4, 4, 5, 1]))]
    table = successors.successor_table(pairs, vocabulary_size=6, successors=2)
    index, count = successors.unpack(table)
    assert table.shape == (6, 2) and table.dtype == np.int32
    assert index[1].tolist() == [3, 4] and count[1].tolist() == [3, 2]  # 5 (once) dropped
    assert index[2].tolist() == [1, 0] and count[2].tolist() == [1, 0]  # one successor, then empty
    assert not table[0].any() and not table[3:].any()


def test_counts_are_capped_and_ties_go_to_the_lower_index():
    pairs = [(np.full(300, 1), np.full(300, 2)), (np.array([3, 3]), np.array([5, 4]))]
    index, count = successors.unpack(successors.successor_table(pairs, 6, 2))
    assert count[1, 0] == successors.COUNT_CAP
    assert index[3].tolist() == [4, 5]


@pytest.mark.parametrize("width", [1, 3])
def test_an_empty_log_gives_an_empty_table(width):
    assert not successors.successor_table([], 4, width).any()


def test_a_catalogue_too_large_to_pack_is_refused_not_wrapped():
    with pytest.raises(ValueError, match="successors=0"):
        successors.successor_table([], 20_000_000, 4)


def test_latest_pairs_are_each_held_out_example_s_transition_into_its_target():
    context = np.array([[8, 7, 6], [0, 0, 0], [5, 0, 0]])  # most recent first; a user without history
    previous, following = successors.latest_pairs(context, np.array([9, 4, 0]))  # 0: a target outside training
    assert list(zip(previous.tolist(), following.tolist())) == [(8, 9)]
