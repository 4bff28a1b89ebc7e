"""HistoryWindowing: a custom Beam component (spec + executor) after the event ExampleGen."""

from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from ondevice_rec.components.history_windowing import executor, windowing
from ondevice_rec.modules import features


class HistoryWindowingSpec(types.ComponentSpec):
    # The whole WindowingOptions as one JSON parameter: the executor rebuilds it with the same dataclass, so
    # no default is restated on either side of the TFX boundary.
    PARAMETERS = {executor.OPTIONS_KEY: ExecutionParameter(type=str),
                  executor.FORMAT_KEY: ExecutionParameter(type=int)}  # features.WINDOWED_FORMAT
    INPUTS = {executor.EVENTS_KEY: ChannelParameter(type=standard_artifacts.Examples),
              # ExampleValidator's verdict on the events: any anomaly stops the run here, before training.
              executor.ANOMALIES_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies, optional=True)}
    OUTPUTS = {executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
               # The windowed examples' schema (it depends on N and the item features): Transform's input schema.
               executor.SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema)}


class HistoryWindowing(base_beam_component.BaseBeamComponent):
    """Events -> (history -> next item) train / eval / test examples (string keys) and their schema."""

    SPEC_CLASS = HistoryWindowingSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, events: types.BaseChannel, options: windowing.WindowingOptions,
                 anomalies: Optional[types.BaseChannel] = None):
        """``options.eval_start`` / ``test_start`` left empty are derived from its fractions (temporal split).
        With ``anomalies`` (ExampleValidator's output) the component refuses to run on anomalous events."""
        super().__init__(spec=HistoryWindowingSpec(
            events=events, anomalies=anomalies, options=options.to_json(), example_format=features.WINDOWED_FORMAT,
            examples=types.Channel(type=standard_artifacts.Examples),
            schema=types.Channel(type=standard_artifacts.Schema)))
