"""Runs a compiled Kubeflow pipeline spec (KFP v2 IR, from ``kubeflow compile``) on this machine, task by task,
the way KFP's driver and launcher run it on a cluster, inside an image stand-in (``image.py`` beside it).

What is emulated, and on what authority:

* **Order and executor input**: KFP's own local-execution helpers (``kfp.local``): tasks in the order of
  ``graph_utils.topological_sort`` over each task's upstream tasks (``task_dependencies``); the ``ExecutorInput`` built as ``executor_input_utils.
  construct_executor_input`` builds it (input parameters from the task's constants or the pipeline's
  parameters, the component's defaults for the rest; input artifacts = the producer task's output artifacts,
  their type, uri and metadata as that task's executor output reported them; one output artifact per output
  definition at ``<task root>/<output key>``, whose parent folder exists and the folder itself not (KFP's
  launcher creates the parent only, ``prepareOutputFolders``); ``outputs.outputFile`` = ``<task root>/executor_output.json``),
  and the command's placeholders (``{{$}}`` = that input as JSON) resolved by ``placeholder_utils.
  replace_placeholders``. ``kfp.local`` itself refuses container tasks outside Docker and knows no resolver
  node, hence this module.
* **Container tasks**: ``command + args`` exactly as the spec gives them (TFX's ``kubeflow_v2_run_executor``
  entrypoint with the executor class path), run as a subprocess with the image's environment; image paths in
  the arguments are mapped to the stand-in's folders. A task's ``lifecycle.preCacheCheck`` (TFX's
  FileBasedExampleGen driver) runs first with the same input, as KFP's launcher does: it writes the resolved
  span/fingerprint to the output file, which TFX's entrypoint reads back (``kubeflow_v2_run_executor.
  _run_executor``). The outputs are what the entrypoint wrote to ``outputs.outputFile`` (TFX's
  ``translate_executor_output``), as KFP's launcher reads them.
* **Resolver nodes** (TFX's latest-blessed-model resolver compiles to two ``resolver`` executors with
  ``outputArtifactQueries``): the filter is evaluated against every artifact this launcher recorded under the
  pipeline root (``ARTIFACTS_FILE``, the stand-in for KFP's MLMD), newest first, one artifact per query, as
  TFX's ``step_builder._build_latest_blessed_model_resolver`` describes; the clauses TFX emits are supported
  (``schema_title=``, ``state=LIVE``, ``metadata.K.number_value=``, ``name=`` with an input-metadata
  placeholder) and anything else is refused.
* **Not emulated**: KFP caching (every task runs), retries, Kubernetes resources, a bucket file system (the
  pipeline root is a local folder).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import subprocess
import time
from typing import Dict, List, Optional

from kubeflow_stand_in.image import ImageStandIn

ARTIFACTS_FILE = "local-kfp-artifacts.jsonl"  # under the pipeline root: every output artifact of every run
EXECUTOR_OUTPUT_FILE = "executor_output.json"  # KFP's name (kfp.local.executor_input_utils)
_CLAUSE = re.compile(r'^\s*([\w.]+)\s*=\s*("(?:[^"\\]|\\.)*"|[\w.+-]+)\s*$')
_INPUT_METADATA = re.compile(r"\{\{\$\.inputs\.artifacts\['([^']+)'\]\.metadata\['([^']+)'\]\}\}")


@dataclasses.dataclass
class TaskOutcome:
    task: str
    kind: str  # "container" or "resolver"
    seconds: float
    returncode: int  # 0 for a resolver
    outputs: Dict[str, List[str]]  # output key -> artifact uris
    log_file: str = ""


@dataclasses.dataclass
class SpecRun:
    run_id: str
    pipeline_root: str
    tasks: List[TaskOutcome]
    environment: Dict[str, str]  # every task's whole environment

    @property
    def succeeded(self) -> bool:
        return all(t.returncode == 0 for t in self.tasks)


def load_pipeline_spec(path: str):
    """The PipelineSpec of a ``.yaml`` (PipelineSpec) or ``.json`` (PipelineJob) file, and its default root."""
    import yaml
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
    with open(path, encoding="utf-8") as f:
        document = yaml.safe_load(f) if path.endswith((".yaml", ".yml")) else json.load(f)
    root = document.get("defaultPipelineRoot", "")
    if "pipelineSpec" in document:  # PipelineJob
        root = document.get("runtimeConfig", {}).get("gcsOutputDirectory", root)
        document = document["pipelineSpec"]
    spec = pipeline_spec_pb2.PipelineSpec()
    json_format.ParseDict(document, spec, ignore_unknown_fields=True)
    return spec, root


def schema_title(artifact_type) -> str:
    """``tfx.Model`` from an artifact type given by title or by instance schema (TFX writes the latter)."""
    if artifact_type.schema_title:
        return artifact_type.schema_title
    match = re.search(r"^title:\s*(\S+)", artifact_type.instance_schema, re.M)
    return match.group(1) if match else ""


class ArtifactRecord:
    """Every output artifact the launcher saw, one JSON line each (what KFP keeps in its MLMD)."""

    def __init__(self, path: str):
        self.path = path

    def add(self, runtime_artifact, run_id: str, task: str) -> None:
        from google.protobuf import json_format
        entry = {"name": runtime_artifact.name, "schema_title": schema_title(runtime_artifact.type), "state": "LIVE",
                 "created": time.time(), "run_id": run_id, "task": task,
                 "artifact": json_format.MessageToDict(runtime_artifact)}
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def entries(self) -> List[dict]:
        if not os.path.isfile(self.path):
            return []
        with open(self.path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


def _matches(entry: dict, clauses: List[tuple]) -> bool:
    metadata = entry["artifact"].get("metadata", {})
    for key, value in clauses:
        if key == "schema_title" or key == "name" or key == "state":
            if str(entry[key]) != value:
                return False
        elif key.startswith("metadata.") and key.endswith(".number_value"):
            found = metadata.get(key[len("metadata."):-len(".number_value")])
            if not isinstance(found, (int, float)) or float(found) != float(value):
                return False
        else:
            raise ValueError(f"resolver filter clause {key!r} is not one this launcher evaluates")
    return True


def resolve_query(query: str, inputs, record: ArtifactRecord) -> list:
    """The newest recorded artifact matching a resolver's filter (``[]`` when none, or when the filter names
    metadata of an input artifact that is absent: nothing to resolve, as on a first run)."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    def metadata_value(match):
        artifacts = inputs.artifacts[match.group(1)].artifacts if match.group(1) in inputs.artifacts else []
        if not artifacts or match.group(2) not in artifacts[0].metadata:
            raise LookupError(match.group(0))
        value = artifacts[0].metadata[match.group(2)]
        return value if isinstance(value, str) else json.dumps(value)

    try:
        query = _INPUT_METADATA.sub(metadata_value, query)
    except LookupError:
        return []
    clauses = []
    for part in re.split(r"\s+AND\s+", query.strip()):
        match = _CLAUSE.match(part)
        if not match:
            raise ValueError(f"resolver filter {query!r}: cannot read {part!r}")
        value = match.group(2)
        clauses.append((match.group(1), json.loads(value) if value.startswith('"') else value))
    found = [e for e in record.entries() if _matches(e, clauses)]
    if not found:
        return []
    newest = max(found, key=lambda e: e["created"])
    return [json_format.ParseDict(newest["artifact"], pipeline_spec_pb2.RuntimeArtifact())]


