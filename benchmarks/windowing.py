"""Windowing benchmark: the Beam HistoryWindowing transform against a vectorised numpy/pandas reference.

Both start from an ML-1M-scale synthetic dataset written in the ml-1m layout: the reference reads
``ratings.dat`` with pandas and windows with numpy; the Beam side reads the rating events the MovieLens
ExampleGen wrote (its real input in the pipeline; the ExampleGen's own time is reported separately). Both
serialise the same tf.Examples, which are compared one by one before any figure is reported.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from typing import Dict, List

import numpy as np

from ondevice_rec.components.history_windowing import executor, windowing
from ondevice_rec.data import movielens, synthetic
from ondevice_rec.modules import features

MEAN_RATINGS_PER_USER = 165  # as ML-1M: 1,000,209 ratings by 6,040 users


def reference_windowing(data_dir: str, options: windowing.WindowingOptions) -> Dict[str, List[bytes]]:
    """The same leave-last-out windowing in numpy: one vectorised pass per context offset."""
    import pandas as pd
    if options.split != windowing.LEAVE_LAST_OUT or options.stride != 1 or options.max_examples_per_user:
        raise ValueError("the reference implements the default leave-last-out windowing only")
    # '::' is two one-char separators with an empty field between; the C parser reads that fast.
    frame = pd.read_csv(os.path.join(data_dir, "ratings.dat"), sep=":", header=None, usecols=[0, 2, 4, 6],
                        names=["user", "movie", "rating", "timestamp"], engine="c")
    frame = frame[frame.rating >= options.min_rating]
    movies = movielens.read_movies(data_dir)
    genre_ids = windowing.genre_index(g for m in movies.values() for g in m.genres)
    user = frame.user.to_numpy(np.int64)
    movie = frame.movie.to_numpy(np.int64)
    rating = frame.rating.to_numpy(np.float64)
    stamp = frame.timestamp.to_numpy(np.int64)
    order = np.lexsort((movie, stamp, user))
    user, movie, rating, stamp = user[order], movie[order], rating[order], stamp[order]
    max_id = int(movie.max())
    year_of = np.zeros(max_id + 1, np.int64)
    g = options.genres_per_movie
    genres_of = np.zeros((max_id + 1, g), np.int64)
    for movie_id, m in movies.items():
        if movie_id <= max_id:
            year_of[movie_id] = m.year
            ids = [genre_ids[x] for x in m.genres][:g]
            genres_of[movie_id, :len(ids)] = ids

    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    lengths = np.diff(np.r_[starts, len(user)])
    start_of_row = np.repeat(starts, lengths)
    length_of_row = np.repeat(lengths, lengths)
    position = np.arange(len(user)) - start_of_row
    keep = (length_of_row >= options.min_timeline_length) & (position >= 1)
    split = np.full(len(user), -1)
    split[keep & (position <= length_of_row - 3)] = 0
    split[keep & (position == length_of_row - 2)] = 1
    split[keep & (position == length_of_row - 1)] = 2

    n = options.history_length
    context = np.zeros((len(user), n), np.int64)
    for k in range(1, n + 1):
        valid = position >= k
        context[valid, k - 1] = movie[np.flatnonzero(valid) - k]
    context_rating = np.zeros((len(user), n))
    for k in range(1, n + 1):
        valid = position >= k
        context_rating[valid, k - 1] = rating[np.flatnonzero(valid) - k]
    context_length = np.minimum(position, n)
    context_year = np.where(context > 0, year_of[context], 0)
    context_genre = np.where((context > 0)[..., None], genres_of[context], 0).reshape(len(user), n * g)

    out: Dict[str, List[bytes]] = {s: [] for s in features.SPLITS}
    rows = np.flatnonzero(split >= 0)
    cols = [user.tolist(), context.tolist(), context_genre.tolist(), context_rating.tolist(), context_year.tolist(),
            context_length.tolist(), movie.tolist(), stamp.tolist()]
    movies_list, starts_list = cols[6], start_of_row.tolist()
    for i in rows.tolist():
        example = {
            features.USER_ID: cols[0][i], features.CONTEXT_MOVIE_ID: cols[1][i],
            features.CONTEXT_MOVIE_GENRE: cols[2][i], features.CONTEXT_MOVIE_RATING: cols[3][i],
            features.CONTEXT_MOVIE_YEAR: cols[4][i], features.CONTEXT_LENGTH: cols[5][i],
            features.LABEL_MOVIE_ID: cols[6][i], features.LABEL_TIMESTAMP: cols[7][i]}
        s = features.SPLITS[split[i]]
        if s != "train":
            example[features.SEEN_MOVIE_IDS] = movies_list[starts_list[i]:i]
        out[s].append(executor.to_tf_example(example))
    return out


def _canonical(records: List[bytes]) -> List[bytes]:
    import tensorflow as tf
    return sorted(tf.train.Example.FromString(r).SerializeToString(deterministic=True) for r in records)


def _read_split(root: str, split: str) -> List[bytes]:
    import tensorflow as tf
    files = sorted(tf.io.gfile.glob(os.path.join(root, f"Split-{split}", "*.gz")))
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def run(ratings: int = 1_000_000, history_length: int = 10, work_dir: str = "", beam_args: List[str] = (),
        out_json: str = "", seed: int = 0, report=print) -> dict:
    """Builds the dataset, times both implementations, checks they agree and returns the figures."""
    import apache_beam as beam
    from ondevice_rec.components.movielens_example_gen.executor import MovieLensToExample

    work_dir = work_dir or tempfile.mkdtemp(prefix="ondevice-rec-bench-")
    users = max(10, ratings // MEAN_RATINGS_PER_USER)
    report(f"Generating ~{ratings:,} synthetic ratings ({users:,} users, 3,706 movies) in {work_dir} ...")
    start = time.perf_counter()
    data = synthetic.generate(synthetic.SyntheticConfig(users=users, items=3706, seed=seed,
                                                        mean_ratings_per_user=MEAN_RATINGS_PER_USER))
    data_dir = synthetic.write(data, os.path.join(work_dir, "ml-1m"), "ml-1m", seed=seed)
    generate_seconds = time.perf_counter() - start
    options = windowing.WindowingOptions(history_length=history_length)
    beam_argv = list(beam_args) or ["--direct_running_mode=in_memory", "--direct_num_workers=1"]

    report("ExampleGen (Beam): ratings -> event tf.Examples ...")
    events_prefix = os.path.join(work_dir, "events", "events")
    start = time.perf_counter()
    with beam.Pipeline(argv=beam_argv) as pipeline:
        _ = (pipeline
             | MovieLensToExample({"input_base": data_dir}, "*")  # pylint: disable=no-value-for-parameter
             | beam.Map(lambda e: e.SerializeToString())
             | beam.io.WriteToTFRecord(events_prefix, file_name_suffix=".gz"))
    example_gen_seconds = time.perf_counter() - start

    report("HistoryWindowing (Beam DirectRunner) ...")
    beam_out = os.path.join(work_dir, "windowed")
    start = time.perf_counter()
    with beam.Pipeline(argv=beam_argv) as pipeline:
        _ = (pipeline
             | beam.io.ReadFromTFRecord(events_prefix + "*")
             | executor.WindowEvents(options, beam_out))  # pylint: disable=no-value-for-parameter
    beam_seconds = time.perf_counter() - start

    report("Reference (pandas + numpy) ...")
    start = time.perf_counter()
    reference = reference_windowing(data_dir, options)
    reference_seconds = time.perf_counter() - start

    report("Comparing outputs example by example ...")
    counts = {}
    for split in features.SPLITS:
        got, expected = _canonical(_read_split(beam_out, split)), _canonical(reference[split])
        if got != expected:
            raise AssertionError(f"Beam and reference differ on the {split} split "
                                 f"({len(got)} vs {len(expected)} examples)")
        counts[split] = len(got)
    total = sum(counts.values())
    result = {
        "benchmark": "windowing",
        "ratings": int(len(data.user_id)), "users": users, "history_length": history_length,
        "examples": counts, "identical": True,
        "beam_args": beam_argv,
        "generate_seconds": round(generate_seconds, 2),
        "example_gen_seconds": round(example_gen_seconds, 2),
        "beam_windowing_seconds": round(beam_seconds, 2),
        "reference_seconds": round(reference_seconds, 2),
        "beam_examples_per_second": round(total / beam_seconds),
        "reference_examples_per_second": round(total / reference_seconds),
        "beam_to_reference_ratio": round(beam_seconds / reference_seconds, 2),
        "targets": {"beam_windowing_seconds_max": 120, "ratio_max": 3.0},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    result["meets_targets"] = beam_seconds <= 120 and result["beam_to_reference_ratio"] <= 3.0
    report("")
    report(f"  ratings                 {result['ratings']:>12,}")
    report(f"  examples (train/eval/test) {counts['train']:,} / {counts['eval']:,} / {counts['test']:,}")
    report(f"  Beam windowing          {beam_seconds:10.1f} s  {result['beam_examples_per_second']:>10,} ex/s")
    report(f"  numpy/pandas reference  {reference_seconds:10.1f} s  {result['reference_examples_per_second']:>10,} ex/s")
    report(f"  ratio Beam/reference    {result['beam_to_reference_ratio']:10.2f}   (target <= 3.0; Beam <= 120 s)")
    report(f"  (ExampleGen {example_gen_seconds:.1f} s, data generation {generate_seconds:.1f} s, not included)")
    if out_json:
        os.makedirs(os.path.dirname(os.path.abspath(out_json)), exist_ok=True)
        with open(out_json, "w") as f:
            json.dump(result, f, indent=2)
        report(f"  written to {out_json}")
    return result
