"""Runs the pipeline locally on BeamDagRunner, with per-node progress, and summarises a run from MLMD."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import socket
import time
from typing import Dict, Iterator, List

from ondevice_rec.components.tflite_pusher import publish
from ondevice_rec.modules import features, ranking_metrics
from ondevice_rec.modules.ranking_metrics import GATE
from ondevice_rec.modules.features import INPUT_REPORT_FILE
from ondevice_rec.pipeline import flink, mlmd
from ondevice_rec.pipeline.config import PipelineConfig
from ondevice_rec.pipeline.nodes import Nodes

RUNNERS = ("beam",)

@dataclasses.dataclass
class RunSummary:
    run_id: str
    wall_seconds: float
    nodes: List[mlmd.NodeResult]
    push: Dict[str, object]
    test_metrics: Dict[str, float]
    popularity: Dict[str, float]
    data: Dict[str, object] = dataclasses.field(default_factory=dict)  # input counts (ExampleGen, windowing)
    training: Dict[str, object] = dataclasses.field(default_factory=dict)  # the Trainer's training_summary.json

    def node(self, node_id: str) -> mlmd.NodeResult:
        return next(n for n in self.nodes if n.node_id == node_id)

    @property
    def failed(self) -> bool:
        """A component could not do its work (the pusher's release broke); a gate that refused is no failure."""
        return bool(self.push.get("push_failed"))


RUN_LOCK_FILE = ".run.lock"  # in the output folder, held by the run that uses it (``output_lock``)
_HELD_LOCKS: Dict[str, int] = {}


class OutputBusy(ValueError):
    """Another run holds the output folder (the CLI's exit 2: nothing of either run was touched)."""


@contextlib.contextmanager
def output_lock(output_dir: str) -> Iterator[None]:
    """Holds ``OUT/.run.lock`` (an flock, released by the system even when the process is killed) for a run, or
    raises OutputBusy naming its holder. Two runs on one folder shared one MLMD store and serving folder: both
    published, and the first one's summary read the other's state. Re-entrant within a process."""
    os.makedirs(output_dir, exist_ok=True)
    key = os.path.realpath(output_dir)
    if _HELD_LOCKS.get(key):
        _HELD_LOCKS[key] += 1
        try:
            yield
        finally:
            _HELD_LOCKS[key] -= 1
        return
    handle = open(os.path.join(output_dir, RUN_LOCK_FILE), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "a process"
        handle.close()
        raise OutputBusy(f"another run is using {output_dir} ({holder}); wait for it to end or choose another "
                         "--output-dir") from None
    handle.truncate(0)
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}")
    handle.flush()
    _HELD_LOCKS[key] = 1
    try:
        yield
    finally:
        del _HELD_LOCKS[key]
        handle.truncate(0)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def make_runner(kind: str = "beam"):
    """BeamDagRunner reporting each node's start and outcome (``progress_runner``)."""
    if kind == "beam":
        from ondevice_rec.pipeline.progress_runner import ProgressBeamDagRunner
        return ProgressBeamDagRunner()
    raise ValueError(f"unknown runner {kind!r}; choose one of {', '.join(RUNNERS)}")


# The main output of each data stage, by MLMD artifact type.
DATA_STAGE_OUTPUTS = {Nodes.EXAMPLE_GEN: "Examples", Nodes.STATISTICS_GEN: "ExampleStatistics",
                      Nodes.SCHEMA_GEN: "Schema", Nodes.EXAMPLE_VALIDATOR: "ExampleAnomalies",
                      Nodes.WINDOWING: "Examples", Nodes.TRANSFORM: "Examples"}


TRANSFORM_GRAPH = "transform_graph"  # run_data_stages' key of the Transform graph


def run_data_stages(config: PipelineConfig) -> Dict[str, str]:
    """Runs only the data stages of the pipeline (ExampleGen to Transform, ``data_components``) on
    BeamDagRunner, with the config's cache setting; returns ``{node id: uri of its main output}`` from MLMD
    (Transform: its transformed examples; ``TRANSFORM_GRAPH``: its transform graph). The benchmarks train on
    exactly what the pipeline's Trainer would read."""
    with output_lock(config.output_dir):
        return _run_data_stages(config)


def _run_data_stages(config: PipelineConfig) -> Dict[str, str]:
    from tfx import v1 as tfx
    from ondevice_rec.pipeline.pipeline import data_components, name_beam_jobs
    before = set(mlmd.run_ids(config.metadata_path))
    components = list(data_components(config))
    name_beam_jobs(components, config.beam_pipeline_args())
    with flink.stage_session(config.beam_pipeline_args()) as beam_args:
        make_runner().run(tfx.dsl.Pipeline(
            pipeline_name=config.pipeline_name, pipeline_root=config.pipeline_root,
            components=components, enable_cache=config.enable_cache, beam_pipeline_args=beam_args,
            metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
                config.metadata_path)))
    store = mlmd.Store(config.metadata_path)
    run_id = [r for r in store.run_ids() if r not in before][-1]
    outputs = {}
    for node_id, type_name in DATA_STAGE_OUTPUTS.items():
        artifact = store.run_artifact(run_id, type_name, node_id)
        if artifact is None:
            raise RuntimeError(f"the data stages of run {run_id} left no {type_name} of {node_id}")
        outputs[node_id] = artifact.uri
    graph = store.run_artifact(run_id, "TransformGraph", Nodes.TRANSFORM)
    outputs[TRANSFORM_GRAPH] = graph.uri
    return outputs


