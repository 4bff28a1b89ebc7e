"""Windowing benchmark: the Beam HistoryWindowing transform against a vectorised numpy/pandas reference.

Both start from an ML-1M-scale synthetic dataset written in the ml-1m layout: the reference reads
``ratings.dat`` with pandas and windows with numpy; the Beam side reads the events the event ExampleGen
wrote (its real input in the pipeline; the ExampleGen's own time is reported separately). Both serialise the same tf.Examples and write the same gzipped TFRecord train / eval / test splits; the examples are compared
one by one before any figure is reported. The Beam side also writes the ``items`` split (a record per training
item), which the reference leaves out.
"""

from __future__ import annotations

import json
import os
import platform
import time
from typing import Dict, List

import numpy as np

from ondevice_rec.benchmarks.data import temporary_work_dir
from ondevice_rec.components.history_windowing import executor, windowing
from ondevice_rec.data import movielens, synthetic
from ondevice_rec.modules import features

MEAN_RATINGS_PER_USER = 165  # as ML-1M: 1,000,209 ratings by 6,040 users


def window_arrays(user, movie, rating, stamp, options: windowing.WindowingOptions) -> Dict[str, np.ndarray]:
    """Vectorised leave-last-out windowing of parallel event arrays (any order).

    Returns the events sorted by (user, timestamp, ``windowing.tie_break``) with, per event: ``split`` (0 train,
    1 eval, 2 test, -1 no example), ``context`` / ``context_rating`` ([E, N], most recent first, 0-padded),
    ``context_length``, ``start`` (index of the user's first event, for the seen-ids slice), ``position`` (in
    the user's timeline) and ``timeline_length``.
    """
    if options.split != windowing.LEAVE_LAST_OUT or options.stride != 1 or options.max_examples_per_user:
        raise ValueError("the vectorised windowing implements the default leave-last-out windowing only")
    keep = rating >= options.min_rating
    user, movie, rating, stamp = user[keep], movie[keep], rating[keep], stamp[keep]
    ties = np.array([windowing.tie_break(str(u), str(m)) for u, m in zip(user.tolist(), movie.tolist())], np.uint64)
    order = np.lexsort((ties, stamp, user))
    user, movie, rating, stamp = user[order], movie[order], rating[order], stamp[order]
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    lengths = np.diff(np.r_[starts, len(user)])
    start_of_row = np.repeat(starts, lengths)
    length_of_row = np.repeat(lengths, lengths)
    position = np.arange(len(user)) - start_of_row
    has_example = (length_of_row >= options.min_timeline_length) & (position >= 1)
    split = np.full(len(user), -1)
    split[has_example & (position <= length_of_row - 3)] = 0
    split[has_example & (position == length_of_row - 2)] = 1
    split[has_example & (position == length_of_row - 1)] = 2
    n = options.history_length
    context = np.zeros((len(user), n), np.int64)
    context_rating = np.zeros((len(user), n))
    for k in range(1, n + 1):
        valid = np.flatnonzero(position >= k)
        context[valid, k - 1] = movie[valid - k]
        context_rating[valid, k - 1] = rating[valid - k]
    return {"user": user, "movie": movie, "rating": rating, "stamp": stamp, "split": split, "context": context,
            "context_rating": context_rating, "context_length": np.minimum(position, n), "start": start_of_row,
            "position": position, "timeline_length": length_of_row}


def read_ratings_fast(data_dir: str):
    """Parallel numpy arrays (user, movie, rating, timestamp) of a MovieLens folder."""
    import pandas as pd
    fmt = movielens.detect_format(data_dir)
    if fmt is movielens.ML_1M:  # '::' is two one-char separators with an empty field between
        frame = pd.read_csv(fmt.ratings_path(data_dir), sep=":", header=None, usecols=[0, 2, 4, 6], engine="c",
                            names=["user", "movie", "rating", "timestamp"])
    elif fmt is movielens.ML_100K:
        frame = pd.read_csv(fmt.ratings_path(data_dir), sep="\t", header=None, engine="c",
                            names=["user", "movie", "rating", "timestamp"])
    else:
        frame = pd.read_csv(fmt.ratings_path(data_dir), engine="c").rename(
            columns={"userId": "user", "movieId": "movie"})
    return (frame.user.to_numpy(np.int64), frame.movie.to_numpy(np.int64), frame.rating.to_numpy(np.float64),
            frame.timestamp.to_numpy(np.int64))


