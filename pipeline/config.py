"""One typed configuration object for a pipeline run, and its assembly from flat options."""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ondevice_rec.components.history_windowing.windowing import WindowingOptions
from ondevice_rec.components.tflite_pusher.options import PublishOptions
from ondevice_rec.data import movielens
from ondevice_rec.data.events import EventSpec
from ondevice_rec.modules import preprocessing
from ondevice_rec.modules.config import DEFAULT_PRESET, ModelConfig, setting


SPAN_PATTERN = "span-{SPAN}/*"
# The layout of an output folder (OUT/pipeline_root, OUT/metadata.sqlite, OUT/serving).
PIPELINE_ROOT_FOLDER, METADATA_FILE, SERVING_FOLDER = "pipeline_root", "metadata.sqlite", "serving"


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


# Beam settings of a run without a --runner: the DirectRunner in memory, one worker.
LOCAL_BEAM_DEFAULTS = (("--runner", "DirectRunner"), ("--direct_running_mode", "in_memory"),
                       ("--direct_num_workers", "1"))
# The flags that tell Beam which Python code its workers install (the list TFX checks before packaging itself).
BEAM_DEPENDENCY_FLAGS = ("--setup_file", "--extra_package", "--extra_packages", "--requirements_file",
                         "--sdk_container_image", "--worker_harness_container_image")
# This project's setup.py: the repository root, or the installed package's own copy (setup.py is a module of it).
PROJECT_SETUP_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.py")


