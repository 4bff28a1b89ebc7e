"""TFLitePusher: the last component; a Pusher-style gate on the Evaluator's blessing that publishes TFLite."""

from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from ondevice_rec.components.tflite_pusher import executor
from ondevice_rec.components.tflite_pusher.options import PublishOptions


class TFLitePusherSpec(types.ComponentSpec):
    # The whole PublishOptions as one JSON parameter (serving folder, quantization, checks, versions kept).
    PARAMETERS = {executor.OPTIONS_KEY: ExecutionParameter(type=str)}
    INPUTS = {
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
        executor.EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation, optional=True),
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples, optional=True),
    }
    OUTPUTS = {executor.PUSHED_MODEL_KEY: ChannelParameter(type=standard_artifacts.PushedModel)}


class TFLitePusher(base_component.BaseComponent):
    """Publishes a blessed model as ``serving_dir/<version>/model.tflite`` and moves ``latest`` to it."""

    SPEC_CLASS = TFLitePusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, model_blessing: types.BaseChannel, options: PublishOptions,
                 test_evaluation: Optional[types.BaseChannel] = None,
                 examples: Optional[types.BaseChannel] = None):
        if not options.serving_dir:
            raise ValueError("PublishOptions.serving_dir is required")
        super().__init__(spec=TFLitePusherSpec(
            model=model, model_blessing=model_blessing, test_evaluation=test_evaluation, examples=examples,
            options=options.to_json(), pushed_model=types.Channel(type=standard_artifacts.PushedModel)))
