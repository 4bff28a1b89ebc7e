"""``ondevice-rec report --output-dir OUT``: one self-contained HTML page for whoever owns OUT's (scheduled) pipeline.

From ML Metadata: the serving model's lineage, walking back from the publish of the version ``latest`` points
to (pusher -> blessing, test evaluation, model, windowed examples -> ExampleGen span -> statistics), its
training curve (the Trainer's ``training_summary.json``), popularity and the Markov chains on its test split,
and the **history of every run** in the store: when, which data, eval and test recall@10, blessed or not and
against what, what was published and how big, with a plot of recall over time. Benchmark sections (a quality
or latency JSON) appear when those files are given or found under ``benchmarks/results``.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import os
import time
from typing import Dict, List, Optional

from ondevice_rec.components.tflite_pusher import publish
from ondevice_rec.components.tflite_pusher.executor import BASELINE, CANDIDATE, read_evaluations
from ondevice_rec.modules import features, ranking_metrics
from ondevice_rec.modules.ranking_metrics import GATE, METRICS
from ondevice_rec.pipeline import config, mlmd
from ondevice_rec.pipeline.nodes import Nodes

DEFAULT_RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "results")


TIME_FEATURE = features.EVENT_TIMESTAMP  # seconds since the epoch: shown as dates
# Event features whose value 0 marks "missing" (a log without times): the report's statistics leave those zeros
# out. An item without a value of a numeric item feature has none (the feature is absent), not a 0.
ZERO_IS_MISSING = (TIME_FEATURE,)


def summarised_feature(name: str) -> Optional[str]:
    """The report's label for an event feature it summarises (rating, time, every numeric item feature such as
    the year of a MovieLens title), None for the others."""
    if name in (features.EVENT_RATING, TIME_FEATURE):
        return name
    if name.startswith(features.NUMERIC_PREFIX):
        return f"item {name[len(features.NUMERIC_PREFIX):]}"
    return None


def _numeric_summary(name: str, feature) -> Dict[str, object]:
    """min / mean / max of a TFDV numeric feature, its zeros left out where 0 marks a missing value (the min
    then comes from the histogram: the lower edge of the lowest non-empty bucket above 0)."""
    stats = feature.num_stats
    count = stats.common_stats.num_non_missing
    zeros = int(stats.num_zeros) if name in ZERO_IS_MISSING else 0
    summary = {"min": stats.min, "mean": stats.mean, "max": stats.max, "missing_as_zero": zeros}
    if zeros and count > zeros:
        summary["mean"] = stats.mean * count / (count - zeros)
        edges = [b.low_value if b.low_value > 0 else b.high_value for h in stats.histograms for b in h.buckets
                 if b.sample_count > 0 and b.high_value > 0]
        summary["min"] = min(edges) if edges else stats.min
    return summary


def _statistics(lineage: mlmd.Store, events_artifact) -> Dict[str, object]:
    """Events (ExampleGen's count) and numeric summaries (padding zeros excluded) from the StatisticsGen run on
    the ExampleGen output: over its ``sample`` split, a uniform sample of the events on a large log."""
    from tensorflow_data_validation.utils import stats_util
    for execution in lineage.consumers(events_artifact):
        statistics = lineage.outputs(execution.id).get("statistics")
        if statistics is None:
            continue
        path = os.path.join(features.split_dir(statistics.uri, features.SAMPLE_SPLIT), "FeatureStats.pb")
        if not os.path.exists(path):
            continue
        dataset = stats_util.load_stats_binary(path).datasets[0]
        numeric = {}
        for feature in dataset.features:
            name = feature.path.step[0]
            if feature.HasField("num_stats") and summarised_feature(name):
                numeric[name] = _numeric_summary(name, feature)
        events = mlmd.artifact_properties(events_artifact).get("events", dataset.num_examples)
        return {"events": events, "sampled_events": dataset.num_examples, "numeric": numeric}
    return {}


def _date(seconds: float, with_time: bool = False) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M UTC" if with_time else "%Y-%m-%d")


def _threshold(evaluator_execution, metric: str = GATE.name) -> Dict[str, float]:
    """The blessing rule the Evaluator ran with: the metric's value lower bound and change threshold."""
    text = evaluator_execution.custom_properties["eval_config"].string_value if evaluator_execution is not None \
        and "eval_config" in evaluator_execution.custom_properties else ""
    if not text:
        return {}
    for spec in json.loads(text).get("metrics_specs", []):
        for entry in spec.get("metrics", []):
            if json.loads(entry.get("config", "{}")).get("name") == metric and "threshold" in entry:
                threshold = entry["threshold"]
                return {"lower_bound": threshold.get("value_threshold", {}).get("lower_bound"),
                        "change": threshold.get("change_threshold", {}).get("absolute")}
    return {}


def run_history(lineage: mlmd.Store) -> List[Dict[str, object]]:
    """One row per pipeline run in the store, oldest first: when, data, every eval / test metric (``eval``,
    ``test``; the serving model's eval metrics: ``baseline``), blessing and its reason, what was published."""
    rows = []
    for run_id in lineage.run_ids():
        row: Dict[str, object] = {"run_id": run_id, "started": lineage.run_started(run_id)}
        events = lineage.run_output(run_id, Nodes.EXAMPLE_GEN, "examples")
        if events is not None:
            row["span"] = mlmd.artifact_properties(events).get("span")
            times = _statistics(lineage, events).get("numeric", {}).get(TIME_FEATURE)
            if times and times["max"] > 0:
                row["data_from"], row["data_to"] = times["min"], times["max"]
        for node, key in ((Nodes.EVALUATOR, "eval"), (Nodes.TEST_EVALUATOR, "test")):
            evaluation = lineage.run_output(run_id, node, "evaluation")
            if evaluation is not None and os.path.isdir(evaluation.uri):
                metrics = read_evaluations(evaluation.uri)
                row[key] = {name: metrics.get(CANDIDATE, {}).get(name) for name in ranking_metrics.NAMES}
                if key == "eval" and BASELINE in metrics:
                    row["baseline"] = {name: metrics[BASELINE].get(name) for name in ranking_metrics.NAMES}
        blessing = lineage.run_output(run_id, Nodes.EVALUATOR, "blessing")
        evaluator = lineage.run_execution(run_id, Nodes.EVALUATOR)
        if blessing is not None:
            row["blessed"] = mlmd.artifact_properties(blessing).get("blessed")
            row["threshold"] = _threshold(evaluator)
            baseline = lineage.inputs(evaluator.id).get("baseline_model") if evaluator is not None else None
            producer = lineage.producer(baseline) if baseline is not None else None
            row["baseline_run"] = lineage.run_id(producer) if producer is not None else None
        row["blessing_reason"] = _blessing_reason(row)
        push = lineage.push_result(run_id)
        row["published"] = push.get("pushed_version") if push.get("pushed") == 1 else None
        row["publish_outcome"] = push.get("push_outcome")
        row["model_bytes"] = push.get("tflite_bytes")
        rows.append(row)
    return rows


def _gate(row: Dict[str, object], key: str) -> Optional[float]:
    """The blessing metric of a history row's ``eval``, ``test`` or ``baseline`` metrics."""
    return (row.get(key) or {}).get(GATE.name)


def _blessing_reason(row: Dict[str, object]) -> str:
    if "blessed" not in row:
        return "no Evaluator ran"
    value, threshold = _gate(row, "eval"), row.get("threshold") or {}
    bound, change = threshold.get("lower_bound"), threshold.get("change")
    parts = []
    if value is not None and bound is not None:
        parts.append(f"{GATE.title} {value:.4f} {'>=' if value >= bound else '<'} floor {bound:g}")
    if row.get("baseline_run"):
        base = _gate(row, "baseline")
        if base is not None and change is not None:
            allowed = base + change
            parts.append(f"{'>=' if value is not None and value >= allowed else '<'} the serving model's "
                         f"{base:.4f} {'+' if change >= 0 else '-'} {abs(change):.4g} (run {row['baseline_run']})")
    else:
        parts.append("no blessed model to compare with (first)")
    return "; ".join(parts)


def collect(output_dir: str, quality_json: Optional[str] = None, latency_json: Optional[str] = None) -> dict:
    """Everything the report shows, as plain data."""
    serving_dir = os.path.join(output_dir, config.SERVING_FOLDER)
    version = publish.current_version(serving_dir)
    if not version:
        raise FileNotFoundError(f"nothing is published in {serving_dir}; run the pipeline first")
    version_dir = os.path.join(serving_dir, version)
    metadata = publish.read_metadata(version_dir)
    report = {"output_dir": os.path.abspath(output_dir), "version": version, "metadata": metadata,
              "created": _date(time.time(), with_time=True),
              "model_bytes": os.path.getsize(os.path.join(version_dir, metadata["model_file"]))}
    with open(os.path.join(version_dir, publish.EVAL_FILE)) as f:
        report["test_metrics"] = json.load(f)

    lineage = mlmd.Store(os.path.join(output_dir, config.METADATA_FILE))
    pushed = lineage.publish_of(version)
    if pushed is not None:
        pusher = lineage.producer(pushed)
        inputs = lineage.inputs(pusher.id)
        report["run_id"] = lineage.run_id(pusher)
        report["publish"] = mlmd.artifact_properties(pushed)
        blessing = inputs.get("model_blessing")
        report["blessing"] = mlmd.artifact_properties(blessing) if blessing is not None else {}
        if blessing is not None:
            report["blessing"]["uri"] = blessing.uri
        model = inputs.get("model")
        report["model_uri"] = model.uri if model is not None else None
        transformed = inputs.get("examples")  # Transform's output; its input is HistoryWindowing's
        transform = lineage.producer(transformed) if transformed is not None else None
        windowed = lineage.inputs(transform.id).get("examples") if transform is not None else None
        if windowed is not None:
            report["windowing"] = mlmd.artifact_properties(windowed)
            windowing = lineage.producer(windowed)
            events = lineage.inputs(windowing.id).get("events") if windowing else None
            if events is not None:
                properties = mlmd.artifact_properties(events)
                report["data"] = {"uri": events.uri, **{k: v for k, v in properties.items()
                                                       if k in ("span", "input_fingerprint", "version")}}
                report["statistics"] = _statistics(lineage, events)
                producer = lineage.producer(events)
                report["data"]["produced_by_run"] = lineage.run_id(producer) if producer else "?"
    report["history"] = run_history(lineage)
    if report.get("run_id"):
        from ondevice_rec.pipeline import runner
        report["training"] = runner.training_summary(lineage, report["run_id"])
        transformed = lineage.run_artifact(report["run_id"], "Examples", Nodes.TRANSFORM)
        graph = lineage.run_artifact(report["run_id"], "TransformGraph", Nodes.TRANSFORM)
        if transformed is not None and graph is not None:
            report["baselines"] = runner.baselines_on_test(transformed.uri, graph.uri)
    quality_json = quality_json or _existing(os.path.join(DEFAULT_RESULTS, "quality.json"))
    latency_json = latency_json or _existing(os.path.join(DEFAULT_RESULTS, "latency.json"))
    if quality_json:
        with open(quality_json) as f:
            report["quality"] = json.load(f)
        png = os.path.splitext(quality_json)[0] + ".png"
        if os.path.exists(png):
            with open(png, "rb") as f:
                report["quality_png"] = base64.b64encode(f.read()).decode("ascii")
        report["quality_source"] = os.path.abspath(quality_json)
    if latency_json:
        with open(latency_json) as f:
            report["latency"] = json.load(f)
        report["latency_source"] = os.path.abspath(latency_json)
    return report


def _existing(path: str) -> Optional[str]:
    return path if os.path.exists(path) else None


def _table(header: List[str], rows: List[List[object]]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.4f}"
        return html.escape(str(v))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _image(png: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png}">'


def _history_plot(history: List[dict]) -> str:
    """eval and test values of the blessing metric of every run over time, published runs marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    when = [datetime.datetime.fromtimestamp(r["started"], datetime.timezone.utc) for r in history]
    for key in ("eval", "test"):
        points = [(w, _gate(r, key)) for w, r in zip(when, history) if _gate(r, key) is not None]
        if points:
            ax.plot(*zip(*points), marker="o", label=f"{key} {GATE.title}")
    published = [(w, _gate(r, "test")) for w, r in zip(when, history)
                 if r.get("published") and _gate(r, "test") is not None]
    if published:
        ax.scatter(*zip(*published), s=140, facecolors="none", edgecolors="green", label="published")
    ax.set_ylabel(GATE.title)
    ax.set_title("Every run of this pipeline")
    ax.legend(loc="best", fontsize=8)
    fig.autofmt_xdate()
    return _png(fig)


def _history_section(report: dict) -> str:
    history = report.get("history") or []
    if not history:
        return "<p>No pipeline run is recorded in this output's MLMD store.</p>"

    def number(value, digits=4):
        return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "–"

    rows = []
    for r in history:
        data = (f"{_date(r['data_from'])} → {_date(r['data_to'])}" if "data_from" in r else "–")
        rows.append([_date(r["started"], with_time=True), r["run_id"], r.get("span", "–"), data,
                     number(_gate(r, "eval")), number(_gate(r, "test")),
                     {1: "yes", 0: "no"}.get(r.get("blessed"), "–"), r["blessing_reason"],
                     r.get("published") or "–", f"{r['model_bytes']:,}" if r.get("model_bytes") else "–"])
    return _table(["started", "run", "span", "data (event times)", f"eval {GATE.title}", f"test {GATE.title}",
                   "blessed", "why", "published", "model bytes"], rows) + _image(_history_plot(history), "recall over time")


def _training_plot(curve: Dict[str, List[float]]) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    fig, loss_axis = plt.subplots(figsize=(7.5, 3.2))
    epochs = list(range(1, len(curve.get("loss", [])) + 1))
    loss_axis.plot(epochs, curve.get("loss", []), color="tab:gray", marker=".", label="training loss")
    loss_axis.set_xlabel("epoch")
    loss_axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    loss_axis.set_ylabel("training loss")
    recall_axis = loss_axis.twinx()
    validation = curve.get(f"val_{GATE.name}", [])
    recall_axis.plot(epochs[:len(validation)], validation, color="tab:blue", marker="o", label=f"eval {GATE.title}")
    recall_axis.set_ylabel(f"eval {GATE.title}")
    fig.legend(loc="lower right", fontsize=8)
    loss_axis.set_title("Training of the serving model")
    return _png(fig)


def _training_section(report: dict) -> str:
    training = report.get("training") or {}
    curve = training.get("history") or {}
    if not curve.get("loss"):
        return "<p>The serving model's run recorded no training curve.</p>"
    lines = [f"<p>{training.get('epochs_run')} epochs in {training.get('train_seconds', 0):.0f}s, stopped by "
             f"{html.escape(str(training.get('stopped_by')))}; kept epoch {training.get('best_epoch')} (eval "
             f"{GATE.title} {training.get('best_val_recall_at_10', 0):.4f}).</p>"]
    if training.get("derived"):
        lines.append("<p>Derived from the data: " + html.escape("; ".join(
            f"{k} {v}" for k, v in training["derived"].items())) + ".</p>")
    rows = [[i + 1, curve["loss"][i]] + [(curve.get(f"val_{m.name}") or [None] * (i + 1))[i] for m in METRICS]
            for i in range(len(curve["loss"]))]
    return "\n".join(lines) + _table(["epoch", "training loss"] + [f"eval {m.title}" for m in METRICS], rows) + \
        _image(_training_plot(curve), "training curve")


def _baselines_section(report: dict) -> str:
    baselines = report.get("baselines")
    if not baselines:
        return "<p>No test split of the serving run was found for the baselines.</p>"
    rows = [["the serving model"] + [report["test_metrics"].get(k) for k in ranking_metrics.NAMES]]
    rows += [[name] + [values.get(k) for k in ranking_metrics.NAMES] for name, values in baselines.items()]
    return ("<p>The same test split, the same exclusions; the chains count transitions in the training "
            "events.</p>" + _table(["ranking"] + [m.title for m in METRICS], rows))


def _quality_section(report: dict) -> str:
    quality = report.get("quality")
    if not quality:
        return ("<p>No quality benchmark given. <code>ondevice-rec benchmark quality --data-dir DIR</code> "
                "writes <code>benchmarks/results/quality.json</code>, which this page then shows "
                "(or pass <code>--quality FILE</code>).</p>")
    keys = ranking_metrics.NAMES
    rows = [[name, "–"] + [metrics.get(k) for k in keys] for name, metrics in quality.get("baselines", {}).items()]
    rows += [[m["encoder"], m["history_length"]] + [m.get(k) for k in keys] for m in quality.get("models", [])]
    parts = [f"<p>From {html.escape(report['quality_source'])}: {html.escape(str(quality.get('dataset')))}, "
             f"{html.escape(str(quality.get('split')))}, {quality.get('num_test_users')} test users; excluded: "
             f"{html.escape(str(quality.get('exclusions')))}.</p>",
             _table(["model", "N"] + [m.title for m in METRICS], rows)]
    if report.get("quality_png"):
        parts.append(f'<img alt="{GATE.title} against history length" src="data:image/png;base64,'
                     f'{report["quality_png"]}">')
    return "\n".join(parts)


def _latency_section(report: dict) -> str:
    size = f"<p>Published model: {report['model_bytes']:,} bytes ({report['metadata'].get('quantization')}).</p>"
    latency = report.get("latency")
    if not latency:
        return size + ("<p>No latency benchmark given. <code>ondevice-rec benchmark latency --model "
                       "OUT/serving/latest</code> writes <code>benchmarks/results/latency.json</code>, which this page "
                       "then shows (or pass <code>--latency FILE</code>).</p>")
    rows = []
    for entry in latency.get("models") or [latency]:  # --all writes a list, --model one entry
        single = entry.get("tflite", {}).get("1_thread", {})
        micros = [single.get(k) for k in ("p50_us", "p90_us", "p99_us")] + [
            (entry.get("saved_model") or {}).get("p50_us")]
        rows.append([entry.get("encoder", "?"), entry.get("quantization", "?"), entry.get("tflite_bytes", "?")] +
                    [f"{v:.1f}" if isinstance(v, (int, float)) else "–" for v in micros])
    return size + f"<p>From {html.escape(report['latency_source'])}.</p>" + _table(
        ["encoder", "quantization", "bytes", "p50 µs", "p90 µs", "p99 µs", "SavedModel p50 µs"], rows)


def render(report: dict) -> str:
    meta = report["metadata"]
    test = report["test_metrics"]
    windowing = report.get("windowing", {})
    statistics = report.get("statistics", {})
    data = report.get("data", {})
    blessing = report.get("blessing", {})
    data_rows = [["dataset", meta.get("dataset", "?")], ["data span", data.get("span", "?")],
                 ["input fingerprint", data.get("input_fingerprint", "?")],
                 ["events", statistics.get("events", "?")], ["users", windowing.get("users", "?")],
                 ["users skipped (too short)", windowing.get("users_skipped", "?")],
                 ["items in the vocabulary", meta.get("num_recommendable_items", "?")],
                 ["split", windowing.get("split_mode", "?")],
                 ["examples train / eval / test", " / ".join(str(windowing.get(f"{s}_examples", "?"))
                                                            for s in ("train", "eval", "test"))]]
    sampled = f" (a sample of {statistics['sampled_events']:,} events)" \
        if statistics.get("sampled_events", statistics.get("events")) != statistics.get("events") else ""
    for name, stats in statistics.get("numeric", {}).items():
        zeros = f" ({stats['missing_as_zero']:,} events without a value left out)" if stats["missing_as_zero"] else ""
        if name == TIME_FEATURE and stats["max"] > 0:
            value = f"{_date(stats['min'])} / {_date(stats['mean'])} / {_date(stats['max'])}"
        else:
            value = f"{stats['min']:g} / {stats['mean']:.4g} / {stats['max']:g}"
        data_rows.append([f"{summarised_feature(name) or name} min / mean / max{zeros}{sampled}", value])
    lineage_rows = [["published version", report["version"]], ["pipeline run", report.get("run_id", "?")],
                    ["trained model", report.get("model_uri", "?")],
                    ["blessed", {1: "yes", 0: "no"}.get(blessing.get("blessed"), "?")],
                    ["compared with (baseline)", blessing.get("baseline_model", "none: first blessed model")],
                    ["blessing artifact", blessing.get("uri", "?")],
                    ["examples from run", data.get("produced_by_run", "?")],
                    ["publish outcome", report.get("publish", {}).get("push_outcome", "?")],
                    ["parity (float32 TFLite vs SavedModel, top-10 overlap)",
                     meta.get("parity", {}).get("parity_top10_overlap", "?")]]
    test_rows = [[k, v] for k, v in test.items()]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ondevice-rec report: {html.escape(report['version'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; max-width: 70rem; color: #1d1d1f; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1.5rem; }}
td, th {{ border: 1px solid #ddd; padding: 4px 8px; text-align: left; font-variant-numeric: tabular-nums; }}
th {{ background: #f4f4f6; }} img {{ max-width: 100%; }} code {{ background: #f4f4f6; padding: 0 3px; }}
</style></head><body>
<h1>ondevice-rec: the model serving from {html.escape(report['output_dir'])}</h1>
<p>{html.escape(meta.get('encoder', '?'))} encoder, history length {meta.get('history_length')},
top {meta.get('top_k')}, {html.escape(str(meta.get('quantization')))}; report written {report['created']}.</p>
<h2>Runs of this pipeline</h2>{_history_section(report)}
<h2>Data</h2>{_table(["", ""], data_rows)}
<h2>Test split of this run</h2>{_table(["metric", "value"], test_rows)}
<h2>Against popularity and the Markov chains</h2>{_baselines_section(report)}
<h2>Training</h2>{_training_section(report)}
<h2>Recall by encoder and history length</h2>{_quality_section(report)}
<h2>Latency and size</h2>{_latency_section(report)}
<h2>Lineage</h2>{_table(["", ""], lineage_rows)}
</body></html>
"""


def write(output_dir: str, out_path: Optional[str] = None, quality_json: Optional[str] = None,
          latency_json: Optional[str] = None) -> str:
    out_path = out_path or os.path.join(output_dir, "report.html")
    page = render(collect(output_dir, quality_json, latency_json))
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(page)
    return out_path
