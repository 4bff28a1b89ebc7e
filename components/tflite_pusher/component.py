"""TFLitePusher: the last component; a Pusher-style gate on the Evaluator's blessing that publishes TFLite."""

from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from ondevice_rec.components.tflite_pusher import executor


class TFLitePusherSpec(types.ComponentSpec):
    PARAMETERS = {
        "serving_dir": ExecutionParameter(type=str),
        "dataset": ExecutionParameter(type=str, optional=True),
        "keep_versions": ExecutionParameter(type=int, optional=True),
        "parity_samples": ExecutionParameter(type=int, optional=True),
        "quantization": ExecutionParameter(type=str, optional=True),
    }
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

    def __init__(self, model: types.BaseChannel, model_blessing: types.BaseChannel, serving_dir: str,
                 test_evaluation: Optional[types.BaseChannel] = None,
                 examples: Optional[types.BaseChannel] = None, dataset: str = "", keep_versions: int = 5,
                 parity_samples: int = 500, quantization: str = "float32"):
        super().__init__(spec=TFLitePusherSpec(
            model=model, model_blessing=model_blessing, test_evaluation=test_evaluation, examples=examples,
            serving_dir=serving_dir, dataset=dataset, keep_versions=keep_versions, parity_samples=parity_samples,
            quantization=quantization, pushed_model=types.Channel(type=standard_artifacts.PushedModel)))
