"""One typed configuration object for a pipeline run."""

from __future__ import annotations

import dataclasses
import os
import re
from typing import List, Optional, Tuple

from ondevice_rec.components.history_windowing.windowing import WindowingOptions
from ondevice_rec.modules.config import ModelConfig


SPAN_PATTERN = "span-{SPAN}/*"
DEFAULT_SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rating_events.schema.pbtxt")


def _absolute(path: str) -> str:
    """Local paths made absolute; URIs (gs://, s3://, ...) kept as they are."""
    return path if "://" in path else os.path.abspath(path)


def latest_span(data_dir: str) -> Tuple[int, str]:
    """``(span, folder)`` of the highest-numbered ``span-N`` folder in ``data_dir`` (local folders)."""
    spans = []
    for name in os.listdir(data_dir) if os.path.isdir(data_dir) else []:
        match = re.fullmatch(r"span-(\d+)", name)
        if match and os.path.isdir(os.path.join(data_dir, name)):
            spans.append((int(match.group(1)), os.path.join(data_dir, name)))
    if not spans:
        raise FileNotFoundError(f"no data spans in {data_dir}: expected folders span-1/, span-2/, ... each holding "
                                "a complete MovieLens folder (the latest span is read)")
    return max(spans)


@dataclasses.dataclass
class PipelineConfig:
    """Everything ``create_pipeline`` needs; paths are made absolute on construction."""

    data_dir: str  # a MovieLens folder, or a folder of data spans (see input_pattern)
    output_dir: str
    pipeline_name: str = "ondevice-rec"
    # Files under data_dir that ExampleGen reads. With "{SPAN}" in it (SPAN_PATTERN: span-1/, span-2/, ...,
    # each a complete MovieLens folder) every run reads the latest span, so a scheduled run picks up new data.
    input_pattern: str = "*"
    # The Trainer starts from the latest blessed model's weights (rows of movies it knew, by movie id).
    warm_start: bool = False
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    # Windowing; its history_length always follows model.history_length. None: the defaults, with the train
    # stride the model's loss wants (ModelConfig.default_train_stride).
    windowing: Optional[WindowingOptions] = None
    temporal_eval_fraction: float = 0.1  # temporal split without explicit cuts: share of events in eval
    temporal_test_fraction: float = 0.1  # ... and in test
    # The curated schema ExampleValidator checks the rating events against (any anomaly stops the run).
    schema_file: str = DEFAULT_SCHEMA
    # Malformed ratings lines are skipped and counted up to this share of all lines; above it the run fails.
    max_bad_fraction: float = 0.001
    # Blessing: eval-split recall@10 must reach this and must not fall below the latest blessed model's.
    min_recall_at_10: float = 0.0
    max_recall_regression: float = 0.0
    keep_versions: int = 5
    quantization: str = "float32"  # float32 | float16 | dynamic | int8 (publish.QUANTIZATIONS)
    parity_samples: int = 500
    enable_cache: bool = True
    # Where TFX writes artifacts and where versions are published; default OUTPUT_DIR/pipeline_root and
    # OUTPUT_DIR/serving. Kubeflow sets a bucket URI as the pipeline root; the serving folder must be a POSIX path
    # (publishing relies on atomic rename and symlink), e.g. a mounted volume or a /gcs/<bucket> FUSE mount.
    pipeline_root_uri: Optional[str] = None
    serving_path: Optional[str] = None
    beam_args: List[str] = dataclasses.field(default_factory=list)
    dataset_name: Optional[str] = None

    def __post_init__(self):
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be between 0 and 1, got {self.max_bad_fraction}")
        if self.windowing is None:
            self.windowing = WindowingOptions(stride=self.model.default_train_stride())
        self.windowing = dataclasses.replace(self.windowing, history_length=self.model.history_length)
        self.data_dir = _absolute(self.data_dir)
        self.output_dir = _absolute(self.output_dir)
        if not self.dataset_name:
            self.dataset_name = os.path.basename(self.data_dir.rstrip("/"))

    @property
    def pipeline_root(self) -> str:
        return self.pipeline_root_uri or os.path.join(self.output_dir, "pipeline_root")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.output_dir, "metadata.sqlite")

    @property
    def serving_dir(self) -> str:
        return self.serving_path or os.path.join(self.output_dir, "serving")

    def beam_pipeline_args(self) -> List[str]:
        """Defaults for a local DirectRunner unless the caller passed their own runner settings."""
        args = list(self.beam_args)
        if not any(a.startswith("--runner") for a in args):
            args += ["--runner=DirectRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1"]
        return args
