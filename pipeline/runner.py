"""Runs the pipeline locally (BeamDagRunner or LocalDagRunner) and summarises a run from MLMD."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import time
from typing import Callable, Dict, List, Optional

from ondevice_rec.pipeline.config import PipelineConfig

RUNNERS = ("beam", "local")
_STATE_NAMES = {3: "executed", 5: "cached", 4: "FAILED", 6: "canceled", 2: "running"}


@dataclasses.dataclass
class NodeResult:
    node_id: str
    state: str
    seconds: float


@dataclasses.dataclass
class RunSummary:
    run_id: str
    wall_seconds: float
    nodes: List[NodeResult]
    push: Dict[str, object]
    test_metrics: Dict[str, float]
    popularity: Dict[str, float]
    data: Dict[str, object] = dataclasses.field(default_factory=dict)  # input counts (ExampleGen, windowing)

    def node(self, node_id: str) -> NodeResult:
        return next(n for n in self.nodes if n.node_id == node_id)


class ProgressHandler(logging.Handler):
    """Turns the orchestrator's 'node X is running / finished' log lines into per-component progress."""

    _RUNNING = re.compile(r"^(?:node|Component) (\S+) is running\.?$")
    _FINISHED = re.compile(r"^(?:node|Component) (\S+) is finished\.?$")
    _CACHED = re.compile(r"^A cached execution \d+ is used\.$")

    def __init__(self, emit: Callable[[str], None]):
        super().__init__(logging.INFO)
        self._emit, self._started, self._cached = emit, {}, set()
        self._current: Optional[str] = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # pylint: disable=broad-except
            return
        if match := self._RUNNING.match(message):
            self._current = match.group(1)
            self._started[self._current] = time.time()
            self._emit(f"  ▸ {self._current:<32} started")
        elif self._CACHED.match(message) and self._current:
            self._cached.add(self._current)
        elif match := self._FINISHED.match(message):
            node = match.group(1)
            elapsed = time.time() - self._started.get(node, time.time())
            state = "cached" if node in self._cached else "finished"
            self._emit(f"  ✓ {node:<32} {state:<8} {elapsed:7.1f}s")
        elif record.name.startswith("ondevice_rec") and record.levelno >= logging.INFO:
            self._emit(f"      {message}")


def make_runner(kind: str):
    if kind == "beam":
        from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner
        return BeamDagRunner()
    if kind == "local":
        from tfx.orchestration.local.local_dag_runner import LocalDagRunner
        return LocalDagRunner()
    raise ValueError(f"unknown runner {kind!r}; choose one of {', '.join(RUNNERS)}")


def artifact_properties(artifact) -> Dict[str, object]:
    """An MLMD artifact's properties and custom properties as plain values."""
    def value(prop):
        kind = prop.WhichOneof("value")
        return getattr(prop, kind) if kind else None
    values = {k: value(v) for k, v in artifact.properties.items()}
    values.update({k: value(v) for k, v in artifact.custom_properties.items()})
    return values


