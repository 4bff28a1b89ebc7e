"""BeamDagRunner with per-node progress taken from the orchestrator: a TFX hook, not log parsing.

BeamDagRunner runs every node through its ``_PIPELINE_NODE_DO_FN_CLS``; this one reports the node's start and,
from the node's newest MLMD execution once the launcher returns, its outcome (executed / cached) and duration
on the ``ondevice_rec.progress`` logger, which the console shows (``console.ConsoleHandler``). Module-level
classes: Beam pickles the DoFn.
"""

from __future__ import annotations

import logging
import time

from tfx.orchestration import metadata
from tfx.orchestration.beam import beam_dag_runner

from ondevice_rec.pipeline import mlmd

progress_log = logging.getLogger("ondevice_rec.progress")


def latest_execution(connection_config, pipeline_id: str, node_id: str):
    """The node's newest execution in MLMD, as the orchestrator recorded it (None if it has none)."""
    with metadata.Metadata(connection_config) as handle:
        context = handle.store.get_context_by_type_and_name("node", f"{pipeline_id}.{node_id}")
        executions = handle.store.get_executions_by_context(context.id) if context else []
        return max(executions, key=lambda e: e.id) if executions else None


class ReportingNode(beam_dag_runner.PipelineNodeAsDoFn):
    """Runs one node as BeamDagRunner does, reporting its start and its MLMD outcome."""

    def _run_node(self) -> None:
        progress_log.info("  \u25b8 %-32s started", self._node_id)
        start = time.time()
        try:
            super()._run_node()
        except BaseException:
            progress_log.info("  \u2717 %-32s FAILED   %7.1fs", self._node_id, time.time() - start)
            raise
        execution = latest_execution(self._mlmd_connection_config, self._pipeline_info.id, self._node_id)
        state = mlmd.state_name(execution) if execution is not None else "skipped"
        progress_log.info("  \u2713 %-32s %-8s %7.1fs", self._node_id, state, time.time() - start)


class ProgressBeamDagRunner(beam_dag_runner.BeamDagRunner):
    _PIPELINE_NODE_DO_FN_CLS = ReportingNode
