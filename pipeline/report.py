"""``ondevice-rec report OUT``: one self-contained HTML page about the model serving from ``OUT``.

Data statistics and lineage come from ML Metadata, walking back from the publish of the version ``latest``
points to (pusher -> blessing, test evaluation, model, windowed examples -> ExampleGen span -> statistics).
The recall table and plot come from a quality-benchmark JSON/PNG, latency and size from a latency-benchmark
JSON, when given or found under ``benchmarks/results``; the page says so when they are missing.
"""

from __future__ import annotations

import base64
import html
import json
import os
import time
from typing import Dict, List, Optional

from ondevice_rec.components.event_example_gen.component import EVENTS_SPLIT
from ondevice_rec.components.tflite_pusher import publish
from ondevice_rec.modules import features
from ondevice_rec.pipeline import config, mlmd

DEFAULT_RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "results")


def _statistics(lineage: mlmd.Store, events_artifact) -> Dict[str, object]:
    """Rating events per split and numeric summaries from the StatisticsGen run on the ExampleGen output."""
    from tensorflow_data_validation.utils import stats_util
    for execution in lineage.consumers(events_artifact):
        statistics = lineage.outputs(execution.id).get("statistics")
        if statistics is None:
            continue
        path = os.path.join(features.split_dir(statistics.uri, EVENTS_SPLIT), "FeatureStats.pb")
        if not os.path.exists(path):
            continue
        dataset = stats_util.load_stats_binary(path).datasets[0]
        numeric = {}
        for feature in dataset.features:
            name = feature.path.step[0]
            if feature.HasField("num_stats") and name in ("rating", "timestamp", "year"):
                stats = feature.num_stats
                numeric[name] = {"min": stats.min, "max": stats.max, "mean": stats.mean}
        return {"events": dataset.num_examples, "numeric": numeric}
    return {}


def collect(output_dir: str, quality_json: Optional[str] = None, latency_json: Optional[str] = None) -> dict:
    """Everything the report shows, as plain data."""
    serving_dir = os.path.join(output_dir, config.SERVING_FOLDER)
    version = publish.current_version(serving_dir)
    if not version:
        raise FileNotFoundError(f"nothing is published in {serving_dir}; run the pipeline first")
    version_dir = os.path.join(serving_dir, version)
    metadata = publish.read_metadata(version_dir)
    report = {"output_dir": os.path.abspath(output_dir), "version": version, "metadata": metadata,
              "created": time.strftime("%Y-%m-%d %H:%M:%S"),
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


def _quality_section(report: dict) -> str:
    quality = report.get("quality")
    if not quality:
        return ("<p>No quality benchmark found. Run <code>ondevice-rec benchmark quality --data-dir DIR</code> "
                "and pass <code>--quality benchmarks/results/quality.json</code>.</p>")
    keys = tuple(f"recall@{k}" for k in features.RECALL_KS) + (f"ndcg@{features.NDCG_K}",)
    rows = [[name, "–"] + [metrics.get(k) for k in keys] for name, metrics in quality.get("baselines", {}).items()]
    rows += [[m["encoder"], m["history_length"]] + [m.get(k) for k in keys] for m in quality.get("models", [])]
    parts = [f"<p>From {html.escape(report['quality_source'])}: {html.escape(str(quality.get('dataset')))}, "
             f"{html.escape(str(quality.get('split')))}, {quality.get('num_test_users')} test users; excluded: "
             f"{html.escape(str(quality.get('exclusions')))}.</p>",
             _table(["model", "N"] + list(keys), rows)]
    if report.get("quality_png"):
        parts.append(f'<img alt="recall@10 against history length" src="data:image/png;base64,'
                     f'{report["quality_png"]}">')
    return "\n".join(parts)


def _latency_section(report: dict) -> str:
    size = f"<p>Published model: {report['model_bytes']:,} bytes ({report['metadata'].get('quantization')}).</p>"
    latency = report.get("latency")
    if not latency:
        return size + ("<p>No latency benchmark found. Run <code>ondevice-rec benchmark latency --model "
                       "OUT/serving/latest</code> and pass <code>--latency benchmarks/results/latency.json</code>.</p>")
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
    for name, stats in statistics.get("numeric", {}).items():
        data_rows.append([f"{name} min / mean / max", f"{stats['min']:g} / {stats['mean']:.3g} / {stats['max']:g}"])
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
<h2>Data</h2>{_table(["", ""], data_rows)}
<h2>Test split of this run</h2>{_table(["metric", "value"], test_rows)}
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
