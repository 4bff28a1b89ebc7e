"""Compiles the pipeline for Kubeflow Pipelines (KFP v2 IR) with TFX's KubeflowV2DagRunner.

Every component runs in one image (``kubeflow/Dockerfile``) that has the project installed, so the Trainer's
``run_fn`` and the custom executors are referenced by module path (``ondevice_rec.modules.trainer.run_fn``)
and no module file or wheel is uploaded to the pipeline root.
"""

from __future__ import annotations

import dataclasses
import os
from typing import List

from ondevice_rec.components.event_example_gen import schema as event_schema
from ondevice_rec.pipeline.config import PipelineConfig

FORMATS = (".yaml", ".yml", ".json")
DATA_ROOT_PARAMETER = "data_root"  # a run (or a recurring run) may point the pipeline at other data
# kubeflow/Dockerfile copies the sources to /opt/ondevice-rec/src: the MovieLens schema as the containers see it.
IMAGE_SOURCE_DIR = "/opt/ondevice-rec/src"
IMAGE_SCHEMA_FILE = f"{IMAGE_SOURCE_DIR}/components/event_example_gen/" + os.path.basename(
    event_schema.PRESET_SCHEMA_FILE)
# The containers submit the Beam stages: the setup.py they name is the image's, not this machine's.
IMAGE_SETUP_FILE = f"{IMAGE_SOURCE_DIR}/setup.py"
# Where kubeflow/Dockerfile prepares the Flink engine (ONDEVICE_REC_CACHE) and installs the SDK worker command.
IMAGE_ENGINE_CACHE = "/opt/ondevice-rec/cache"
IMAGE_WORKER_COMMAND = "/usr/local/bin/ondevice-rec-beam-worker"


def flink_beam_args(master: str) -> List[str]:
    """``--flink-master`` for the Kubeflow steps: the image's engine paths; the cluster is not asked at compile
    time (it is reached from the cluster's network), so each stage gets the Flink cluster's default parallelism."""
    from ondevice_rec.pipeline import flink
    return flink.beam_args(master, cache=IMAGE_ENGINE_CACHE, worker=IMAGE_WORKER_COMMAND, query=False)


def check_config(config: PipelineConfig) -> None:
    """What a cluster run needs that a local one does not."""
    if "://" in config.serving_dir:
        raise ValueError(f"serving folder {config.serving_dir!r} is a URI: publishing needs a POSIX path inside "
                         "the container (atomic rename and symlink), e.g. a mounted volume or /gcs/<bucket>/serving")


def compile_pipeline(config: PipelineConfig, image: str, output: str) -> str:
    """Writes the KFP pipeline spec (``.yaml`` / ``.yml``: PipelineSpec, ``.json``: PipelineJob) to ``output``."""
    # Imported here: TFX's Kubeflow modules pull in kfp, which the local commands do not need.
    from tfx import v1 as tfx
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner
    import yaml
    from ondevice_rec.pipeline.pipeline import create_pipeline

    if not output.endswith(FORMATS):
        raise ValueError(f"--output must end with one of {', '.join(FORMATS)}: {output!r}")
    check_config(config)
    # The curated schema: the image's copy for MovieLens data; for another event spec create_pipeline writes it
    # under the pipeline root, where the containers read it (a bucket root needs write access from here).
    if config.schema_file is None and config.events is None:
        config = dataclasses.replace(config, schema_file=IMAGE_SCHEMA_FILE)
    config = dataclasses.replace(config, beam_setup_file=IMAGE_SETUP_FILE)
    runner_config = kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
        display_name=config.pipeline_name, default_image=image, use_pipeline_spec_2_1=True)
    output = os.path.abspath(output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=runner_config, output_dir=os.path.dirname(output), output_filename=os.path.basename(output))
    data_root = tfx.dsl.experimental.RuntimeParameter(name=DATA_ROOT_PARAMETER, ptype=str, default=config.data_dir)
    runner.run(create_pipeline(config, with_local_metadata=False, input_base=data_root))
    if output.endswith((".yaml", ".yml")):
        # The YAML form keeps no pipeline root: record ours as the spec's default, so that a run or a schedule
        # created from the file alone writes where the config says.
        with open(output, encoding="utf-8") as f:
            text = f.read()
        header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
        spec = yaml.safe_load(text)
        spec["defaultPipelineRoot"] = config.pipeline_root
        # TFX leaves the parameter's default out of the YAML form; without it every run would have to pass it.
        spec["root"]["inputDefinitions"]["parameters"][DATA_ROOT_PARAMETER].update(
            defaultValue=config.data_dir, isOptional=True)
        with open(output, "w", encoding="utf-8") as f:
            f.write(header)
            yaml.safe_dump(spec, f, sort_keys=True)
    return output