def open_store(metadata_path: str):
    """The output folder's MLMD store, read-only."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata_path
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(connection)


def run_ids(metadata_path: str) -> List[str]:
    if not os.path.exists(metadata_path):
        return []
    store = open_store(metadata_path)
    runs = store.get_contexts_by_type("pipeline_run")
    return [r.name for r in sorted(runs, key=lambda r: r.create_time_since_epoch)]


def node_results(metadata_path: str, run_id: str) -> List[NodeResult]:
    """State and duration of every node execution of ``run_id``, in execution order."""
    store = open_store(metadata_path)
    run = store.get_context_by_type_and_name("pipeline_run", run_id)
    if run is None:
        raise KeyError(f"no pipeline run {run_id!r} in {metadata_path}")
    node_type = store.get_context_type("node")
    results = []
    for execution in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id):
        nodes = [c for c in store.get_contexts_by_execution(execution.id) if c.type_id == node_type.id]
        node_id = nodes[0].name.split(".", 1)[-1] if nodes else str(execution.id)
        results.append(NodeResult(node_id, _STATE_NAMES.get(execution.last_known_state, "unknown"),
                                  (execution.last_update_time_since_epoch - execution.create_time_since_epoch)
                                  / 1000.0))
    return results


def push_result(metadata_path: str, run_id: str) -> Dict[str, object]:
    """Custom properties of the PushedModel artifact the run produced (or reused from the cache)."""
    store = open_store(metadata_path)
    run = store.get_context_by_type_and_name("pipeline_run", run_id)
    for artifact in store.get_artifacts_by_context(run.id):
        if store.get_artifact_types_by_id([artifact.type_id])[0].name == "PushedModel":
            return {k: v for k, v in artifact_properties(artifact).items() if k in artifact.custom_properties}
    return {}


def _artifact(metadata_path: str, run_id: str, node_id: str, type_name: str):
    store = open_store(metadata_path)
    run = store.get_context_by_type_and_name("pipeline_run", run_id)
    for artifact in store.get_artifacts_by_context(run.id):
        if store.get_artifact_types_by_id([artifact.type_id])[0].name == type_name and f"/{node_id}/" in artifact.uri:
            return artifact
    return None


def _artifact_uri(metadata_path: str, run_id: str, node_id: str, type_name: str) -> Optional[str]:
    artifact = _artifact(metadata_path, run_id, node_id, type_name)
    return artifact.uri if artifact is not None else None


def data_counts(metadata_path: str, run_id: str) -> Dict[str, object]:
    """What the run read and what it set aside: ExampleGen's line counts and windowing's skips."""
    counts: Dict[str, object] = {}
    for node_id, keys in (("MovieLensExampleGen", ("span", "rating_lines", "bad_lines", "ratings_of_unlisted_movies")),
                          ("HistoryWindowing", ("users", "users_skipped", "duplicate_ratings"))):
        artifact = _artifact(metadata_path, run_id, node_id, "Examples")
        if artifact is None:
            continue
        properties = artifact_properties(artifact)
        counts.update({key: properties[key] for key in keys if key in properties})
        report = os.path.join(artifact.uri, "input_report.json")
        if os.path.exists(report):
            with open(report) as f:
                counts["bad_line_samples"] = [s["error"] for s in json.load(f)["bad_line_samples"]]
    return counts


def popularity_on_test(examples_uri: str) -> Dict[str, float]:
    """The popularity baseline on the test split of a windowed examples artifact."""
    from ondevice_rec.modules import metrics
    from ondevice_rec.modules.vocabulary import Vocabulary
    vocab = Vocabulary.load(examples_uri)
    examples = metrics.read_examples(os.path.join(examples_uri, "Split-test", "*"))
    return metrics.popularity_baseline([m.movie_id for m in vocab.movies], examples)


def summarize(config: PipelineConfig, run_id: str, wall_seconds: float = 0.0) -> RunSummary:
    nodes = node_results(config.metadata_path, run_id)
    push = push_result(config.metadata_path, run_id)
    test_metrics = {}
    version = push.get("pushed_version")
    if version:
        eval_path = os.path.join(config.serving_dir, str(version), "eval.json")
        if os.path.exists(eval_path):
            with open(eval_path) as f:
                test_metrics = json.load(f)
    examples_uri = _artifact_uri(config.metadata_path, run_id, "HistoryWindowing", "Examples")
    popularity = popularity_on_test(examples_uri) if examples_uri else {}
    return RunSummary(run_id, wall_seconds, nodes, push, test_metrics, popularity,
                      data_counts(config.metadata_path, run_id))


def run(config: PipelineConfig, runner: str = "beam") -> RunSummary:
    """Runs one pipeline cycle and returns its summary (raises if a component failed)."""
    from ondevice_rec.pipeline.pipeline import create_pipeline
    before = set(run_ids(config.metadata_path))
    os.makedirs(config.output_dir, exist_ok=True)
    start = time.time()
    make_runner(runner).run(create_pipeline(config))
    wall = time.time() - start
    new = [r for r in run_ids(config.metadata_path) if r not in before]
    if not new:
        raise RuntimeError("the pipeline run left no record in MLMD")
    return summarize(config, new[-1], wall)


def format_data_counts(counts: Dict[str, object]) -> List[str]:
    if "rating_lines" not in counts:
        return []
    lines = [f"Input: {counts['rating_lines']:,} ratings lines (span {counts.get('span', 0)}); "
             f"{counts.get('bad_lines', 0):,} malformed lines skipped; "
             f"{counts.get('ratings_of_unlisted_movies', 0):,} ratings of movies missing from the movies file kept "
             f"(no title or genres)"]
    for sample in counts.get("bad_line_samples", [])[:3]:
        lines.append(f"  skipped {sample}")
    if "users" in counts:
        lines.append(f"Windowing: {counts['users']:,} users; {counts.get('users_skipped', 0):,} with too few ratings "
                     f"skipped; {counts.get('duplicate_ratings', 0):,} repeated ratings of a movie dropped")
    return lines


def format_summary(summary: RunSummary) -> str:
    lines = [f"Run {summary.run_id} finished in {summary.wall_seconds:.1f}s", ""]
    lines.append(f"  {'component':<32} {'state':<9} {'seconds':>8}")
    for node in summary.nodes:
        lines.append(f"  {node.node_id:<32} {node.state:<9} {node.seconds:8.1f}")
    lines.append("")
    lines.extend(format_data_counts(summary.data))
    outcome = summary.push.get("push_outcome", "the pusher did not run")
    lines.append(f"Publish: {outcome}")
    if summary.push.get("pushed_destination"):
        lines.append(f"  model: {summary.push['pushed_destination']}/model.tflite")
    if summary.test_metrics:
        metrics = "  ".join(f"{k}={v:.4f}" for k, v in summary.test_metrics.items()
                            if k.startswith(("recall", "ndcg")) and v is not None)
        lines.append(f"Test split ({summary.test_metrics.get('num_eval_users')} users): {metrics}")
    if summary.popularity:
        metrics = "  ".join(f"{k}={v:.4f}" for k, v in summary.popularity.items())
        lines.append(f"Popularity baseline on the same split:  {metrics}")
    return "\n".join(lines)
