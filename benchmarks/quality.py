"""Quality benchmark: every encoder × history length against popularity and Markov baselines, one split.

Leave-last-out on the given MovieLens folder; full ranking over the catalogue with padding, movies absent from
training and every already-rated movie excluded. Models are scored through the exported ``serving_default``
function (the code TFMA runs) with the shared ``RecallAtK`` / ``NdcgAtK`` metrics; baselines are scored with
the same metrics on score matrices built with the same exclusions.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import time
from typing import Dict, List, Sequence

import numpy as np

from ondevice_rec.benchmarks.windowing import read_ratings_fast, window_arrays
from ondevice_rec.components.history_windowing import windowing
from ondevice_rec.data import movielens
from ondevice_rec.modules import features
from ondevice_rec.modules.config import ENCODERS, ModelConfig
from ondevice_rec.modules.vocabulary import Vocabulary, build

KS = (1, 5, 10)


def _metrics(scores: np.ndarray, targets: np.ndarray) -> Dict[str, float]:
    from ondevice_rec.modules.ranking_metrics import evaluate
    return evaluate(scores, targets, KS)


def _mask(scores: np.ndarray, seen: Sequence[Sequence[int]], recommendable: np.ndarray) -> np.ndarray:
    scores = np.where(recommendable[np.newaxis, :], scores, -1e9)
    for row, ids in enumerate(seen):
        scores[row, list(ids)] = -1e9
    return scores


class Split:
    """The windowed examples of one history length as arrays, plus the vocabulary of the train events."""

    def __init__(self, data_dir: str, history_length: int):
        user, movie, rating, stamp = read_ratings_fast(data_dir)
        self.arrays = window_arrays(user, movie, rating, stamp, windowing.WindowingOptions(history_length))
        a = self.arrays
        split, position_start = a["split"], a["start"]
        movies = movielens.read_movies(data_dir)
        # Vocabulary: events before each user's eval target (what the pipeline's windowing counts).
        eval_rows = np.flatnonzero(split == 1)
        counts = collections.Counter()
        for row in eval_rows.tolist():
            counts.update(a["movie"][position_start[row]:row].tolist())
        self.vocab: Vocabulary = build(dict(counts), int(max(a["movie"].max(), max(movies))),
                                       {m: {"title": v.title, "genres": v.genres, "year": v.year}
                                        for m, v in movies.items()})
        self.vocab.genres = sorted({g for v in movies.values() for g in v.genres})
        self.rows = {s: np.flatnonzero(split == i) for i, s in enumerate(features.SPLITS)}
        self.seen = {s: [a["movie"][position_start[r]:r].tolist() for r in self.rows[s].tolist()]
                     for s in ("eval", "test")}
        recommendable = np.zeros(self.vocab.max_movie_id + 1, bool)
        recommendable[[m.movie_id for m in self.vocab.movies]] = True
        self.recommendable = recommendable

    def dataset(self, split: str, config: ModelConfig, shuffle: bool):
        """As the pipeline's windowing: train windows every ``config.default_train_stride()`` positions,
        counted back from each user's last train target."""
        import tensorflow as tf
        from ondevice_rec.modules.model import SEEN_INDEX
        a, rows = self.arrays, self.rows[split]
        if split == "train":
            back = a["timeline_length"][rows] - 3 - a["position"][rows]
            rows = rows[back % config.default_train_stride() == 0]
        id_to_index = self.vocab.id_to_index()
        labels = id_to_index[np.minimum(a["movie"][rows], self.vocab.max_movie_id)]
        inputs = {features.CONTEXT_MOVIE_ID: a["context"][rows].astype(np.int32)}
        if config.use_ratings:
            inputs[features.CONTEXT_MOVIE_RATING] = a["context_rating"][rows].astype(np.float32)
        if split != "train":  # validation as trainer.make_dataset: seen movies, targets the model can rank
            seen = self.seen[split]
            seen_ids = np.zeros((len(seen), max(map(len, seen), default=0)), np.int64)
            for i, ids in enumerate(seen):
                seen_ids[i, :len(ids)] = ids
            inputs[SEEN_INDEX] = id_to_index[np.minimum(seen_ids, self.vocab.max_movie_id)].astype(np.int32)
            keep = labels > 0
            inputs = {k: v[keep] for k, v in inputs.items()}
            labels = labels[keep]
        data = tf.data.Dataset.from_tensor_slices((inputs, labels.astype(np.int32)))
        if shuffle:
            data = data.shuffle(len(labels), seed=config.seed, reshuffle_each_iteration=True)
        return data.batch(config.batch_size).prefetch(tf.data.AUTOTUNE)

    def serialized(self, split: str) -> List[bytes]:
        from ondevice_rec.components.history_windowing.executor import to_tf_example
        a = self.arrays
        out = []
        for row, seen in zip(self.rows[split].tolist(), self.seen[split]):
            out.append(to_tf_example({
                features.CONTEXT_MOVIE_ID: a["context"][row].tolist(),
                features.CONTEXT_MOVIE_RATING: a["context_rating"][row].tolist(),
                features.SEEN_MOVIE_IDS: seen}))
        return out

    def targets(self, split: str) -> np.ndarray:
        return self.arrays["movie"][self.rows[split]]

    def popularity_scores(self, split: str = "") -> np.ndarray:
        """Most-rated first (ties broken like the vocabulary), as the pipeline's baseline; one row per
        example of ``split`` with its seen movies masked, or a single unmasked row without a split."""
        from ondevice_rec.modules.metrics import popularity_scores
        return popularity_scores([m.movie_id for m in self.vocab.movies], self.seen[split] if split else [[]],
                                 self.vocab.max_movie_id + 1)

    def markov_scores(self, split: str, last: int = 1) -> np.ndarray:
        """Transition counts from the last ``last`` items (weights 1, 1/2, 1/3 ...), popularity as back-off."""
        a = self.arrays
        transitions = collections.defaultdict(collections.Counter)
        train_rows = self.rows["train"]
        for row in train_rows.tolist():
            transitions[int(a["context"][row, 0])][int(a["movie"][row])] += 1
        popularity = self.popularity_scores()[0]
        popularity = np.where(popularity > -1e8, popularity / (len(self.vocab.movies) + 1), 0.0)
        scores = np.tile(popularity * 1e-3, (len(self.rows[split]), 1))
        for i, row in enumerate(self.rows[split].tolist()):
            for k in range(last):
                for movie_id, count in transitions.get(int(a["context"][row, k]), {}).items():
                    scores[i, movie_id] += count / (k + 1)
        return _mask(scores, self.seen[split], self.recommendable)


