"""Synthetic activity logs with learnable sequential structure, written in the MovieLens file formats, as an
e-commerce log (JSON Lines, string SKUs, event types, millisecond timestamps, one file gzipped, a catalogue
CSV and its event spec) or as a plain ``user,item`` CSV with no timestamp and no items file.

How a user's timeline is drawn (deterministic for a given seed):

* movies are grouped into genre clusters; each movie has a few fixed "successor" movies in its cluster;
* a user starts in a random cluster; after each movie, with probability ``follow`` the next movie is one of the
  current movie's successors (a Markov chain over movies), otherwise a popular (Zipf) movie of the current
  cluster, and with probability ``switch`` the user first drifts to another cluster;
* a movie is rated at most once per user, timestamps increase (some ratings share a second, as in MovieLens).

Named ``SHAPES`` give other kinds of log: short sessions (3-15 events) over catalogues of thousands to tens of
thousands of items with a long-tailed popularity (clusters themselves Zipf-popular), written as a plain
``user,item`` log in event order (no timestamps), optionally with an item-category file.

A model that reads the recent history can therefore beat a popularity ranking by a wide margin, which is what
the tests assert.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import gzip
import json
import os
from typing import Dict, List

import numpy as np

from . import movielens
from .event_spec import SPEC_FILE

GENRES = ML1M_GENRES = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
# Title fragments that exercise the parsers: latin-1 accents, commas, parentheses.
_TITLE_WORDS = ("Night", "River", "Café", "Return", "Garden", "Storm", "Señor", "Letters", "Crème", "Voyage",
                "Mirror", "Empire", "Déjà Vu", "Harbor", "Winter", "Zoë")


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    users: int = 200
    items: int = 300
    mean_ratings_per_user: int = 40
    min_ratings_per_user: int = 5
    clusters: int = 8
    successors: int = 3
    follow: float = 0.7
    switch: float = 0.1
    seed: int = 0
    max_ratings_per_user: int = 0  # 0: half the catalogue
    # Zipf exponent of the clusters' popularity (0: every cluster as likely); with it the catalogue's popularity
    # has a long tail across clusters, not only inside each.
    cluster_popularity: float = 0.0


@dataclasses.dataclass(frozen=True)
class Shape:
    """A named kind of log: the generator's settings, the layout it is written in, and whether the plain
    layout gets an item-category file."""

    config: SyntheticConfig
    fmt: str
    categories: bool = False
    about: str = ""


@dataclasses.dataclass
class SyntheticData:
    """Ratings as parallel numpy arrays (sorted by user, then time) plus the movie table."""

    user_id: np.ndarray
    movie_id: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    movies: Dict[int, movielens.Movie]


def generate(config: SyntheticConfig) -> SyntheticData:
    """Draws a dataset; the same config always gives the same arrays."""
    if config.items < config.clusters * (config.successors + 1):
        raise ValueError(f"need at least {config.clusters * (config.successors + 1)} items for "
                         f"{config.clusters} clusters with {config.successors} successors each")
    rng = np.random.default_rng(config.seed)
    movie_ids = np.arange(1, config.items + 1)
    cluster_of = rng.integers(0, config.clusters, size=config.items)
    cluster_of[:config.clusters] = np.arange(config.clusters)  # every cluster has members
    members = [movie_ids[cluster_of == c] for c in range(config.clusters)]
    # Zipf-like popularity inside each cluster.
    popularity = [1.0 / np.arange(1, len(m) + 1) ** 0.8 for m in members]
    popularity = [p / p.sum() for p in popularity]
    successors = {}
    for c, m in enumerate(members):
        for movie in m:
            others = m[m != movie]
            successors[int(movie)] = rng.choice(others, size=min(config.successors, len(others)), replace=False)
    follow_weights = np.array([0.6, 0.3, 0.1][:config.successors] + [0.05] * max(0, config.successors - 3))
    follow_weights /= follow_weights.sum()
    quality = rng.normal(3.6, 0.6, size=config.items + 1)

    cumulative = [np.cumsum(p).tolist() for p in popularity]
    follow_cumulative = np.cumsum(follow_weights).tolist()
    member_lists = [m.tolist() for m in members]
    successor_lists = {k: v.tolist() for k, v in successors.items()}
    lengths = np.maximum(config.min_ratings_per_user,
                         rng.geometric(1.0 / max(1, config.mean_ratings_per_user - config.min_ratings_per_user + 1),
                                       size=config.users) + config.min_ratings_per_user - 1)
    lengths = np.minimum(lengths, config.max_ratings_per_user or config.items // 2)
    start_times = rng.integers(946_684_800, 1_041_379_200, size=config.users)  # 2000-01-01 .. 2003-01-01
    total = int(lengths.sum())
    users = np.repeat(np.arange(1, config.users + 1), lengths)
    movies_out = np.zeros(total, np.int64)
    stamps = np.zeros(total, np.int64)
    draws = rng.random((total, 5 + 8)).tolist()  # decisions, then up to 8 popularity draws per step
    if config.cluster_popularity:
        cluster_weights = 1.0 / np.arange(1, config.clusters + 1) ** config.cluster_popularity
        new_cluster = rng.choice(config.clusters, size=total, p=cluster_weights / cluster_weights.sum()).tolist()
    else:  # (the draws of every dataset generated before cluster_popularity existed)
        new_cluster = rng.integers(0, config.clusters, size=total).tolist()
    position = 0
    for user in range(config.users):
        cluster = new_cluster[position]
        seen = set()
        current = 0
        t = int(start_times[user])
        for step in range(int(lengths[user])):
            u = draws[position]
            if step and u[0] < config.switch:
                cluster = new_cluster[position]
            nxt = 0
            if current and u[1] < config.follow:
                options = successor_lists[current]
                pick = options[min(bisect.bisect_left(follow_cumulative, u[2]), len(options) - 1)]
                if pick not in seen:
                    nxt = pick
            if not nxt:
                for draw in u[5:]:
                    pick = member_lists[cluster][min(bisect.bisect_left(cumulative[cluster], draw),
                                                     len(member_lists[cluster]) - 1)]
                    if pick not in seen:
                        nxt = pick
                        break
            if not nxt:
                unseen = movie_ids[~np.isin(movie_ids, list(seen))]
                nxt = int(unseen[int(u[4] * len(unseen))])
            seen.add(nxt)
            current = nxt
            t += 0 if u[3] < 0.1 else int(60 + u[3] * 7200)
            movies_out[position] = nxt
            stamps[position] = t
            position += 1
    ratings = np.clip(np.rint(quality[movies_out] + rng.normal(0, 0.7, size=total)), 1, 5).astype(np.float32)
    movies = {}
    for i, movie in enumerate(movie_ids):
        c = int(cluster_of[i])
        genres = (GENRES[c % len(GENRES)],) + ((GENRES[(c + 5) % len(GENRES)],) if i % 3 == 0 else ())
        word = _TITLE_WORDS[i % len(_TITLE_WORDS)]
        title = f"{word} {movie}, The" if i % 5 == 0 else f"{word} of Cluster {c} No. {movie}"
        movies[int(movie)] = movielens.Movie(int(movie), title, genres, 1950 + (i * 7) % 50)
    return SyntheticData(users.astype(np.int64), movies_out, ratings, stamps, movies)


ECOMMERCE, PLAIN = "ecommerce", "plain"
# make-synthetic --format: the MovieLens layouts and the two generic logs.
FORMATS = tuple(sorted(movielens.FORMATS)) + (ECOMMERCE, PLAIN)
EVENT_TYPES = ("view", "cart", "purchase")
_BRANDS = ("Acme", "Borealis", "Cobalt", "Dunmore", "Elara", "Fjord")


def sparse_id(movie_id: int, items: int) -> int:
    """Item ids spread evenly up to 10^9 (a catalogue of 10-digit-like ids; ``--sparse-ids``)."""
    return int(movie_id) * (10 ** 9 // max(1, items))


def write(data: SyntheticData, out_dir: str, fmt: str, seed: int = 0, sparse_ids: bool = False,
          categories: bool = False) -> str:
    """Writes ``data`` in layout ``fmt`` (one of ``FORMATS``) and returns ``out_dir``. ``sparse_ids``: item ids
    spread up to 10^9 instead of 1..items (MovieLens layouts and the plain log); ``categories``: the plain log
    with an item-category file.

    MovieLens rows are shuffled (deterministically) as in the real files, which are not sorted by time.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    os.makedirs(out_dir, exist_ok=True)
    if fmt == ECOMMERCE:
        return _write_ecommerce(data, out_dir, seed)
    movie_ids = data.movie_id
    if sparse_ids:
        items = max(data.movies)
        movie_ids = np.array([sparse_id(m, items) for m in data.movie_id.tolist()], np.int64)
        data = dataclasses.replace(data, movie_id=movie_ids, movies={
            sparse_id(k, items): dataclasses.replace(m, movie_id=sparse_id(k, items)) for k, m in data.movies.items()})
    if fmt == PLAIN:
        return _write_plain(data, out_dir, categories)
    order = np.random.default_rng(seed + 1).permutation(len(data.user_id))
    rows = zip(data.user_id[order], data.movie_id[order], data.rating[order], data.timestamp[order])
    layout = movielens.FORMATS[fmt]
    if fmt == "ml-1m":
        with open(layout.ratings_path(out_dir), "w", encoding="latin-1", newline="\n") as f:
            f.writelines(f"{u}::{m}::{int(r)}::{t}\n" for u, m, r, t in rows)
        with open(layout.movies_path(out_dir), "w", encoding="latin-1", newline="\n") as f:
            for movie in data.movies.values():
                f.write(f"{movie.movie_id}::{movie.title} ({movie.year})::{'|'.join(movie.genres)}\n")
    elif fmt == "ml-100k":
        with open(layout.ratings_path(out_dir), "w", encoding="latin-1", newline="\n") as f:
            f.writelines(f"{u}\t{m}\t{int(r)}\t{t}\n" for u, m, r, t in rows)
        with open(os.path.join(out_dir, "u.genre"), "w", encoding="latin-1", newline="\n") as f:
            f.writelines(f"{name}|{i}\n" for i, name in enumerate(movielens.ML100K_GENRES))
            f.write("\n")
        with open(layout.movies_path(out_dir), "w", encoding="latin-1", newline="\n") as f:
            for movie in data.movies.values():
                flags = "|".join("1" if g in movie.genres else "0" for g in movielens.ML100K_GENRES)
                url = f"http://us.imdb.com/M/title-exact?{movie.title.replace(' ', '%20')}"
                f.write(f"{movie.movie_id}|{movie.title} ({movie.year})|01-Jan-{movie.year}||{url}|{flags}\n")
    else:
        with open(layout.ratings_path(out_dir), "w", encoding="utf-8", newline="") as f:
            f.write("userId,movieId,rating,timestamp\n")
            # ML-latest uses half stars; shift some ratings by half a star, keeping them within 0.5..5.
            f.writelines(f"{u},{m},{_half_star(r, m)},{t}\n" for u, m, r, t in rows)
        with open(layout.movies_path(out_dir), "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["movieId", "title", "genres"])
            for movie in data.movies.values():
                genres = "|".join(g.replace("Children's", "Children") for g in movie.genres)
                writer.writerow([movie.movie_id, f"{movie.title} ({movie.year})", genres or "(no genres listed)"])
    return out_dir


def _time_order(data: SyntheticData) -> np.ndarray:
    return np.lexsort((np.arange(len(data.timestamp)), data.timestamp))


def _write_plain(data: SyntheticData, out_dir: str, categories: bool = False) -> str:
    """``events.csv``: ``user,item`` rows in time order (users interleaved), no timestamp; with ``categories``
    an ``items.csv`` (item, category: its first genre) that the spec names, otherwise no items file."""
    with open(os.path.join(out_dir, "events.csv"), "w", encoding="utf-8", newline="") as f:
        f.write("user,item\n")
        f.writelines(f"{data.user_id[i]},{data.movie_id[i]}\n" for i in _time_order(data).tolist())
    spec = {"events": "events.csv", "user": "user", "item": "item"}
    if categories:
        with open(os.path.join(out_dir, "items.csv"), "w", encoding="utf-8", newline="") as f:
            f.write("item,category\n")
            f.writelines(f"{m.movie_id},{m.genres[0]}\n" for m in data.movies.values())
        spec["items"] = {"path": "items.csv", "key": "item", "categorical": {"category": {"column": "category"}}}
    with open(os.path.join(out_dir, SPEC_FILE), "w", encoding="utf-8") as f:
        json.dump(spec, f, indent=1)
    return out_dir


# Logs shaped like short-session e-commerce data, their successor structure weaker than the movie default's
# (what the baselines reach on them: docs/results.md, "Figures behind code comments").
# large-catalogue: ~355K events of 44K users on ~61K of 80K items, ~55K of them in the training events (the
# top 1 % of items a quarter of the events, the median item 2 events), the size of the held-out shop log of
# issue 22 (40K users, 55K items, 350K events, 9 events a user, order only).
SHAPES = {
    "short-sessions": Shape(SyntheticConfig(users=20_000, items=8_000, mean_ratings_per_user=8,
                                            min_ratings_per_user=3, max_ratings_per_user=15, clusters=100,
                                            successors=5, follow=0.25, switch=0.15, cluster_popularity=1.0),
                            PLAIN, categories=True,
                            about="~150K events: 20K users, 8K items, 3-15 events each, order only, a category"),
    "large-catalogue": Shape(SyntheticConfig(users=44_000, items=80_000, mean_ratings_per_user=9,
                                             min_ratings_per_user=3, max_ratings_per_user=15, clusters=600,
                                             successors=6, follow=0.2, switch=0.15, cluster_popularity=0.8),
                             PLAIN, about="~355K events: 44K users, ~61K items (~55K trained), 3-15 events "
                                         "each, order only"),
}


def write_shape(name: str, out_dir: str, seed: int = 0) -> str:
    """Generates and writes the named shape (``SHAPES``) with ``seed``; returns ``out_dir``."""
    if name not in SHAPES:
        raise ValueError(f"unknown synthetic shape {name!r}; choose one of {', '.join(SHAPES)}")
    shape = SHAPES[name]
    data = generate(dataclasses.replace(shape.config, seed=seed))
    return write(data, out_dir, shape.fmt, seed=seed, categories=shape.categories)


def sku(movie_id: int) -> str:
    return f"B0{int(movie_id) * 7919 % 10_000_000:07d}X"


def customer(user_id: int) -> str:
    return f"cust-{int(user_id) * 48271 % 1_000_003:06x}"


def _write_ecommerce(data: SyntheticData, out_dir: str, seed: int) -> str:
    """``events-1.jsonl`` and ``events-2.jsonl.gz`` (the log split in time), ``catalog.csv`` (SKU, name,
    categories, brand, price) and the event spec ``events.json``. Every step of a user's timeline is a
    ``view``; some are followed seconds later by ``cart`` and ``purchase`` of the same SKU; ``wishlist``
    clicks on random SKUs are noise that the spec's ``keep_events`` filters out."""
    rng = np.random.default_rng(seed + 7)
    rows = []
    for i in _time_order(data).tolist():
        user, item, ms = customer(data.user_id[i]), sku(data.movie_id[i]), int(data.timestamp[i]) * 1000
        rows.append({"ts": ms, "customer": user, "sku": item, "event": "view", "session": f"s{i % 97}"})
        if rng.random() < 0.1:  # noise the spec filters out (keep_events): a wishlist click on any SKU
            rows.append({"ts": ms + 2000, "customer": user, "sku": sku(int(rng.integers(1, len(data.movies) + 1))),
                         "event": "wishlist"})
        if rng.random() < 0.25:
            rows.append({"ts": ms + 4000, "customer": user, "sku": item, "event": "cart"})
            if rng.random() < 0.5:
                rows.append({"ts": ms + 9000, "customer": user, "sku": item, "event": "purchase"})
    rows.sort(key=lambda r: r["ts"])
    half = len(rows) // 2
    with open(os.path.join(out_dir, "events-1.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows[:half])
    with gzip.open(os.path.join(out_dir, "events-2.jsonl.gz"), "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows[half:])
    with open(os.path.join(out_dir, "catalog.csv"), "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["sku", "name", "categories", "brand", "price"])
        for movie in data.movies.values():
            writer.writerow([sku(movie.movie_id), movie.title, "|".join(movie.genres),
                             _BRANDS[movie.movie_id % len(_BRANDS)], f"{5 + (movie.movie_id * 37) % 300}.99"])
    spec = {"events": "events-*.jsonl*", "user": "customer", "item": "sku", "timestamp": "ts",
            "timestamp_format": "unix_ms", "event_type": "event", "keep_events": list(EVENT_TYPES),
            "items": {"path": "catalog.csv", "key": "sku", "title": "name",
                      "categorical": {"category": {"column": "categories", "separator": "|"},
                                      "brand": {"column": "brand"}},
                      "numeric": {"price": {"column": "price"}}}}
    with open(os.path.join(out_dir, SPEC_FILE), "w", encoding="utf-8") as f:
        json.dump(spec, f, indent=1)
    return out_dir


def _half_star(rating: float, movie_id: int) -> str:
    value = rating - 0.5 if movie_id % 4 == 0 else rating
    return f"{value:.1f}"


def timelines(data: SyntheticData) -> Dict[int, List[int]]:
    """``{user: [movie, ...]}`` in time order (generation order)."""
    out: Dict[int, List[int]] = {}
    for u, m in zip(data.user_id.tolist(), data.movie_id.tolist()):
        out.setdefault(u, []).append(m)
    return out


# --- logs at scale, in the shape of MovieLens-25M -------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ScaleShape:
    """MovieLens-25M's shape (25,000,095 ratings of 162,541 users on 59,047 items, 1995-2019, at least 20 ratings a
    user, a median of 71 and a mean of 154, half stars). Users scale with the events; items with their square
    root (a smaller log of the same service sees fewer of its titles), 59,047 at 25M events."""

    users_per_million: float = 162_541 / 25.0
    items_at_25m: int = 59_047
    min_events: int = 20
    median_events: float = 71.0
    mean_events: float = 154.0
    max_events: int = 8_000
    popularity_exponent: float = 1.2  # Zipf-Mandelbrot (rank + offset) ** -exponent over the catalogue
    popularity_offset: float = 20.0
    follow: float = 0.3  # the next item is one of the current item's successors; else a popular item
    successors: int = 3
    neighbourhood: int = 200  # successors are drawn among the items this close in a hidden genre order
    first: int = 789_004_800  # 1995-01-01
    last: int = 1_574_294_400  # 2019-11-21


SCALE = ScaleShape()


def generate_scale(events: int, seed: int = 0, shape: ScaleShape = SCALE) -> SyntheticData:
    """About ``events`` ratings in ``shape`` (each user's first distinct items up to the length drawn for it),
    vectorised over users step by step (25M events in about a minute: docs/results.md; the per-event generator
    above holds Python lists of every draw). Users' items follow a Markov chain over per-item successors mixed
    with a long-tailed popularity; sessions of close timestamps separated by days."""
    rng = np.random.default_rng(seed)
    users = max(1, int(round(events / 1e6 * shape.users_per_million)))
    items = max(shape.successors + 2, int(round(shape.items_at_25m * (events / 25e6) ** 0.5)))
    sigma = float(np.sqrt(2 * np.log(shape.mean_events / shape.median_events)))
    lengths = np.exp(rng.normal(np.log(shape.median_events), sigma, size=users))
    lengths = np.clip(np.rint(lengths * events / lengths.sum()), shape.min_events,
                      min(shape.max_events, items // 2)).astype(np.int64)
    # Popularity by rank, ranks assigned to item ids at random; successors among neighbours in a hidden order.
    weights = (np.arange(1, items + 1) + shape.popularity_offset) ** -shape.popularity_exponent
    cumulative = np.cumsum(weights / weights.sum())
    item_of_rank = rng.permutation(items) + 1
    order = rng.permutation(items) + 1  # the hidden "genre" order
    position_of = np.empty(items + 1, np.int64)
    position_of[order] = np.arange(items)
    offsets = rng.integers(1, shape.neighbourhood + 1, size=(items + 1, shape.successors)) * \
        rng.choice((-1, 1), size=(items + 1, shape.successors))
    successor = order[(position_of[:, None] + offsets) % items]
    successor[0] = 0

    wanted, lengths = lengths, lengths * 2 + 5  # drawn with room for the repeats dropped below
    total = int(lengths.sum())
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    item = np.zeros(total, np.int64)
    current = np.zeros(users, np.int64)
    for step in range(int(lengths.max())):
        active = np.flatnonzero(lengths > step)
        popular = item_of_rank[np.minimum(np.searchsorted(cumulative, rng.random(active.size)), items - 1)]
        follow = (current[active] > 0) & (rng.random(active.size) < shape.follow)
        chosen = np.where(follow, successor[current[active], rng.integers(0, shape.successors, active.size)],
                          popular)
        item[starts[active] + step] = chosen
        current[active] = chosen
    user = np.repeat(np.arange(1, users + 1), lengths)
    # Timestamps: a start in the first three quarters of the span, gaps of about a minute inside a session and
    # of days between sessions (a new session one time in eight).
    begin = rng.integers(shape.first, shape.first + (shape.last - shape.first) * 3 // 4, size=users)
    gaps = np.where(rng.random(total) < 0.125, rng.exponential(20 * 86_400, total), rng.exponential(60, total))
    gaps[starts] = 0
    stamps = np.minimum(np.repeat(begin, lengths) + _cumsum_by_user(gaps, starts, lengths), shape.last)
    keep = _first_of_each(user, item, items)
    keep &= (np.cumsum(keep) - np.repeat(np.cumsum(keep)[starts] - keep[starts], lengths)) <= np.repeat(wanted,
                                                                                                         lengths)
    quality = rng.normal(3.5, 0.5, size=items + 1)
    ratings = np.clip(np.rint((quality[item] + rng.normal(0, 0.8, total)) * 2) / 2, 0.5, 5.0).astype(np.float32)
    movies = {}
    for movie in range(1, items + 1):
        genre = GENRES[int(position_of[movie]) * len(GENRES) // items]
        movies[movie] = movielens.Movie(movie, f"{_TITLE_WORDS[movie % len(_TITLE_WORDS)]} No. {movie}", (genre,),
                                        1950 + movie % 70)
    return SyntheticData(user[keep], item[keep], ratings[keep], stamps[keep].astype(np.int64), movies)


def _cumsum_by_user(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The running sum of ``values`` restarting at each user's first position."""
    running = np.cumsum(values)
    return running - np.repeat(running[starts] - values[starts], lengths)


def _first_of_each(user: np.ndarray, item: np.ndarray, items: int) -> np.ndarray:
    """A mask keeping the first event of each (user, item)."""
    pair = user.astype(np.int64) * (items + 1) + item
    _, first = np.unique(pair, return_index=True)
    keep = np.zeros(len(pair), bool)
    keep[first] = True
    return keep


def write_scale(events: int, out_dir: str, seed: int = 0) -> str:
    """``generate_scale`` written in MovieLens-25M's layout (``ratings.csv`` sorted by user then time, with a
    header; ``movies.csv``); returns ``out_dir``."""
    data = generate_scale(events, seed)
    os.makedirs(out_dir, exist_ok=True)
    layout = movielens.ML_LATEST
    order = np.lexsort((data.timestamp, data.user_id))
    with open(layout.ratings_path(out_dir), "w", encoding="utf-8", newline="") as f:
        f.write("userId,movieId,rating,timestamp\n")
        for chunk in range(0, len(order), 1 << 20):
            rows = order[chunk:chunk + (1 << 20)]
            f.write("".join(f"{u},{m},{r:g},{t}\n" for u, m, r, t in zip(
                data.user_id[rows].tolist(), data.movie_id[rows].tolist(), data.rating[rows].tolist(),
                data.timestamp[rows].tolist())))
    with open(layout.movies_path(out_dir), "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["movieId", "title", "genres"])
        for movie in data.movies.values():
            writer.writerow([movie.movie_id, f"{movie.title} ({movie.year})", "|".join(movie.genres)])
    return out_dir
