"""HistoryWindowing: a custom Beam component (spec + executor) after the MovieLens ExampleGen."""

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from ondevice_rec.components.history_windowing import executor


class HistoryWindowingSpec(types.ComponentSpec):
    PARAMETERS = {
        "history_length": ExecutionParameter(type=int),
        "min_timeline_length": ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {executor.EVENTS_KEY: ChannelParameter(type=standard_artifacts.Examples)}
    OUTPUTS = {executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class HistoryWindowing(base_beam_component.BaseBeamComponent):
    """Rating events -> leave-last-out (history -> next movie) examples and the movie vocabulary."""

    SPEC_CLASS = HistoryWindowingSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, events: types.BaseChannel, history_length: int = 10, min_timeline_length: int = 3):
        super().__init__(spec=HistoryWindowingSpec(
            events=events, history_length=history_length, min_timeline_length=min_timeline_length,
            examples=types.Channel(type=standard_artifacts.Examples)))