def reference_windowing(data_dir: str, options: windowing.WindowingOptions, output_dir: str = ""
                        ) -> Dict[str, List[bytes]]:
    """The same leave-last-out windowing in numpy, serialized with the component's own serializer and, when
    ``output_dir`` is given, written as the same gzipped TFRecord splits (the component's whole job)."""
    arrays = window_arrays(*read_ratings_fast(data_dir), options)
    movie, split = arrays["movie"].tolist(), arrays["split"]
    keys = [str(m) for m in movie]
    context = [[keys[i - k] if k <= p else "" for k in range(1, options.history_length + 1)]
               for i, p in enumerate(arrays["position"].tolist())]
    users, ratings = [str(u) for u in arrays["user"].tolist()], arrays["context_rating"].tolist()
    lengths, stamps, starts = arrays["context_length"].tolist(), arrays["stamp"].tolist(), arrays["start"].tolist()
    timeline_lengths = arrays["timeline_length"].tolist()
    out: Dict[str, List[bytes]] = {s: [] for s in features.SPLITS}
    for i in np.flatnonzero(split >= 0).tolist():
        s = features.SPLITS[split[i]]
        example = {
            features.USER_ID: users[i], features.CONTEXT_ITEM: context[i], features.CONTEXT_RATING: ratings[i],
            features.CONTEXT_LENGTH: lengths[i], features.LABEL_ITEM: keys[i], features.LABEL_TIMESTAMP: stamps[i],
            features.LABEL_COLUMN: 0,
            # Stride 1: train targets at positions 1 .. length - 3 (the last two are eval and test).
            features.USER_TRAIN_EXAMPLES: timeline_lengths[i] - 3 if s == "train" else 0,
            features.SEEN_ITEMS: keys[starts[i]:i] if s != "train" else []}
        out[s].append(executor.to_tf_example(example))
    if output_dir:
        import tensorflow as tf
        for s, records in out.items():
            os.makedirs(features.split_dir(output_dir, s), exist_ok=True)
            with tf.io.TFRecordWriter(os.path.join(features.split_dir(output_dir, s), "data.tfrecord.gz"),
                                      options="GZIP") as writer:
                for record in records:
                    writer.write(record)
    return out


def _canonical(records: List[bytes]) -> List[bytes]:
    import tensorflow as tf
    return sorted(tf.train.Example.FromString(r).SerializeToString(deterministic=True) for r in records)


def _read_split(root: str, split: str) -> List[bytes]:
    return features.read_files(os.path.join(features.split_dir(root, split), "*.gz"))


@temporary_work_dir("ondevice-rec-bench-")
def run(ratings: int = 1_000_000, history_length: int = 10, work_dir: str = "", beam_args: List[str] = (),
        out_json: str = "", seed: int = 0, report=print) -> dict:
    """Builds the dataset, times both implementations, checks they agree and returns the figures."""
    import apache_beam as beam
    from ondevice_rec.components.event_example_gen.executor import EventsToExample

    users = max(10, ratings // MEAN_RATINGS_PER_USER)
    report(f"Generating ~{ratings:,} synthetic ratings ({users:,} users, 3,706 movies) in {work_dir} ...")
    start = time.perf_counter()
    data = synthetic.generate(synthetic.SyntheticConfig(users=users, items=3706, seed=seed,
                                                        mean_ratings_per_user=MEAN_RATINGS_PER_USER))
    data_dir = synthetic.write(data, os.path.join(work_dir, "ml-1m"), "ml-1m", seed=seed)
    generate_seconds = time.perf_counter() - start
    options = windowing.WindowingOptions(history_length=history_length)
    # Default: one worker process per core (measured faster than in-memory on large logs: docs/results.md, "Figures behind code comments").
    beam_argv = list(beam_args) or ["--direct_running_mode=multi_processing",
                                    f"--direct_num_workers={os.cpu_count() or 1}"]

    report("ExampleGen (Beam): events -> event tf.Examples ...")
    events_prefix = os.path.join(work_dir, "events", "events")
    start = time.perf_counter()
    with beam.Pipeline(argv=beam_argv) as pipeline:
        _ = (pipeline
             | EventsToExample({"input_base": data_dir}, "*")  # pylint: disable=no-value-for-parameter
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
    reference = reference_windowing(data_dir, options, os.path.join(work_dir, "reference"))
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
