"""Quality benchmark: every encoder × history length against popularity and Markov baselines, one split.

The data is the pipeline's own: ExampleGen and HistoryWindowing (leave-last-out, the train stride each
encoder's loss wants) run on BeamDagRunner (``benchmarks/data.py``), and the models train on the Trainer's
input pipeline and training loop. Full ranking over the catalogue with padding, movies absent from training and
every already-rated movie excluded. Models are scored through the exported ``serving_default`` function (the
code TFMA runs) with the registered ranking metrics (``modules/ranking_metrics.METRICS``); baselines are scored
with the same metrics on score matrices built with the same exclusions.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from ondevice_rec.benchmarks.data import WindowedSplit, temporary_work_dir
from ondevice_rec.modules import encoders as encoder_registry
from ondevice_rec.modules.config import ENCODERS, ModelConfig
from ondevice_rec.modules.features import SEEN_INDEX
from ondevice_rec.modules.ranking_metrics import GATE, METRICS, NAMES, table_cells, table_header

LISTED = "listed_"  # the prefix of the metrics on the listed users only (``users_file``)
SPREAD_METRICS = NAMES + tuple(LISTED + name for name in NAMES)  # with a std over seeds
SYNTHETIC_PREFIX = "synthetic:"  # a dataset named synthetic:SHAPE is generated (data/synthetic.SHAPES)
# The history lengths trained unless told (``--run-defaults``: only the N ``ondevice-rec run`` trains); every
# other setting is ``run``'s (the same flags, from the same config fields).
HISTORY_LENGTHS = (10, 50, 100)
DEFAULT_VARIANT = "default"  # an ablation's unchanged model


def evaluate_model(model, data: WindowedSplit, config: ModelConfig, which: str = "test",
                   batch_size: int = 1024, users: Optional[set] = None) -> Dict[str, float]:
    """Scores ``which`` through the exported ``serving_default`` function (what TFMA runs, on the windowed
    examples). ``users``: also the metrics on those users' examples only, as ``listed_<metric>`` (and
    ``listed_users``, how many had an example)."""
    from ondevice_rec.modules import features
    from ondevice_rec.modules.export import RecommenderModule
    from ondevice_rec.pipeline.evaluation import score_records
    module = RecommenderModule(model, data.vocab, config)
    records = features.read_split(data.windowed_uri, which)
    scored = score_records(lambda examples: module.serve_examples(examples), records, users, batch_size)
    result = {k: v for k, v in scored["all"].items() if k != "users"}
    if users is not None:
        listed = dict(scored["subset"])
        result.update({LISTED + k: v for k, v in listed.items() if k != "users"}, listed_users=listed["users"])
    return result


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


def check_settings(data_dir: Optional[str], encoders: Sequence[str], history_lengths: Sequence[int],
                   seeds: int) -> None:
    """Refuses bad settings before any work (ValueError naming every problem); ``data_dir`` None: not checked."""
    problems = []
    for encoder in encoders:
        try:
            encoder_registry.check(encoder)
        except ValueError as e:
            problems.append(str(e))
    problems += [f"history length {str(n)!r} is not a positive integer" for n in history_lengths
                 if not isinstance(n, int) or n < 1]
    if not encoders or not history_lengths:
        problems.append("the encoders and the history lengths need at least one value each")
    if seeds < 1:
        problems.append(f"seeds (--seeds) must be at least 1, got {seeds}")
    if data_dir is not None and not os.path.isdir(data_dir):
        problems.append(f"no folder at {data_dir}")
    if problems:
        raise ValueError("; ".join(problems))


def variants(ablations: Sequence[str]) -> List[tuple]:
    """``(label, overrides)`` of an ablation: the setting as given, then each ``KEY=VALUE`` change alone."""
    ModelConfig().with_overrides(list(ablations), flag="--ablation")  # refuses a bad one before any training
    return [(DEFAULT_VARIANT, [])] + [(change, [change]) for change in dict.fromkeys(ablations)]


@temporary_work_dir("ondevice-rec-quality-")
def run(data_dir: str, encoders: Sequence[str] = ENCODERS, history_lengths: Sequence[int] = HISTORY_LENGTHS,
        out_dir: str = "benchmarks/results", base: ModelConfig = ModelConfig(),
        overrides: Sequence[str] = (), seeds: int = 1, work_dir: str = "", users_file: str = "",
        report=print, events=None, ablations: Sequence[str] = ()) -> dict:
    """Trains every encoder x history length on one split and writes quality.json/.md/.png to ``out_dir``.

    ``ablations``: ``"KEY=VALUE"`` model settings, each trained alone on top of every model (one change at a
    time; the entries say which in ``variant``, the unchanged one being ``"default"``).
    ``overrides``: ``"KEY=VALUE"`` for every encoder or ``"ENCODER:KEY=VALUE"`` for one. ``seeds`` > 1
    trains each model with seeds ``base.seed``, ``base.seed + 1``, ...: the entry's metrics are the means,
    with each seed's recall@10 and their standard deviation (single runs differ by a few points here).
    ``work_dir``: the pipeline root and MLMD store of the data stages (default: a temporary folder, deleted at
    the end).
    ``users_file``: one user key a line; every model is also scored on those users (``listed_*`` metrics),
    e.g. ML-1M-SAS's ``complete_users.txt``.
    """
    check_settings(data_dir, encoders, history_lengths, seeds)
    changes = variants(ablations)
    from ondevice_rec.pipeline.evaluation import read_users
    users = read_users(users_file) if users_file else None
    os.makedirs(out_dir, exist_ok=True)
    results = {"dataset": os.path.abspath(data_dir),
               "split": "leave-last-out (test = last rating per user; same-second ratings ordered by "
                        "windowing.tie_break, a hash of user and movie), windowed by the pipeline's "
                        "HistoryWindowing",
               "exclusions": "padding, movies absent from training, already-rated movies",
               "model_defaults": dataclasses.asdict(base), "baselines": {}, "models": []}
    start = time.perf_counter()
    windowings: Dict[tuple, WindowedSplit] = {}  # by N and train stride (it follows each encoder's loss)
    for n, encoder, (variant, change) in itertools.product(history_lengths, encoders, changes):
        config = dataclasses.replace(base, encoder=encoder, history_length=n).with_overrides(
            overrides_for(encoder, overrides) + change)
        shape = (config.history_length, config.default_train_stride())
        if shape not in windowings:
            report(f"  windowing N={shape[0]}, train stride {shape[1]} (the pipeline's data stages) ...")
            windowings[shape] = WindowedSplit(data_dir, work_dir, config, events=events)
        data = windowings[shape]
        if "num_test_users" not in results:
            targets = data.targets("test")
            results["num_test_users"] = int(len(targets))
            results["num_items"] = data.vocab.size - 1
            results["num_events"] = int(sum(len(e[SEEN_INDEX]) for e in data.examples("eval")) + 2 * len(targets))
            results["baselines"] = data.baselines("test")
            for name, values in results["baselines"].items():
                report(f"  {name:<22} {GATE.name} {values[GATE.name]:.4f}")
        runs, epochs_run, stopped_by, t = [], [], [], time.perf_counter()
        for seed in range(config.seed, config.seed + seeds):
            seeded = dataclasses.replace(config, seed=seed)
            model = data.train(seeded)
            runs.append(evaluate_model(model, data, seeded, users=users))
            epochs_run.append(len(model.history.history.get("loss", [])) if model.history else None)
            stopped_by.append(model.training_summary.get("stopped_by"))
            if seeds > 1:
                report(f"  {encoder:<12} N={n:<4} {variant} seed {seed}: {GATE.name} {runs[-1][GATE.name]:.4f}")
        train_seconds = (time.perf_counter() - t) / seeds
        values = {name: float(np.mean([r[name] for r in runs])) for name in runs[0]}
        entry = {"encoder": encoder, "history_length": config.history_length, "variant": variant,
                 "train_seconds": round(train_seconds, 1),
                 "settings": {k: v for k, v in dataclasses.asdict(config).items()
                              if v != getattr(base, k) and k not in ("encoder", "history_length")},
                 "train_stride": data.stride,
                 "epochs_run": epochs_run[0] if seeds == 1 else epochs_run,
                 "stopped_by": stopped_by[0] if seeds == 1 else stopped_by, **values}
        if seeds > 1:
            entry["seeds"] = list(range(config.seed, config.seed + seeds))
            for metric in SPREAD_METRICS:
                if metric in runs[0]:
                    entry[f"{metric}_per_seed"] = [r[metric] for r in runs]
                    entry[f"{metric}_std"] = float(np.std(entry[f"{metric}_per_seed"], ddof=1))
        results["models"].append(entry)
        spread = f" ± {entry[GATE.name + '_std']:.4f} (mean of {seeds})" if seeds > 1 else ""
        listed = f"  listed users {values[LISTED + GATE.name]:.4f}" if LISTED + GATE.name in values else ""
        label = f"{encoder:<12} N={n:<4}" + (f" {variant}" if len(changes) > 1 else "")
        others = "".join(f"  {m.name} {values[m.name]:.4f}" for m in METRICS if m is not GATE)
        report(f"  {label} {GATE.name} {values[GATE.name]:.4f}{spread}{others}{listed}  "
               f"({train_seconds:.0f}s per model)")
        _write(results, out_dir)
    results["total_seconds"] = round(time.perf_counter() - start, 1)
    _write(results, out_dir)
    return results


def _write(results: dict, out_dir: str) -> None:
    with open(os.path.join(out_dir, "quality.json"), "w") as f:
        json.dump(results, f, indent=2)
    listed = any(LISTED + GATE.name in m for m in results["models"])
    extra = f" {GATE.title}, listed users |" if listed else ""
    lines = ["| model | N |" + table_header() + " epochs | train s |" + extra,
             "|---|---|" + "---|" * (len(METRICS) + 2) + ("---|" if listed else "")]
    for name, v in results["baselines"].items():
        lines.append(f"| {name} | – |{table_cells(v)} – | – |" + (" – |" if listed else ""))
    for m in results["models"]:
        cells = "".join(f" {m[metric.name]:.4f}" + (f" ± {m[metric.name + '_std']:.4f}" if metric is GATE and
                                                      metric.name + "_std" in m else "") + " |"
                        if metric.name in m else " – |" for metric in METRICS)
        name = m["encoder"] + ("" if m["variant"] == DEFAULT_VARIANT else f", {m['variant']}")
        lines.append(f"| {name} | {m['history_length']} |{cells} {m['epochs_run']} | {m['train_seconds']:.0f} |"
                     + (f" {m.get(LISTED + GATE.name, float('nan')):.4f} |" if listed else ""))
    if any("seeds" in m for m in results["models"]):
        lines.append("")
        lines.append(f"Models: mean over seeds, ± the standard deviation of {GATE.title} between them.")
    with open(os.path.join(out_dir, "quality.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for encoder in dict.fromkeys(m["encoder"] for m in results["models"]):
        points = sorted((m["history_length"], m["recall@10"]) for m in results["models"]
                        if m["encoder"] == encoder and m["variant"] == DEFAULT_VARIANT)
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


def dataset_name(dataset: str) -> str:
    return dataset[len(SYNTHETIC_PREFIX):] if dataset.startswith(SYNTHETIC_PREFIX) else \
        os.path.basename(os.path.normpath(dataset))


def is_dataset(folder: str) -> bool:
    """A folder the benchmark reads: a log with its event spec, or a MovieLens layout."""
    from ondevice_rec.data import event_spec, movielens
    return os.path.isfile(os.path.join(folder, event_spec.SPEC_FILE)) or any(
        os.path.exists(f.ratings_path(folder)) for f in movielens.FORMATS.values())


def expand_datasets(datasets: Sequence[str]) -> List[str]:
    """``datasets`` with each folder that is no dataset itself but holds some (e.g. ``../shared/data``)
    replaced by those dataset folders, by name."""
    expanded = []
    for dataset in datasets:
        if dataset.startswith(SYNTHETIC_PREFIX) or not os.path.isdir(dataset) or is_dataset(dataset):
            expanded.append(dataset)
            continue
        inside = [os.path.join(dataset, name) for name in sorted(os.listdir(dataset))]
        # A folder that holds none stays: reading it says what it lacks.
        expanded.extend([folder for folder in inside if os.path.isdir(folder) and is_dataset(folder)] or [dataset])
    return expanded


def check_datasets(datasets: Sequence[str]) -> None:
    """Refuses unknown shapes, missing folders and two datasets of one name, before any work."""
    from ondevice_rec.data import synthetic
    problems = []
    for dataset in datasets:
        if dataset.startswith(SYNTHETIC_PREFIX):
            if dataset_name(dataset) not in synthetic.SHAPES:
                problems.append(f"unknown synthetic shape {dataset_name(dataset)!r} (choose from "
                                f"{', '.join(synthetic.SHAPES)})")
        elif not os.path.isdir(dataset):
            problems.append(f"no folder at {dataset}")
    names = [dataset_name(d) for d in datasets]
    problems += [f"two datasets are named {n!r}" for n in sorted({n for n in names if names.count(n) > 1})]
    if not datasets:
        problems.append("no dataset")
    if problems:
        raise ValueError("; ".join(problems))


@temporary_work_dir("ondevice-rec-quality-")
def run_datasets(datasets: Sequence[str], out_dir: str = "benchmarks/results", work_dir: str = "",
                 report=print, **settings) -> dict:
    """``run`` on every dataset (a folder: MovieLens, or any log with its event spec ``events.json`` inside; or
    ``synthetic:SHAPE``, generated into the work folder), each in its own work and output folder
    (``OUT/<name>/quality.*``), then the cross-dataset table ``OUT/datasets.json`` / ``.md``: per dataset its
    size, popularity, the last-3 Markov chain and the best model, with the model's ratio to that chain."""
    from ondevice_rec.benchmarks import anchors
    from ondevice_rec.data import event_spec, synthetic
    datasets = expand_datasets(datasets)
    check_datasets(datasets)
    check_settings(None, settings.get("encoders", ENCODERS), settings.get("history_lengths", HISTORY_LENGTHS),
                   settings.get("seeds", 1))
    if settings.pop("users_file", ""):
        raise ValueError(f"a users file (--users) lists one dataset's users: benchmark that dataset alone (a "
                         f"dataset folder's own {anchors.USERS_FILE} is read by itself)")
    os.makedirs(out_dir, exist_ok=True)
    table = {"datasets": [], "settings": {k: v for k, v in settings.items() if k != "base"},
             "model_defaults": dataclasses.asdict(settings.get("base", ModelConfig()))}
    start = time.perf_counter()
    for dataset in datasets:
        name = dataset_name(dataset)
        data_dir = dataset
        if dataset.startswith(SYNTHETIC_PREFIX):
            data_dir = os.path.join(work_dir, name, "data")
            if not os.path.isdir(data_dir):  # written under another name first: an interrupted run leaves no
                report(f"{name}: generating ({synthetic.SHAPES[name].about}) ...")  # half folder to reuse
                partial = data_dir + ".partial"
                shutil.rmtree(partial, ignore_errors=True)
                synthetic.write_shape(name, partial)
                os.replace(partial, data_dir)
        spec = event_spec.folder_spec(data_dir)
        report(f"{name}: {os.path.abspath(data_dir)}" + (
            f" (event spec {os.path.join(data_dir, event_spec.SPEC_FILE)})" if spec else ""))
        t = time.perf_counter()
        users_file = anchors.users_file(data_dir)
        result = run(data_dir, out_dir=os.path.join(out_dir, name), work_dir=os.path.join(work_dir, name, "work"),
                     report=report, events=spec, users_file=users_file, **settings)
        best = max((m for m in result["models"] if m["variant"] == DEFAULT_VARIANT), key=lambda m: m["recall@10"])
        markov = result["baselines"]["markov (last 3 items)"]["recall@10"]
        published = anchors.best(name)
        keys = [k for k in best if k.startswith(SPREAD_METRICS) or k in (  # each metric with its spread
            "encoder", "history_length", "epochs_run", "listed_users")]
        compared = best.get("listed_recall@10", best["recall@10"]) if users_file else best["recall@10"]
        table["datasets"].append({
            "dataset": name, "data_dir": os.path.abspath(data_dir), "events": result["num_events"],
            "users": result["num_test_users"], "items": result["num_items"],
            "popularity": result["baselines"]["popularity"]["recall@10"], "markov_last_3": markov,
            "best": {k: best[k] for k in keys},
            "best_to_markov": round(best["recall@10"] / markov, 3) if markov else None,
            "published": [a._asdict() for a in anchors.published(name)],
            "published_on": f"the {best.get('listed_users', 0)} users of {anchors.USERS_FILE}" if users_file else
                            "all users",
            "best_to_published": round(compared / published.recall_at_10, 3) if published else None,
            "seconds": round(time.perf_counter() - t, 1)})
        if settings.get("ablations"):
            table["datasets"][-1]["ablation"] = {
                m["variant"]: {k: m[k] for k in m if k.startswith(SPREAD_METRICS) or k == "epochs_run"}
                for m in result["models"] if (m["encoder"], m["history_length"]) == (best["encoder"],
                                                                                     best["history_length"])}
        _write_datasets(table, out_dir)
    table["total_seconds"] = round(time.perf_counter() - start, 1)
    _write_datasets(table, out_dir)
    report(format_datasets(table))
    return table


