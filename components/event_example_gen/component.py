"""EventExampleGen: stock FileBasedExampleGen (spans, fingerprints, caching) with an event-log executor."""

from typing import Optional

from google.protobuf import any_pb2, struct_pb2
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2, range_config_pb2

from ondevice_rec.components.event_example_gen import executor
from ondevice_rec.data.events import EventSpec
from ondevice_rec.modules.features import EVENTS_SPLIT


class EventExampleGen(FileBasedExampleGen):
    """Emits an ``events`` split (one tf.Example per event) and its ``sample`` split (a uniform sample of the
    events, for the statistics); splitting into train/eval/test happens in windowing.

    ``spec``: how to read the log (paths relative to each matched folder: the data folder, or each span's);
    None: the MovieLens layout detected in each folder. ``max_bad_fraction``: malformed lines are skipped and
    counted up to this share of all lines; above it the component fails, naming the first bad lines.
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, input_base, split_pattern: str = "*",
                 range_config: Optional[range_config_pb2.RangeConfig] = None,
                 spec: Optional[EventSpec] = None,
                 max_bad_fraction: float = executor.DEFAULT_MAX_BAD_FRACTION):
        settings = struct_pb2.Struct()
        settings.update({executor.MAX_BAD_FRACTION_KEY: float(max_bad_fraction),
                         executor.SPEC_KEY: spec.to_json() if spec else ""})
        packed = any_pb2.Any()
        packed.Pack(settings)
        super().__init__(
            input_base=input_base,
            input_config=example_gen_pb2.Input(splits=[
                example_gen_pb2.Input.Split(name=EVENTS_SPLIT, pattern=split_pattern)]),
            # No output split config: the one input split is the output split. (A split config of one
            # bucket made TFX hash every event to choose its only split.)
            output_config=example_gen_pb2.Output(),
            custom_config=example_gen_pb2.CustomConfig(custom_config=packed),
            range_config=range_config)
