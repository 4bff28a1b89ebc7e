"""HistoryWindowing: a custom Beam component (spec + executor) after the MovieLens ExampleGen."""

import dataclasses
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from ondevice_rec.components.history_windowing import executor, windowing


class HistoryWindowingSpec(types.ComponentSpec):
    PARAMETERS = {
        "history_length": ExecutionParameter(type=int),
        "split": ExecutionParameter(type=str, optional=True),
        "min_timeline_length": ExecutionParameter(type=int, optional=True),
        "min_rating": ExecutionParameter(type=float, optional=True),
        "max_examples_per_user": ExecutionParameter(type=int, optional=True),
        "stride": ExecutionParameter(type=int, optional=True),
        "genres_per_movie": ExecutionParameter(type=int, optional=True),
        "eval_fraction": ExecutionParameter(type=float, optional=True),
        "test_fraction": ExecutionParameter(type=float, optional=True),
        "eval_start": ExecutionParameter(type=int, optional=True),
        "test_start": ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {executor.EVENTS_KEY: ChannelParameter(type=standard_artifacts.Examples),
              # ExampleValidator's verdict on the events: any anomaly stops the run here, before training.
              executor.ANOMALIES_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies, optional=True)}
    OUTPUTS = {executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class HistoryWindowing(base_beam_component.BaseBeamComponent):
    """Rating events -> leave-last-out (history -> next movie) examples and the movie vocabulary."""

    SPEC_CLASS = HistoryWindowingSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, events: types.BaseChannel, options: windowing.WindowingOptions,
                 eval_fraction: float = 0.1, test_fraction: float = 0.1,
                 anomalies: Optional[types.BaseChannel] = None):
        """``options.eval_start`` / ``test_start`` left empty are derived from the fractions (temporal split).
        With ``anomalies`` (ExampleValidator's output) the component refuses to run on anomalous events."""
        params = {k: v for k, v in dataclasses.asdict(options).items() if v is not None}
        super().__init__(spec=HistoryWindowingSpec(
            events=events, anomalies=anomalies, eval_fraction=eval_fraction, test_fraction=test_fraction,
            examples=types.Channel(type=standard_artifacts.Examples), **params))