def task_dependencies(spec) -> Dict[str, List[str]]:
    """Each task's upstream tasks: its ``dependentTasks`` and the producers of its input artifacts and
    parameters (TFX leaves ``dependentTasks`` empty on the model resolver, which reads the blessing resolver's
    output; ``kfp.local.graph_utils.build_dependency_map`` reads ``dependentTasks`` only)."""
    dependencies = {}
    for name, task in spec.root.dag.tasks.items():
        upstream = set(task.dependent_tasks)
        upstream |= {a.task_output_artifact.producer_task for a in task.inputs.artifacts.values()
                     if a.task_output_artifact.producer_task}
        upstream |= {p.task_output_parameter.producer_task for p in task.inputs.parameters.values()
                     if p.task_output_parameter.producer_task}
        dependencies[name] = sorted(upstream)
    return dependencies


def _executor_input(task, component, parameters: Dict[str, object], produced, task_root: str, run_id: str,
                    task_name: str):
    """The ExecutorInput KFP's driver gives the task (kfp.local.executor_input_utils.construct_executor_input,
    with upstream artifacts kept as the protos their producer reported)."""
    from google.protobuf import struct_pb2
    from kfp.pipeline_spec import pipeline_spec_pb2
    executor_input = pipeline_spec_pb2.ExecutorInput()
    for key, definition in component.input_definitions.parameters.items():
        if key in task.inputs.parameters:
            source = task.inputs.parameters[key]
            if source.HasField("runtime_value"):
                value = source.runtime_value.constant
            elif source.component_input_parameter:
                value = struct_pb2.Value()
                value.string_value = str(parameters[source.component_input_parameter])
            else:
                raise ValueError(f"task {task_name}: parameter {key} has a source this launcher does not resolve")
            executor_input.inputs.parameter_values[key].CopyFrom(value)
        elif definition.HasField("default_value"):
            executor_input.inputs.parameter_values[key].CopyFrom(definition.default_value)
    for key in component.input_definitions.artifacts:
        artifacts = executor_input.inputs.artifacts[key]
        if key in task.inputs.artifacts:
            source = task.inputs.artifacts[key].task_output_artifact
            artifacts.artifacts.extend(produced.get(source.producer_task, {}).get(source.output_artifact_key, []))
    for key, definition in component.output_definitions.artifacts.items():
        executor_input.outputs.artifacts[key].artifacts.add(
            name=f"{run_id}/{task_name}/{key}", type=definition.artifact_type, uri=os.path.join(task_root, key))
    executor_input.outputs.output_file = os.path.join(task_root, EXECUTOR_OUTPUT_FILE)
    return executor_input