def data_counts(store: mlmd.Store, run_id: str) -> Dict[str, object]:
    """What the run read and what it set aside: ExampleGen's line counts and windowing's skips."""
    counts: Dict[str, object] = {}
    for node_id, keys in ((Nodes.EXAMPLE_GEN, ("span",) + features.INPUT_REPORT_COUNTS),
                          (Nodes.WINDOWING, ("users", "users_skipped", "duplicate_events", "training_events"))):
        artifact = store.run_artifact(run_id, "Examples", node_id)
        if artifact is None:
            continue
        properties = mlmd.artifact_properties(artifact)
        counts.update({key: properties[key] for key in keys if key in properties})
        report_path = os.path.join(artifact.uri, INPUT_REPORT_FILE)
        if os.path.exists(report_path):
            with open(report_path) as f:
                report = json.load(f)
            counts["bad_line_samples"] = [s["error"] for s in report["bad_line_samples"]]
            counts["item_samples"] = report.get("item_samples", [])
    return counts


def popularity_on_test(examples_uri: str, transform_graph_uri: str) -> Dict[str, float]:
    """The popularity baseline on the test split of transformed examples (index order is popularity order)."""
    import tensorflow_transform as tft
    from ondevice_rec.modules import baselines
    size = tft.TFTransformOutput(transform_graph_uri).vocabulary_size_by_name(features.ITEM_VOCABULARY)
    examples = baselines.read_examples(features.split_files(examples_uri, "test"))
    return baselines.popularity_baseline(list(range(1, size + 1)), examples)


def baselines_on_test(examples_uri: str, transform_graph_uri: str) -> Dict[str, Dict[str, float]]:
    """Popularity and the Markov chains on the test split of a run's transformed examples."""
    import tensorflow_transform as tft
    from ondevice_rec.modules import baselines
    size = tft.TFTransformOutput(transform_graph_uri).vocabulary_size_by_name(features.ITEM_VOCABULARY)
    return baselines.split_baselines(list(range(1, size + 1)),
                                     baselines.read_examples(features.split_files(examples_uri, "test")))


def summarize(config: PipelineConfig, run_id: str, wall_seconds: float = 0.0) -> RunSummary:
    store = mlmd.Store(config.metadata_path)
    push = store.push_result(run_id)
    test_metrics = {}
    version = push.get("pushed_version")
    if version:
        eval_path = os.path.join(config.serving_dir, str(version), publish.EVAL_FILE)
        if os.path.exists(eval_path):
            with open(eval_path) as f:
                test_metrics = json.load(f)
    transformed = store.run_artifact(run_id, "Examples", Nodes.TRANSFORM)
    graph = store.run_artifact(run_id, "TransformGraph", Nodes.TRANSFORM)
    popularity = popularity_on_test(transformed.uri, graph.uri) if transformed and graph else {}
    return RunSummary(run_id, wall_seconds, store.node_results(run_id), push, test_metrics, popularity,
                      data_counts(store, run_id), training_summary(store, run_id))


