"""The pipeline's Beam stages on DirectRunner and on a multi-worker portable engine: same outputs?

Runs the data stages (EventExampleGen, StatisticsGen, ImportSchemaGen, ExampleValidator, HistoryWindowing)
of the real pipeline twice, unchanged, differing only in ``beam_pipeline_args``: once on the DirectRunner and
once on ``LocalPortableCluster`` (job service + external pool of SDK worker processes). Compares every
output (examples record by record per split, the transformed examples, statistics counts, the anomalies), prints wall
times and writes JSON.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import json
import os
import platform
import time
from typing import Dict

from ondevice_rec.benchmarks.data import temporary_work_dir
from ondevice_rec.modules import features
from ondevice_rec.pipeline.config import PipelineConfig
from ondevice_rec.pipeline.nodes import Nodes
from ondevice_rec.pipeline.portable_beam import LocalPortableCluster
from ondevice_rec.pipeline.runner import run_data_stages


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


def compare(direct: Dict[str, str], portable: Dict[str, str]) -> Dict[str, bool]:
    """Stage-by-stage equality of the two runs' outputs."""
    return {
        Nodes.EXAMPLE_GEN: _records(direct[Nodes.EXAMPLE_GEN]) == _records(portable[Nodes.EXAMPLE_GEN]),
        Nodes.STATISTICS_GEN: _statistics_counts(direct[Nodes.STATISTICS_GEN]) == _statistics_counts(
            portable[Nodes.STATISTICS_GEN]),
        Nodes.EXAMPLE_VALIDATOR: _anomalies(direct[Nodes.EXAMPLE_VALIDATOR]) == _anomalies(
            portable[Nodes.EXAMPLE_VALIDATOR]),
        Nodes.WINDOWING: _records(direct[Nodes.WINDOWING]) == _records(portable[Nodes.WINDOWING]),
        Nodes.TRANSFORM: _records(direct[Nodes.TRANSFORM]) == _records(portable[Nodes.TRANSFORM]),
    }


@temporary_work_dir("beam-runners-")
def run(data_dir: str, work_dir: str = "", workers: int = 2, out_json: str = "") -> dict:
    base = PipelineConfig(data_dir=data_dir, output_dir=os.path.join(work_dir, "direct"))
    start = time.time()
    direct = run_data_stages(base)
    direct_seconds = time.time() - start
    with LocalPortableCluster(workers=workers, log_dir=os.path.join(work_dir, "cluster")) as cluster:
        portable_config = dataclasses.replace(base, output_dir=os.path.join(work_dir, "portable"),
                                              beam_args=cluster.beam_args())
        start = time.time()
        portable = run_data_stages(portable_config)
        portable_seconds = time.time() - start
        sdk_workers = cluster.worker_starts()
    same = compare(direct, portable)
    windowed = _records(direct[Nodes.WINDOWING])
    result = {
        "data_dir": os.path.abspath(data_dir),
        "stages": list(Nodes.DATA_STAGES),
        "direct_runner": {"args": base.beam_pipeline_args(), "seconds": round(direct_seconds, 1)},
        "portable_runner": {"args": portable_config.beam_pipeline_args(), "seconds": round(portable_seconds, 1),
                            "workers_per_stage": workers, "sdk_worker_processes_started": sdk_workers},
        "identical": same,
        "all_identical": all(same.values()),
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
    lines = [f"Beam data stages ({', '.join(result['stages'])}) on {result['data_dir']}",
             f"  DirectRunner (in-memory)         {result['direct_runner']['seconds']:8.1f} s",
             f"  PortableRunner, local cluster    {result['portable_runner']['seconds']:8.1f} s   "
             f"({result['portable_runner']['sdk_worker_processes_started']} SDK worker processes started by the pool)",
             "  windowed examples: " + ", ".join(f"{k} {v}" for k, v in result["windowed_examples"].items()),
             "  identical outputs: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in result["identical"].items())]
    return "\n".join(lines)