def _run_command(command: List[str], image: ImageStandIn, log) -> int:
    process = subprocess.run([image.local_path(part) for part in command], env=image.environment(),
                             cwd=image.workdir, stdout=log, stderr=subprocess.STDOUT)
    return process.returncode


def run_spec(spec_path: str, image: ImageStandIn, pipeline_root: str = "", parameters: Optional[Dict] = None,
             report=print) -> SpecRun:
    """Runs every task of the spec in order; stops at the first failing task (its outcome is the last one)."""
    from google.protobuf import json_format
    from kfp.local import executor_input_utils, graph_utils, placeholder_utils
    from kfp.pipeline_spec import pipeline_spec_pb2
    spec, default_root = load_pipeline_spec(spec_path)
    pipeline_root = pipeline_root or default_root
    if "://" in pipeline_root:
        raise ValueError(f"pipeline root {pipeline_root!r} is a URI: this launcher writes to local folders only")
    values = {k: json_format.MessageToDict(p.default_value) for k, p in
              spec.root.input_definitions.parameters.items() if p.HasField("default_value")}
    values.update(parameters or {})
    missing = [k for k in spec.root.input_definitions.parameters if k not in values]
    if missing:
        raise ValueError(f"pipeline parameters without a value: {', '.join(missing)}")
    run_id = f"{spec.pipeline_info.name}-{datetime.datetime.now():%Y%m%d-%H%M%S-%f}"
    record = ArtifactRecord(os.path.join(pipeline_root, ARTIFACTS_FILE))
    executors = spec.deployment_spec["executors"]
    produced: Dict[str, Dict[str, list]] = {}
    outcomes: List[TaskOutcome] = []
    order = graph_utils.topological_sort(task_dependencies(spec))
    total = len(order)
    while order:
        name = order.pop()
        task = spec.root.dag.tasks[name]
        component = spec.components[task.component_ref.name]
        executor = pipeline_spec_pb2.PipelineDeploymentConfig.ExecutorSpec()
        json_format.ParseDict(json_format.MessageToDict(executors[component.executor_label]), executor)
        task_root = os.path.join(pipeline_root, run_id, name)
        os.makedirs(task_root, exist_ok=True)
        executor_input = _executor_input(task, component, values, produced, task_root, run_id, name)
        start = time.perf_counter()
        report(f"[{len(outcomes) + 1}/{total}] {name} ...")
        kind = executor.WhichOneof("spec")
        if kind == "resolver":
            outputs = {key: resolve_query(query.filter, executor_input.inputs, record)
                       for key, query in executor.resolver.output_artifact_queries.items()}
            outcome = TaskOutcome(name, kind, time.perf_counter() - start, 0,
                                  {k: [a.uri for a in v] for k, v in outputs.items()})
        elif kind == "container":
            input_dict = executor_input_utils.executor_input_to_dict(executor_input, component)
            log_file = os.path.join(task_root, "task.log")
            container = executor.container
            returncode = 0
            with open(log_file, "w") as log:
                if container.lifecycle.HasField("pre_cache_check"):
                    check = container.lifecycle.pre_cache_check
                    returncode = _run_command(placeholder_utils.replace_placeholders(
                        list(check.command) + list(check.args), input_dict, spec.pipeline_info.name, name,
                        pipeline_root, run_id), image, log)
                if returncode == 0:
                    returncode = _run_command(placeholder_utils.replace_placeholders(
                        list(container.command) + list(container.args), input_dict, spec.pipeline_info.name, name,
                        pipeline_root, run_id), image, log)
            outputs = {}
            if returncode == 0:
                executor_output = pipeline_spec_pb2.ExecutorOutput()
                with open(executor_input.outputs.output_file, encoding="utf-8") as f:
                    json_format.Parse(f.read(), executor_output, ignore_unknown_fields=True)
                for key, declared in executor_input.outputs.artifacts.items():
                    reported = executor_output.artifacts[key].artifacts if key in executor_output.artifacts else []
                    artifacts = list(reported) or list(declared.artifacts)
                    for artifact, definition in zip(artifacts, declared.artifacts):
                        if not artifact.HasField("type"):
                            artifact.type.CopyFrom(definition.type)
                        if not artifact.name:
                            artifact.name = definition.name
                    outputs[key] = artifacts
            outcome = TaskOutcome(name, kind, time.perf_counter() - start, returncode,
                                  {k: [a.uri for a in v] for k, v in outputs.items()}, log_file)
        else:
            raise ValueError(f"task {name}: executor kind {kind!r} is not one this launcher runs")
        produced[name] = outputs
        for artifacts in outputs.values():
            for artifact in artifacts:
                if kind == "container":
                    record.add(artifact, run_id, name)
        outcomes.append(outcome)
        report(f"[{len(outcomes)}/{total}] {name}: " + (
            f"{'ok' if outcome.returncode == 0 else f'FAILED (exit {outcome.returncode}), log {outcome.log_file}'}"
            f" in {outcome.seconds:.1f}s" + ("" if kind == "container" else
                                             f", resolved {sum(len(v) for v in outcome.outputs.values())} artifact(s)")))
        if outcome.returncode:
            break
    return SpecRun(run_id, pipeline_root, outcomes, image.environment())