def training_summary(store: mlmd.Store, run_id: str) -> Dict[str, object]:
    """How the run's model was trained (``modules.trainer.write_training_summary``, in the Trainer's ModelRun,
    new or reused from the cache); {} when there is none."""
    model_run = store.run_artifact(run_id, "ModelRun", Nodes.TRAINER)
    path = os.path.join(model_run.uri, features.TRAINING_SUMMARY_FILE) if model_run else ""
    if not path or not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def run(config: PipelineConfig, runner: str = "beam") -> RunSummary:
    """Runs one pipeline cycle and returns its summary (raises if a component failed)."""
    from ondevice_rec.pipeline.pipeline import create_pipeline
    with output_lock(config.output_dir):
        before = set(mlmd.run_ids(config.metadata_path))
        start = time.time()
        with flink.stage_session(config.beam_pipeline_args()) as beam_args:
            make_runner(runner).run(create_pipeline(config, beam_args=beam_args))
        wall = time.time() - start
    new = [r for r in mlmd.run_ids(config.metadata_path) if r not in before]
    if not new:
        raise RuntimeError("the pipeline run left no record in MLMD")
    return summarize(config, new[-1], wall)


def format_data_counts(counts: Dict[str, object]) -> List[str]:
    if "input_lines" not in counts:
        return []
    lines = [f"Input: {counts['input_lines']:,} lines (span {counts.get('span', 0)}): {counts.get('events', 0):,} "
             f"events; {counts.get('bad_lines', 0):,} malformed lines skipped; "
             f"{counts.get('filtered_events', 0):,} filtered out by the spec; "
             f"{counts.get('events_of_unlisted_items', 0):,} events of items missing from the items file kept "
             f"(no title or features)"]
    for sample in counts.get("bad_line_samples", [])[:3]:
        lines.append(f"  skipped {sample}")
    if counts.get("item_rows_skipped") or counts.get("duplicate_item_keys"):
        lines.append(f"Items file: {counts.get('item_rows_skipped', 0):,} unusable rows skipped; "
                     f"{counts.get('duplicate_item_keys', 0):,} rows repeating an earlier row's key ignored (the "
                     f"first row of a key is kept)")
        lines.extend(f"  {sample}" for sample in counts.get("item_samples", [])[:3])
    if "users" in counts:
        lines.append(f"Windowing: {counts['users']:,} users; {counts.get('users_skipped', 0):,} with too few events "
                     f"skipped; {counts.get('duplicate_events', 0):,} repeated events of an item dropped; "
                     f"{counts.get('training_events', 0):,} training events")
    return lines


def format_summary(summary: RunSummary) -> str:
    lines = [f"Run {summary.run_id} finished in {summary.wall_seconds:.1f}s", ""]
    lines.append(f"  {'component':<32} {'state':<9} {'seconds':>8}")
    for node in summary.nodes:
        lines.append(f"  {node.node_id:<32} {node.state:<9} {node.seconds:8.1f}")
    lines.append("")
    lines.extend(format_data_counts(summary.data))
    if summary.training:
        t = summary.training
        lines.append(f"Training: {t['epochs_run']} epochs in {t['train_seconds']:.0f}s, stopped by {t['stopped_by']}; "
                     f"kept epoch {t['best_epoch']} (eval {GATE.title} {t['best_val_recall_at_10']:.4f})")
        if t.get("derived"):
            lines.append("  derived from the data: " + "; ".join(f"{k} {v}" for k, v in t["derived"].items()))
    outcome = summary.push.get("push_outcome", "the pusher did not run")
    lines.append(f"Publish: {outcome}")
    if summary.push.get("pushed_destination"):
        lines.append(f"  model: {summary.push['pushed_destination']}/model.tflite")
    if summary.failed:
        lines.append("  the release failed: see the log for the traceback")
    if summary.test_metrics:
        metrics = "  ".join(f"{k}={summary.test_metrics[k]:.4f}" for k in ranking_metrics.NAMES
                            if summary.test_metrics.get(k) is not None)
        lines.append(f"Test split ({summary.test_metrics.get('num_eval_users')} users): {metrics}")
    if summary.popularity:
        metrics = "  ".join(f"{k}={v:.4f}" for k, v in summary.popularity.items())
        lines.append(f"Popularity baseline on the same split:  {metrics}")
    return "\n".join(lines)
