"""One typed configuration object for a pipeline run."""

from __future__ import annotations

import dataclasses
import os
from typing import List, Optional

from ondevice_rec.components.history_windowing.windowing import WindowingOptions
from ondevice_rec.modules.config import ModelConfig


@dataclasses.dataclass
class PipelineConfig:
    """Everything ``create_pipeline`` needs; paths are made absolute on construction."""

    data_dir: str
    output_dir: str
    pipeline_name: str = "ondevice-rec"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    # Windowing; its history_length always follows model.history_length. None: the defaults, with the train
    # stride the model's loss wants (ModelConfig.default_train_stride).
    windowing: Optional[WindowingOptions] = None
    temporal_eval_fraction: float = 0.1  # temporal split without explicit cuts: share of events in eval
    temporal_test_fraction: float = 0.1  # ... and in test
    # Blessing: eval-split recall@10 must reach this and must not fall below the latest blessed model's.
    min_recall_at_10: float = 0.0
    max_recall_regression: float = 0.0
    keep_versions: int = 5
    quantization: str = "float32"  # float32 | float16 | dynamic | int8 (publish.QUANTIZATIONS)
    parity_samples: int = 500
    enable_cache: bool = True
    beam_args: List[str] = dataclasses.field(default_factory=list)
    dataset_name: Optional[str] = None

    def __post_init__(self):
        if self.windowing is None:
            self.windowing = WindowingOptions(stride=self.model.default_train_stride())
        self.windowing = dataclasses.replace(self.windowing, history_length=self.model.history_length)
        self.data_dir = os.path.abspath(self.data_dir)
        self.output_dir = os.path.abspath(self.output_dir)
        if not self.dataset_name:
            self.dataset_name = os.path.basename(self.data_dir.rstrip(os.sep))

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_dir, "pipeline_root")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.output_dir, "metadata.sqlite")

    @property
    def serving_dir(self) -> str:
        return os.path.join(self.output_dir, "serving")

    def beam_pipeline_args(self) -> List[str]:
        """Defaults for a local DirectRunner unless the caller passed their own runner settings."""
        args = list(self.beam_args)
        if not any(a.startswith("--runner") for a in args):
            args += ["--runner=DirectRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1"]
        return args
