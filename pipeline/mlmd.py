"""The one reader of an output folder's ML Metadata store: runs, node executions, artifacts and lineage.

The run summary (``runner``), the HTML report (``report``) and the benchmarks read MLMD only through here.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional

# MLMD Execution.State values.
_STATE_NAMES = {2: "running", 3: "executed", 4: "FAILED", 5: "cached", 6: "canceled"}
TERMINAL_STATES = ("executed", "cached", "FAILED", "canceled")


@dataclasses.dataclass
class NodeResult:
    node_id: str
    state: str
    seconds: float


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
    if not os.path.exists(metadata_path):
        raise FileNotFoundError(f"no ML Metadata store at {metadata_path}: is this a pipeline output folder?")
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata_path
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(connection)


class Store:
    """Read-only queries over one MLMD store."""

    def __init__(self, metadata_path: str):
        self.path = metadata_path
        self.store = open_store(metadata_path)

    # Runs and executions.
    def run_ids(self) -> List[str]:
        runs = self.store.get_contexts_by_type("pipeline_run")
        return [r.name for r in sorted(runs, key=lambda r: r.create_time_since_epoch)]

    def _run(self, run_id: str):
        run = self.store.get_context_by_type_and_name("pipeline_run", run_id)
        if run is None:
            raise KeyError(f"no pipeline run {run_id!r} in {self.path}")
        return run

    def node(self, execution) -> str:
        """The node id an execution belongs to."""
        for context in self.store.get_contexts_by_execution(execution.id):
            if self.store.get_context_types_by_id([context.type_id])[0].name == "node":
                return context.name.split(".", 1)[-1]
        return str(execution.id)

    def run_id(self, execution) -> str:
        for context in self.store.get_contexts_by_execution(execution.id):
            if self.store.get_context_types_by_id([context.type_id])[0].name == "pipeline_run":
                return context.name
        return "?"

    def run_started(self, run_id: str) -> float:
        """When the run began, in seconds since the epoch (its context's creation)."""
        return self._run(run_id).create_time_since_epoch / 1000.0

    def run_execution(self, run_id: str, node_id: str):
        """The run's execution of ``node_id`` (executed or cached), else None."""
        for execution in self.store.get_executions_by_context(self._run(run_id).id):
            if self.node(execution) == node_id:
                return execution
        return None

    def run_output(self, run_id: str, node_id: str, key: str):
        """The ``key`` output of the run's execution of ``node_id`` (new, or reused from the cache), else None."""
        execution = self.run_execution(run_id, node_id)
        return self.outputs(execution.id).get(key) if execution is not None else None

    def node_results(self, run_id: str) -> List[NodeResult]:
        """State and duration of every node execution of ``run_id``, in execution order."""
        executions = sorted(self.store.get_executions_by_context(self._run(run_id).id), key=lambda e: e.id)
        return [NodeResult(self.node(e), state_name(e),
                           (e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000.0)
                for e in executions]

    # Artifacts.
    def type_name(self, artifact) -> str:
        return self.store.get_artifact_types_by_id([artifact.type_id])[0].name

    def run_artifact(self, run_id: str, type_name: str, node_id: Optional[str] = None):
        """The artifact of ``type_name`` (produced by ``node_id``, when given) that run ``run_id`` produced
        or reused from the cache, else None. Read from the outputs of the run's executions (cached ones record
        theirs too): the run's context also holds what it read, e.g. the resolver's blessing and model of an
        earlier run, which a lookup by type and folder in the context returned for a retraining cycle."""
        executions = sorted(self.store.get_executions_by_context(self._run(run_id).id), key=lambda e: e.id)
        for execution in executions:
            if node_id is not None and self.node(execution) != node_id:
                continue
            for artifact in self.outputs(execution.id).values():
                if self.type_name(artifact) == type_name:
                    return artifact
        return None

    def push_result(self, run_id: str) -> Dict[str, object]:
        """Custom properties of the PushedModel artifact the run produced (or reused from the cache)."""
        artifact = self.run_artifact(run_id, "PushedModel")
        if artifact is None:
            return {}
        return {k: v for k, v in artifact_properties(artifact).items() if k in artifact.custom_properties}

    def publish_of(self, version: str):
        """The PushedModel artifact that published ``version``."""
        for artifact in self.store.get_artifacts_by_type("PushedModel"):
            properties = artifact_properties(artifact)
            if properties.get("pushed_version") == version and properties.get("pushed") == 1:
                return artifact
        return None

    # Lineage.
    def _events(self, execution_id: int, kind) -> Dict[str, object]:
        result = {}
        for event in self.store.get_events_by_execution_ids([execution_id]):
            if event.type == kind and event.path.steps:
                result[event.path.steps[0].key] = self.store.get_artifacts_by_id([event.artifact_id])[0]
        return result

    def inputs(self, execution_id: int) -> Dict[str, object]:
        """``{key: artifact}`` of an execution's inputs."""
        from ml_metadata.proto import metadata_store_pb2
        return self._events(execution_id, metadata_store_pb2.Event.INPUT)

    def outputs(self, execution_id: int) -> Dict[str, object]:
        from ml_metadata.proto import metadata_store_pb2
        return self._events(execution_id, metadata_store_pb2.Event.OUTPUT)

    def producer(self, artifact):
        from ml_metadata.proto import metadata_store_pb2
        for event in self.store.get_events_by_artifact_ids([artifact.id]):
            if event.type == metadata_store_pb2.Event.OUTPUT:
                return self.store.get_executions_by_id([event.execution_id])[0]
        return None

    def consumers(self, artifact) -> List[object]:
        from ml_metadata.proto import metadata_store_pb2
        ids = [e.execution_id for e in self.store.get_events_by_artifact_ids([artifact.id])
               if e.type == metadata_store_pb2.Event.INPUT]
        return self.store.get_executions_by_id(ids) if ids else []


def state_name(execution) -> str:
    return _STATE_NAMES.get(execution.last_known_state, "unknown")


def run_ids(metadata_path: str) -> List[str]:
    return Store(metadata_path).run_ids() if os.path.exists(metadata_path) else []


def node_results(metadata_path: str, run_id: str) -> List[NodeResult]:
    return Store(metadata_path).node_results(run_id)
