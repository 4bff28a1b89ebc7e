"""The synthetic generator: deterministic, real formats, and sequential structure worth learning."""

import collections

import numpy as np
import pytest

from ondevice_rec.data import movielens, synthetic

CONFIG = synthetic.SyntheticConfig(users=80, items=100, mean_ratings_per_user=25, seed=3)


def test_same_seed_same_data_other_seed_other_data():
    a, b = synthetic.generate(CONFIG), synthetic.generate(CONFIG)
    c = synthetic.generate(synthetic.SyntheticConfig(**{**CONFIG.__dict__, "seed": 4}))
    for field in ("user_id", "movie_id", "rating", "timestamp"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.movie_id, c.movie_id)


def test_timelines_are_plausible_movielens():
    data = synthetic.generate(CONFIG)
    for user, movies in synthetic.timelines(data).items():
        assert len(movies) == len(set(movies)), "a movie is rated at most once per user"
        assert len(movies) >= CONFIG.min_ratings_per_user
    for user in np.unique(data.user_id):
        stamps = data.timestamp[data.user_id == user]
        assert np.all(np.diff(stamps) >= 0)
    assert set(np.unique(data.rating)) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def test_next_movie_is_predictable_from_the_previous_one():
    """The most common successor of a movie predicts the next one far better than the most popular movie."""
    data = synthetic.generate(synthetic.SyntheticConfig(users=400, items=100, seed=1))
    pairs = [(a, b) for movies in synthetic.timelines(data).values() for a, b in zip(movies, movies[1:])]
    half = len(pairs) // 2
    successors = collections.defaultdict(collections.Counter)
    for a, b in pairs[:half]:
        successors[a][b] += 1
    popular = collections.Counter(b for _, b in pairs[:half]).most_common(1)[0][0]
    markov = np.mean([successors[a].most_common(1)[0][0] == b for a, b in pairs[half:] if successors[a]])
    popularity = np.mean([popular == b for _, b in pairs[half:]])
    assert markov > 5 * popularity


@pytest.mark.parametrize("fmt", sorted(movielens.FORMATS))
def test_written_files_read_back_identically(tmp_path, fmt):
    data = synthetic.generate(CONFIG)
    synthetic.write(data, str(tmp_path), fmt)
    assert movielens.detect_format(str(tmp_path)).name == fmt
    ratings = list(movielens.read_ratings(str(tmp_path)))
    assert len(ratings) == len(data.user_id)
    got = sorted((r.user_id, r.timestamp, r.movie_id) for r in ratings)
    expected = sorted(zip(data.user_id.tolist(), data.timestamp.tolist(), data.movie_id.tolist()))
    assert got == expected
    movies = movielens.read_movies(str(tmp_path))
    assert {m: (v.title, v.year) for m, v in movies.items()} == \
           {m: (v.title, v.year) for m, v in data.movies.items()}
    assert any("," in m.title for m in movies.values()) and any("é" in m.title for m in movies.values())
