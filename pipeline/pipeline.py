"""The ondevice-rec TFX pipeline.

EventExampleGen -> StatisticsGen -> ExampleValidator (vs ImportSchemaGen's curated schema, from the event spec)
                -> HistoryWindowing (stops on anomalies; string keys) -> Transform (tf.Transform vocabularies from
                   the train split; keys -> indices) -> Trainer (transform_graph: vocabulary, item features)
                       -> Evaluator (eval split: blessing vs latest blessed)
                       -> Evaluator (test split: reported)
                       -> TFLitePusher (blessed models only)
"""

from __future__ import annotations

import dataclasses
import json
from typing import List, Optional

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from ondevice_rec.components.event_example_gen.component import EventExampleGen
from ondevice_rec.components.event_example_gen.schema import schema_file_for
from ondevice_rec.components.history_windowing.component import HistoryWindowing
from ondevice_rec.components.tflite_pusher.component import TFLitePusher
from ondevice_rec.modules import features, ranking_metrics
from ondevice_rec.pipeline import flink
from ondevice_rec.pipeline.config import PipelineConfig
from ondevice_rec.pipeline.nodes import Nodes

TRAINER_RUN_FN = "ondevice_rec.modules.trainer.run_fn"
PREPROCESSING_FN = "ondevice_rec.modules.preprocessing.preprocessing_fn"
METRICS_MODULE = ranking_metrics.__name__


def ranking_metric_configs() -> List[tfma.MetricConfig]:
    """Every registered ranking metric over the whole catalogue (the same Keras metric the Trainer reports),
    and the example count."""
    # Explicit names: TFMA would otherwise name every RankMetric "rank_metric" and keep only one.
    return [tfma.MetricConfig(class_name=ranking_metrics.KERAS_CLASS, module=METRICS_MODULE,
                              config=json.dumps({"kind": m.kind, "k": m.k, "name": m.name}))
            for m in ranking_metrics.METRICS] + [tfma.MetricConfig(class_name="ExampleCount")]


def eval_config(config: PipelineConfig, with_thresholds: bool) -> tfma.EvalConfig:
    metrics = ranking_metric_configs()
    if with_thresholds:
        gate = next(m for m in metrics if json.loads(m.config or "{}").get("name") == ranking_metrics.GATE.name)
        gate.threshold.CopyFrom(tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(lower_bound={"value": config.min_recall_at_10}),
            change_threshold=tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": -max(config.max_recall_regression, 1e-9)})))
    # The blessing Evaluator (eval split) scores the model as validated: its exported successor table also
    # counts the eval targets' transitions (modules/successors.py).
    signature = features.VALIDATED_SIGNATURE if with_thresholds else features.SERVING_SIGNATURE
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=signature, label_key=features.LABEL_COLUMN,
                                    prediction_key=features.SCORES)],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)])


def name_beam_jobs(components, beam_args: List[str]) -> None:
    """On Flink, each Beam stage is its own job: named after its component in Flink's web UI and REST API."""
    if flink.flink_master_of(beam_args):
        for component in components:
            if isinstance(component.executor_spec, executor_spec.BeamExecutorSpec):
                component.with_beam_pipeline_args([f"--job_name={flink.job_name(component.id)}"])


def data_components(config: PipelineConfig, input_base=None):
    """The data stages, in order: ExampleGen, StatisticsGen, ImportSchemaGen (the curated schema of the event
    spec), ExampleValidator, HistoryWindowing (which refuses anomalous events) and Transform."""
    example_gen = EventExampleGen(input_base=input_base or config.data_dir, split_pattern=config.input_pattern,
                                  spec=config.events, max_bad_fraction=config.max_bad_fraction).with_id(
        Nodes.EXAMPLE_GEN)
    # On the events' uniform sample (the whole log when small: EventExampleGen's STATISTICS_SAMPLE_EVENTS).
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"],
                                                  exclude_splits=[features.EVENTS_SPLIT]).with_id(
        Nodes.STATISTICS_GEN)
    schema_file = config.schema_file or schema_file_for(config.events, config.pipeline_root)
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_file).with_id(Nodes.SCHEMA_GEN)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]).with_id(
        Nodes.EXAMPLE_VALIDATOR)

    windowing = HistoryWindowing(events=example_gen.outputs["examples"], options=config.windowing,
                                 anomalies=example_validator.outputs["anomalies"]).with_id(Nodes.WINDOWING)
    transform = tfx.components.Transform(
        examples=windowing.outputs["examples"], schema=windowing.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN, custom_config=config.transform_settings(),
        splits_config=tfx.proto.SplitsConfig(analyze=[features.ITEMS_SPLIT], transform=list(features.SPLITS)),
        # TF1-style graph: the same outputs, about a tenth faster on ML-1M-SAS (docs/results.md, "The data
        # stages on batches"); the Trainer reads only the vocabularies and the feature spec.
        disable_statistics=True, force_tf_compat_v1=True).with_id(Nodes.TRANSFORM)
    return example_gen, statistics_gen, schema_gen, example_validator, windowing, transform


def create_pipeline(config: PipelineConfig, with_local_metadata: bool = True, input_base=None,
                    beam_args: Optional[list] = None) -> tfx.dsl.Pipeline:
    """Builds the pipeline described in the module docstring from one PipelineConfig.

    ``beam_args``: the stages' Beam arguments during a local run (``flink.stage_session``), else the config's.
    ``with_local_metadata``: the SQLite MLMD store under the output folder (local runners); Kubeflow brings its
    own metadata store. ``input_base``: a runtime parameter standing for ``config.data_dir`` (Kubeflow).
    """
    example_gen, statistics_gen, schema_gen, example_validator, windowing, transform = data_components(
        config, input_base)
    examples = transform.outputs["transformed_examples"]

    latest_blessed_model = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id(Nodes.LATEST_BLESSED_MODEL)

    trainer = tfx.components.Trainer(
        run_fn=TRAINER_RUN_FN,
        examples=examples,
        transform_graph=transform.outputs["transform_graph"],
        base_model=latest_blessed_model.outputs["model"] if config.warm_start else None,
        custom_config=dataclasses.asdict(config.model)).with_id(Nodes.TRAINER)

    # The Evaluators read the windowed (string-key) examples: each model maps keys with its own vocabulary.
    windowed = windowing.outputs["examples"]
    evaluator = tfx.components.Evaluator(
        examples=windowed,
        model=trainer.outputs["model"],
        baseline_model=latest_blessed_model.outputs["model"],
        eval_config=eval_config(config, with_thresholds=True),
        example_splits=["eval"]).with_id(Nodes.EVALUATOR)
    test_evaluator = tfx.components.Evaluator(
        examples=windowed,
        model=trainer.outputs["model"],
        eval_config=eval_config(config, with_thresholds=False),
        example_splits=["test"]).with_id(Nodes.TEST_EVALUATOR)

    pusher = TFLitePusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        test_evaluation=test_evaluator.outputs["evaluation"],
        examples=examples,
        options=config.publish_options()).with_id(Nodes.PUSHER)

    components = [example_gen, statistics_gen, schema_gen, example_validator, windowing, transform,
                  latest_blessed_model, trainer, evaluator, test_evaluator, pusher]
    name_beam_jobs(components, config.beam_pipeline_args())
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=components,
        enable_cache=config.enable_cache,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            config.metadata_path) if with_local_metadata else None,
        beam_pipeline_args=config.beam_pipeline_args() if beam_args is None else beam_args)
