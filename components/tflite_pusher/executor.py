"""Executor of TFLitePusher: glue between the TFX artifacts and ``release.release``.

It unpacks the blessing, the model, the test evaluation and held-out test histories, calls the TFX-free
release, and records its outcome on the ``pushed_model`` artifact in MLMD (``pushed``, ``push_outcome``,
``push_failed``, ``pushed_version``, ``pushed_destination`` and the published test metrics). Every outcome,
including a failed conversion or check, is recorded rather than raised, so it is visible in MLMD and in the
run summary.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List

from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from ondevice_rec.components.tflite_pusher import release
from ondevice_rec.components.tflite_pusher.options import PublishOptions

MODEL_KEY = "model"
BLESSING_KEY = "model_blessing"
EVALUATION_KEY = "test_evaluation"
EXAMPLES_KEY = "examples"
PUSHED_MODEL_KEY = "pushed_model"
OPTIONS_KEY = "options"


CANDIDATE, BASELINE = "candidate", "baseline"  # TFMA's model names when a baseline was compared


def read_evaluations(evaluation_uri: str) -> Dict[str, Dict[str, float]]:
    """The overall-slice metrics of a TFMA evaluation by model, ``{"candidate": {name: value}, "baseline": ...}``
    (the candidate is unnamed when no baseline was compared); candidate-minus-baseline and sub-key entries left
    out. The one reader of TFMA results (the pusher, the report, the tests)."""
    import tensorflow_model_analysis as tfma
    found: Dict[str, Dict[str, float]] = {}
    for metrics in tfma.load_metrics(evaluation_uri):
        if metrics.slice_key.single_slice_keys:
            continue
        for item in metrics.metric_keys_and_values:
            if item.key.is_diff or item.key.HasField("sub_key") or not item.value.HasField("double_value"):
                continue
            found.setdefault(item.key.model_name or CANDIDATE, {})[item.key.name] = item.value.double_value.value
    return found


def read_evaluation(evaluation_uri: str) -> Dict[str, float]:
    """The candidate's overall metrics of a TFMA evaluation as ``{name: value}``."""
    return read_evaluations(evaluation_uri).get(CANDIDATE, {})


def record(pushed, outcome: release.Release) -> None:
    """Writes a Release onto the PushedModel artifact."""
    pushed.set_int_custom_property("pushed", int(outcome.published))
    pushed.set_int_custom_property("push_failed", int(outcome.failed))
    pushed.set_string_custom_property("push_outcome", outcome.outcome)
    if outcome.version:
        pushed.set_string_custom_property("pushed_version", outcome.version)
        pushed.set_string_custom_property("pushed_destination", outcome.destination)
    if outcome.tflite_bytes:
        pushed.set_int_custom_property("tflite_bytes", outcome.tflite_bytes)
    for name, why in outcome.derived.items():  # e.g. derived_softmax "sampled: 47,911 items > 20,000"
        pushed.set_string_custom_property("derived_" + name.replace(" ", "_"), why)
    for name, value in outcome.test_metrics.items():
        if value is not None:
            pushed.set_float_custom_property(name, float(value))
    logging.getLogger("ondevice_rec.pusher").info("TFLitePusher: %s", outcome.outcome)


class Executor(base_executor.BaseExecutor):
    """Converts, checks and publishes a blessed model (``release.release``)."""

    def Do(self, input_dict: Dict[str, List[Any]], output_dict: Dict[str, List[Any]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        options = PublishOptions.from_json(exec_properties[OPTIONS_KEY])
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        pushed = artifact_utils.get_single_instance(output_dict[PUSHED_MODEL_KEY])
        blessing = artifact_utils.get_single_instance(input_dict[BLESSING_KEY])
        blessed = bool(blessing.get_int_custom_property("blessed"))
        examples = input_dict.get(EXAMPLES_KEY) or []
        evaluations = input_dict.get(EVALUATION_KEY) or []
        run_id = (self._context.pipeline_run_id if self._context else None) or ""
        record(pushed, release.release(
            model.uri, options, blessed,
            load_histories=lambda: release.sample_histories(examples[0].uri, "test", options.histories_needed())
            if examples else [],
            load_test_metrics=lambda: read_evaluation(evaluations[0].uri) if evaluations else None,
            run_id=run_id, lineage_dir=pushed.uri))