def evaluate_model(model, split: Split, config: ModelConfig, which: str = "test") -> Dict[str, float]:
    import tensorflow as tf
    from ondevice_rec.modules.export import RecommenderModule
    module = RecommenderModule(model, split.vocab, config)
    scores = module.serve_examples(tf.constant(split.serialized(which)))["scores"].numpy()
    return _metrics(scores, split.targets(which))


def overrides_for(encoder: str, overrides: Sequence[str]) -> List[str]:
    """``KEY=VALUE`` settings of ``encoder`` from ``["KEY=VALUE", "ENCODER:KEY=VALUE", ...]``."""
    selected = []
    for override in overrides:
        prefix, sep, setting = override.partition(":")
        if sep and "=" not in prefix:
            if prefix == encoder:
                selected.append(setting)
        else:
            selected.append(override)
    return selected


def run(data_dir: str, encoders: Sequence[str] = ENCODERS, history_lengths: Sequence[int] = (10, 50, 100),
        out_dir: str = "benchmarks/results", base: ModelConfig = ModelConfig(embedding_dim=64, epochs=20),
        overrides: Sequence[str] = (), seeds: int = 1, report=print) -> dict:
    """Trains every encoder x history length on one split and writes quality.json/.md/.png to ``out_dir``.

    ``overrides``: ``"KEY=VALUE"`` for every encoder or ``"ENCODER:KEY=VALUE"`` for one. ``seeds`` > 1
    trains each model with seeds ``base.seed``, ``base.seed + 1``, ...: the entry's metrics are the means,
    with each seed's recall@10 and their standard deviation (single runs differ by a few points here).
    """
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    from ondevice_rec.modules import trainer
    os.makedirs(out_dir, exist_ok=True)
    results = {"dataset": os.path.abspath(data_dir),
               "split": "leave-last-out (test = last rating per user; same-second ratings ordered by "
                        "windowing.tie_break, a hash of user and movie)",
               "exclusions": "padding, movies absent from training, already-rated movies",
               "model_defaults": dataclasses.asdict(base), "baselines": {}, "models": []}
    start = time.perf_counter()
    for n in history_lengths:
        split = Split(data_dir, n)
        if n == history_lengths[0]:
            targets = split.targets("test")
            results["num_test_users"] = int(len(targets))
            results["baselines"]["popularity"] = _metrics(split.popularity_scores("test"), targets)
            results["baselines"]["markov (last item)"] = _metrics(split.markov_scores("test", 1), targets)
            results["baselines"]["markov (last 3 items)"] = _metrics(split.markov_scores("test", 3), targets)
            for name, values in results["baselines"].items():
                report(f"  {name:<22} recall@10 {values['recall@10']:.4f}")
        for encoder in encoders:
            config = dataclasses.replace(base, encoder=encoder, history_length=n).with_overrides(
                overrides_for(encoder, overrides))
            runs, epochs_run, t = [], [], time.perf_counter()
            for seed in range(config.seed, config.seed + seeds):
                seeded = dataclasses.replace(config, seed=seed)
                model = trainer.fit(seeded, split.vocab, split.dataset("train", seeded, True),
                                    split.dataset("eval", seeded, False))
                runs.append(evaluate_model(model, split, seeded))
                epochs_run.append(len(model.history.history.get("loss", [])) if model.history else None)
                if seeds > 1:
                    report(f"  {encoder:<12} N={n:<4} seed {seed}: recall@10 {runs[-1]['recall@10']:.4f}")
            train_seconds = (time.perf_counter() - t) / seeds
            values = {name: float(np.mean([r[name] for r in runs])) for name in runs[0]}
            entry = {"encoder": encoder, "history_length": n, "train_seconds": round(train_seconds, 1),
                     "settings": {k: v for k, v in dataclasses.asdict(config).items()
                                  if v != getattr(base, k) and k not in ("encoder", "history_length")},
                     "train_stride": config.default_train_stride(),
                     "epochs_run": epochs_run[0] if seeds == 1 else epochs_run, **values}
            if seeds > 1:
                entry["seeds"] = list(range(config.seed, config.seed + seeds))
                entry["recall@10_per_seed"] = [r["recall@10"] for r in runs]
                entry["recall@10_std"] = float(np.std(entry["recall@10_per_seed"], ddof=1))
            results["models"].append(entry)
            spread = f" ± {entry['recall@10_std']:.4f} (mean of {seeds})" if seeds > 1 else ""
            report(f"  {encoder:<12} N={n:<4} recall@10 {values['recall@10']:.4f}{spread}  "
                   f"ndcg@10 {values['ndcg@10']:.4f}  ({train_seconds:.0f}s per model)")
            _write(results, out_dir)
    results["total_seconds"] = round(time.perf_counter() - start, 1)
    _write(results, out_dir)
    return results