@dataclasses.dataclass
class PipelineConfig:
    """Everything ``create_pipeline`` needs; paths are made absolute on construction.

    Built by hand (tests, notebooks) or from flat options with ``from_options`` (the CLI). The history length
    has one source, ``model.history_length``: the windowing options must agree with it (``from_options`` and
    a missing ``windowing`` take it from the model).
    """

    data_dir: str  # the folder of the event log (or of its data spans, see input_pattern)
    output_dir: str
    pipeline_name: str = "ondevice-rec"
    # Files under data_dir that ExampleGen reads. With "{SPAN}" in it (SPAN_PATTERN: span-1/, span-2/, ...,
    # each a complete MovieLens folder) every run reads the latest span, so a scheduled run picks up new data.
    input_pattern: str = "*"
    # The Trainer starts from the latest blessed model's weights (the rows of the items it knew, matched by item key).
    warm_start: bool = False
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    # None: the defaults, with the model's N and the train stride its loss wants (default_train_stride).
    windowing: Optional[WindowingOptions] = None
    # Publishing; serving_dir and dataset left empty come from this config (publish_options).
    publish: PublishOptions = dataclasses.field(default_factory=PublishOptions)
    # How to read the log (paths relative to data_dir or to each span's folder); None: a MovieLens folder,
    # its layout detected.
    events: Optional[EventSpec] = None
    # The curated schema ExampleValidator checks the events against (any anomaly stops the run); None: derived
    # from the event spec (components/event_example_gen/schema.py): the shipped MovieLens one, or one written
    # under the pipeline root.
    schema_file: Optional[str] = None
    # The item vocabulary (tf.Transform, train split): items with fewer training events are left out (their
    # key maps to index 0), and at most max_items of the most frequent are kept.
    min_item_count: int = setting(1, "items with fewer training events are left out of the vocabulary")
    max_items: int = setting(0, "keep at most this many of the most frequent items (0: all)")
    max_bad_fraction: float = setting(movielens.DEFAULT_MAX_BAD_FRACTION, "malformed ratings lines are skipped "
                                      "and counted up to this share of all lines; above it the run fails naming "
                                      "the first")
    # Blessing: eval-split recall@10 must reach this and must not fall below the latest blessed model's.
    min_recall_at_10: float = setting(0.0, "blessing needs at least this eval recall@10")
    max_recall_regression: float = setting(0.0, "blessing allows eval recall@10 this far below the serving "
                                                "model's")
    enable_cache: bool = True
    # Where TFX writes artifacts and where versions are published; default OUTPUT_DIR/pipeline_root and
    # OUTPUT_DIR/serving. Kubeflow sets a bucket URI as the pipeline root; the serving folder must be a POSIX path
    # (publishing relies on atomic rename and symlink), e.g. a mounted volume or a /gcs/<bucket> FUSE mount.
    pipeline_root_uri: Optional[str] = None
    serving_path: Optional[str] = None
    beam_args: List[str] = dataclasses.field(default_factory=list)
    # The setup.py Beam workers install when beam_args name no dependency (default: PROJECT_SETUP_FILE).
    beam_setup_file: str = ""
    dataset_name: Optional[str] = None

    def __post_init__(self):
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be between 0 and 1, got {self.max_bad_fraction}")
        if self.min_item_count < 1 or self.max_items < 0:
            raise ValueError("min_item_count must be >= 1 and max_items >= 0")
        if self.windowing is None:
            self.windowing = WindowingOptions(history_length=self.model.history_length,
                                              earlier_length=self.model.personal_history,
                                              stride=self.model.default_train_stride())
        if self.windowing.history_length != self.model.history_length:
            raise ValueError(f"windowing.history_length {self.windowing.history_length} differs from "
                             f"model.history_length {self.model.history_length}: the model reads the histories the "
                             "windowing writes (PipelineConfig.from_options sets both from the model)")
        if self.windowing.earlier_length != self.model.personal_history:
            raise ValueError(f"windowing.earlier_length {self.windowing.earlier_length} differs from "
                             f"model.personal_history {self.model.personal_history} (PipelineConfig.from_options "
                             "sets both from the model)")
        if (self.model.loss_once_per_target and self.model.loss_at_every_position()
                and self.windowing.stride != self.model.default_train_stride()):
            # The Trainer skips the positions an earlier window also holds, counted from the default stride.
            raise ValueError(f"loss_once_per_target counts on the train stride N/2 = "
                             f"{self.model.default_train_stride()}, not {self.windowing.stride}: with another "
                             "stride add --hparam loss_once_per_target=false (a loss at every position of every "
                             "window)")
        if self.events is not None and not self.events.has_timestamp and self.windowing.split != "leave-last-out":
            raise ValueError(f"the {self.windowing.split} split needs timestamps and the event spec has no "
                             "timestamp column (file order gives the order within a user, not a time)")
        self.data_dir = _absolute(self.data_dir)
        self.output_dir = _absolute(self.output_dir)
        if not self.dataset_name:
            self.dataset_name = os.path.basename(self.data_dir.rstrip("/"))

    @classmethod
    def from_options(cls, data_dir: str, output_dir: str, options: Mapping[str, Any],
                     hparams: Sequence[str] = (), preset: str = DEFAULT_PRESET, **settings) -> "PipelineConfig":
        """The one place a run is assembled from flat options (``{field name: value}``, None = the field's
        default), e.g. the CLI's parsed flags: ModelConfig fields over the ``preset`` (``modules/config.py``
        PRESETS), then ``hparams``, ``["KEY=VALUE"]`` for any model field, WindowingOptions fields (history length from the model, the stride from the model's loss
        when not given), PublishOptions fields and this class's own; ``settings`` are further fields of this
        class (paths, warm start, cache)."""
        def given(kind) -> Dict[str, Any]:
            names = {f.name for f in dataclasses.fields(kind)}
            return {k: v for k, v in options.items() if k in names and v is not None}

        known = {f.name for kind in (ModelConfig, WindowingOptions, PublishOptions, cls)
                 for f in dataclasses.fields(kind)}
        if set(options) - known:
            raise ValueError(f"unknown options: {', '.join(sorted(set(options) - known))}")

        model = ModelConfig.preset(preset, **given(ModelConfig)).with_overrides(hparams)
        windowing = given(WindowingOptions)
        windowing.update(history_length=model.history_length, earlier_length=model.personal_history,
                         stride=windowing.get("stride") or model.default_train_stride())
        events = settings.get("events")
        if events is not None and events.min_rating is not None and "min_rating" not in windowing:
            windowing["min_rating"] = events.min_rating  # the spec's min_rating is --min-rating's default
        own = {k: v for k, v in given(cls).items() if k not in ("data_dir", "output_dir", "model", "windowing",
                                                                 "publish")}
        return cls(data_dir=data_dir, output_dir=output_dir, model=model, windowing=WindowingOptions(**windowing),
                   publish=PublishOptions(**given(PublishOptions)), **{**own, **settings})

    def schema_spec(self) -> EventSpec:
        """The spec the curated schema follows: the given one, else the MovieLens presets' (all three layouts
        give the same event features)."""
        return self.events or movielens.ML_1M.spec()

    def transform_settings(self) -> Dict[str, Any]:
        """The Transform component's custom_config (read by ``modules.preprocessing.preprocessing_fn``)."""
        return {preprocessing.MIN_ITEM_COUNT: self.min_item_count, preprocessing.MAX_ITEMS: self.max_items,
                preprocessing.CATEGORICAL_FEATURES: list(self.schema_spec().categorical_features())}

    def publish_options(self) -> PublishOptions:
        """``publish`` with this run's serving folder and dataset name filled in (what the pusher gets)."""
        return dataclasses.replace(self.publish, serving_dir=self.publish.serving_dir or self.serving_dir,
                                   dataset=self.publish.dataset or self.dataset_name)

    @property
    def pipeline_root(self) -> str:
        return self.pipeline_root_uri or os.path.join(self.output_dir, PIPELINE_ROOT_FOLDER)

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.output_dir, METADATA_FILE)

    @property
    def serving_dir(self) -> str:
        return self.serving_path or os.path.join(self.output_dir, SERVING_FOLDER)

    def beam_pipeline_args(self) -> List[str]:
        """The caller's Beam arguments; without a runner among them, the local DirectRunner's defaults for the
        settings the caller did not give (Beam keeps the last of a repeated flag: a default appended after the
        caller's ``--direct_num_workers=2`` would silently undo it); without a dependency flag, this project's
        ``--setup_file``.

        Without a dependency flag every TFX Beam executor copies the installed TFX (52 MB) into a new temporary
        folder and packages it (3.6 s here), and never deletes it: 1,312 such folders (68 GB) filled this
        machine's disk. The DirectRunner never reads ``--setup_file``; other runners ship this project with it.
        """
        args = list(self.beam_args)
        given = {a.split("=", 1)[0] for a in args}
        if "--runner" not in given:
            args += [f"{flag}={value}" for flag, value in LOCAL_BEAM_DEFAULTS if flag not in given]
        if not given.intersection(BEAM_DEPENDENCY_FLAGS):
            args.append(f"--setup_file={self.beam_setup_file or PROJECT_SETUP_FILE}")
        return args
