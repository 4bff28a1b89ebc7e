"""The pipeline's Beam data stages on DirectRunner and on a local Flink cluster of 1 and 2 TaskManagers.

Runs the data stages (EventExampleGen, StatisticsGen, ImportSchemaGen, ExampleValidator, HistoryWindowing,
Transform) of the real pipeline once per engine, unchanged, differing only in ``beam_pipeline_args``: the
DirectRunner's defaults, then ``--flink-master`` of a ``LocalFlinkCluster`` started here with N TaskManagers of
one slot each (one run per N). Compares every output with the DirectRunner's (examples record by record per split,
the transformed examples, statistics counts, the anomalies), lists the Flink jobs from the cluster's REST API,
prints per-stage seconds and writes JSON.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import platform
import time
from typing import Dict, List, Sequence

from ondevice_rec.benchmarks.data import temporary_work_dir
from ondevice_rec.modules import features
from ondevice_rec.pipeline import flink, mlmd
from ondevice_rec.pipeline.config import PipelineConfig
from ondevice_rec.pipeline.nodes import Nodes
from ondevice_rec.pipeline.runner import run_data_stages

DIRECT = "direct"


def _records(uri: str) -> Dict[str, collections.Counter]:
    import tensorflow as tf
    splits = {}
    for split_dir in sorted(glob.glob(features.split_dir(uri, "*"))):
        files = sorted(glob.glob(os.path.join(split_dir, "*.gz")))
        # Canonical bytes: Transform writes the same examples with their features in another map order on
        # another runner (measured: equal when re-serialized deterministically, not as written).
        splits[os.path.basename(split_dir)] = collections.Counter(
            tf.train.Example.FromString(r.numpy()).SerializeToString(deterministic=True)
            for r in tf.data.TFRecordDataset(files, compression_type="GZIP"))
    return splits


def _statistics_counts(uri: str) -> Dict[str, dict]:
    from tensorflow_data_validation.utils import stats_util
    counts = {}
    for split_dir in sorted(glob.glob(features.split_dir(uri, "*"))):
        stats = stats_util.load_stats_binary(os.path.join(split_dir, "FeatureStats.pb"))
        dataset = stats.datasets[0]
        counts[os.path.basename(split_dir)] = {
            "num_examples": dataset.num_examples,
            "features": sorted(f.path.step[0] for f in dataset.features)}
    return counts


def _anomalies(uri: str) -> Dict[str, str]:
    from tensorflow_data_validation.utils import anomalies_util
    return {os.path.basename(os.path.dirname(p)): str(anomalies_util.load_anomalies_binary(p).anomaly_info)
            for p in sorted(glob.glob(os.path.join(features.split_dir(uri, "*"), "SchemaDiff.pb")))}


def compare(direct: Dict[str, str], other: Dict[str, str]) -> Dict[str, bool]:
    """Stage-by-stage equality of two runs' outputs."""
    return {
        Nodes.EXAMPLE_GEN: _records(direct[Nodes.EXAMPLE_GEN]) == _records(other[Nodes.EXAMPLE_GEN]),
        Nodes.STATISTICS_GEN: _statistics_counts(direct[Nodes.STATISTICS_GEN]) == _statistics_counts(
            other[Nodes.STATISTICS_GEN]),
        Nodes.EXAMPLE_VALIDATOR: _anomalies(direct[Nodes.EXAMPLE_VALIDATOR]) == _anomalies(
            other[Nodes.EXAMPLE_VALIDATOR]),
        Nodes.WINDOWING: _records(direct[Nodes.WINDOWING]) == _records(other[Nodes.WINDOWING]),
        Nodes.TRANSFORM: _records(direct[Nodes.TRANSFORM]) == _records(other[Nodes.TRANSFORM]),
    }


def _timed_data_stages(config: PipelineConfig) -> Dict:
    start = time.time()
    outputs = run_data_stages(config)
    wall = time.time() - start
    run_id = mlmd.run_ids(config.metadata_path)[-1]
    stages = {r.node_id: round(r.seconds, 1) for r in mlmd.node_results(config.metadata_path, run_id)}
    return {"outputs": outputs, "seconds": round(wall, 1), "stages": stages,
            "args": config.beam_pipeline_args()}


def engine_name(taskmanagers: int) -> str:
    return f"flink-{taskmanagers}tm"


@temporary_work_dir("beam-runners-")
def run(data_dir: str, work_dir: str = "", taskmanagers: Sequence[int] = (1, 2), out_json: str = "",
        rest_port: int = 0, events=None) -> dict:
    """The data stages of ``data_dir`` (``events``: its EventSpec; None: a MovieLens folder) on DirectRunner and
    on a local Flink cluster of each TaskManager count; every output compared record for record."""
    base = PipelineConfig(data_dir=data_dir, output_dir=os.path.join(work_dir, DIRECT), events=events)
    runs = {DIRECT: _timed_data_stages(base)}
    jobs: Dict[str, List[Dict]] = {}
    for count in taskmanagers:
        name = engine_name(count)
        port = rest_port or flink.free_port()
        with flink.LocalFlinkCluster(os.path.join(work_dir, f"cluster-{count}tm"), taskmanagers=count,
                                     rest_port=port) as cluster:
            config = PipelineConfig(data_dir=data_dir, output_dir=os.path.join(work_dir, name), events=events,
                                    beam_args=flink.beam_args(cluster.master))
            runs[name] = _timed_data_stages(config)
            jobs[name] = flink.jobs(cluster.master)
    windowed = _records(runs[DIRECT]["outputs"][Nodes.WINDOWING])
    identical = {name: compare(runs[DIRECT]["outputs"], r["outputs"]) for name, r in runs.items() if name != DIRECT}
    result = {
        "data_dir": os.path.abspath(data_dir),
        "stages": [s for s in Nodes.DATA_STAGES],
        "engines": {name: {k: v for k, v in r.items() if k != "outputs"} for name, r in runs.items()},
        "flink": {"version": flink.FLINK_VERSION, "beam": flink.BEAM_VERSION, "jobs": jobs},
        "identical": identical,
        "all_identical": all(all(v.values()) for v in identical.values()),
        "windowed_examples": {split: sum(c.values()) for split, c in windowed.items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    print(format_result(result))
    if out_json:
        os.makedirs(os.path.dirname(os.path.abspath(out_json)), exist_ok=True)
        with open(out_json, "w") as f:
            json.dump(result, f, indent=2)
    return result


def format_result(result: dict) -> str:
    engines = list(result["engines"])
    lines = [f"Beam data stages on {result['data_dir']} (Flink {result['flink']['version']}, one slot per "
             "TaskManager; seconds)",
             f"  {'stage':20s}" + "".join(f"{name:>12s}" for name in engines)]
    for stage in result["stages"] + ["whole run"]:
        row = [result["engines"][e]["seconds"] if stage == "whole run" else result["engines"][e]["stages"].get(stage)
               for e in engines]
        lines.append(f"  {stage:20s}" + "".join(f"{v:12.1f}" if v is not None else f"{'-':>12s}" for v in row))
    for name, jobs in result["flink"]["jobs"].items():
        lines.append(f"  {name}: {len(jobs)} Flink jobs, " + ", ".join(
            f"{j['name']} {j['state']} {j['seconds']:.0f}s on {len(j['taskmanagers'])} TM" for j in jobs))
    lines.append("  windowed examples: " + ", ".join(f"{k} {v}" for k, v in result["windowed_examples"].items()))
    for name, same in result["identical"].items():
        lines.append(f"  {name} outputs identical to DirectRunner's: "
                     + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in same.items()))
    return "\n".join(lines)