def _spread(values: dict, metric: str) -> str:
    std = values.get(f"{metric}_std")
    return f"{values[metric]:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def format_datasets(table: dict) -> str:
    """The cross-dataset table: per dataset the best model (mean ± std over seeds) next to popularity, the
    last-3 chain and the best published result (on the users it is exact on), then every published row."""
    lines = ["| dataset | events | users | items trained | popularity | Markov (last 3) | model | recall@10 | "
             "NDCG@10 | × Markov | best published | × published | minutes |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for d in table["datasets"]:
        best = d["best"]
        ratio = f"{d['best_to_markov']:.2f}" if d["best_to_markov"] is not None else "–"
        recall = _spread(best, "recall@10")
        if "listed_recall@10" in best:
            recall += f" ({_spread(best, 'listed_recall@10')} on {best['listed_users']:,} listed users)"
        top = max(d.get("published", []), key=lambda a: a["recall_at_10"], default=None)
        published = f"{top['model']} {top['recall_at_10']:.4f}" if top else "–"
        versus = f"{d['best_to_published']:.2f}" if d.get("best_to_published") is not None else "–"
        lines.append(f"| {d['dataset']} | {d['events']:,} | {d['users']:,} | {d['items']:,} | {d['popularity']:.4f} | "
                     f"{d['markov_last_3']:.4f} | {best['encoder']} N={best['history_length']} | {recall} | "
                     f"{_spread(best, 'ndcg@10')} | {ratio} | {published} | {versus} | {d['seconds'] / 60:.1f} |")
        if d.get("published"):
            rows = "; ".join(f"{a['model']} {a['recall_at_10']:.4f}" + (f" / {a['ndcg_at_10']:.4f}" if a["ndcg_at_10"]
                                                                         else "") + f" ({a['source']})"
                             for a in d["published"])
            notes.append(f"- {d['dataset']}, published HR@10 / NDCG@10 on {d['published_on']}: {rows}")
    if any("recall@10_std" in d["best"] for d in table["datasets"]):
        notes.insert(0, "Models: mean ± standard deviation over seeds.")
    return "\n".join(lines + ([""] + notes if notes else []) + format_ablation(table))


def format_ablation(table: dict) -> List[str]:
    """The ablation table (``--ablation``): test recall@10 of the default and of each change alone, per dataset
    (mean ± std over seeds, the change's relative difference to the default); [] without ablations."""
    datasets = [d for d in table["datasets"] if d.get("ablation")]
    if not datasets:
        return []
    lines = ["", "Ablation: test recall@10 (NDCG@10), one change at a time on the default model",
             "", "| change | " + " | ".join(d["dataset"] for d in datasets) + " |",
             "|---|" + "---|" * len(datasets)]
    for variant in dict.fromkeys(v for d in datasets for v in d["ablation"]):
        cells = []
        for d in datasets:
            values, default = d["ablation"].get(variant), d["ablation"][DEFAULT_VARIANT]
            if values is None:
                cells.append("–")
                continue
            change = "" if variant == DEFAULT_VARIANT else \
                f" {100 * (values['recall@10'] / default['recall@10'] - 1):+.1f} %"
            listed = f"; listed users {_spread(values, 'listed_recall@10')}" if "listed_recall@10" in values else ""
            cells.append(f"{_spread(values, 'recall@10')} ({values['ndcg@10']:.4f}){change}{listed}")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return lines


def _write_datasets(table: dict, out_dir: str) -> None:
    with open(os.path.join(out_dir, "datasets.json"), "w") as f:
        json.dump(table, f, indent=2)
    with open(os.path.join(out_dir, "datasets.md"), "w") as f:
        f.write(format_datasets(table) + "\n")