def _write(results: dict, out_dir: str) -> None:
    with open(os.path.join(out_dir, "quality.json"), "w") as f:
        json.dump(results, f, indent=2)
    lines = ["| model | N | recall@1 | recall@5 | recall@10 | NDCG@10 | train s |", "|---|---|---|---|---|---|---|"]
    for name, v in results["baselines"].items():
        lines.append(f"| {name} | – | {v['recall@1']:.4f} | {v['recall@5']:.4f} | {v['recall@10']:.4f} | "
                     f"{v['ndcg@10']:.4f} | – |")
    for m in results["models"]:
        spread = f" ± {m['recall@10_std']:.4f}" if "recall@10_std" in m else ""
        lines.append(f"| {m['encoder']} | {m['history_length']} | {m['recall@1']:.4f} | {m['recall@5']:.4f} | "
                     f"{m['recall@10']:.4f}{spread} | {m['ndcg@10']:.4f} | {m['train_seconds']:.0f} |")
    if any("seeds" in m for m in results["models"]):
        lines.append("")
        lines.append("Models: mean over seeds, ± the standard deviation of recall@10 between them.")
    with open(os.path.join(out_dir, "quality.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for encoder in dict.fromkeys(m["encoder"] for m in results["models"]):
        points = sorted((m["history_length"], m["recall@10"]) for m in results["models"] if m["encoder"] == encoder)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=encoder)
    styles = iter(["--", ":", "-."])
    for name, v in results["baselines"].items():
        ax.axhline(v["recall@10"], linestyle=next(styles), color="grey", label=name)
    ax.set_xlabel("history length N")
    ax.set_ylabel("test recall@10 (HR@10)")
    ax.set_title(f"Next-movie recall@10 on {os.path.basename(results['dataset'])}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "quality.png"), dpi=120)
    plt.close(fig)
