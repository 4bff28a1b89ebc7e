"""Executor of TFLitePusher.

Publishes only a model the Evaluator blessed. Before publishing it converts the ``recommend`` signature to a
builtin-ops TFLite model (float32, or quantized) and checks it on held-out test histories: the float32 TFLite
top-10 must match the SavedModel's (mean overlap >= 0.99) and a quantized model's recall@10 may be at most 2 %
(relative) below the float model's.
Every outcome (published, not blessed, already serving, failed parity) is recorded on the ``pushed_model``
artifact in MLMD (``pushed``, ``pushed_version``, ``pushed_destination``, ``push_outcome``).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import random
from typing import Any, Dict, List

import tensorflow as tf
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from ondevice_rec.components.tflite_pusher import publish
from ondevice_rec.modules import export, features
from ondevice_rec.modules.vocabulary import Vocabulary
from ondevice_rec.serving import TFLiteRecommender

MODEL_KEY = "model"
BLESSING_KEY = "model_blessing"
EVALUATION_KEY = "test_evaluation"
EXAMPLES_KEY = "examples"
PUSHED_MODEL_KEY = "pushed_model"
RECALL_KS = (1, 5, 10)


def read_evaluation(evaluation_uri: str) -> Dict[str, float]:
    """Overall-slice metrics of a TFMA evaluation as ``{name: value}``."""
    import tensorflow_model_analysis as tfma
    values: Dict[str, float] = {}
    for metrics in tfma.load_metrics(evaluation_uri):
        if metrics.slice_key.single_slice_keys:
            continue
        for item in metrics.metric_keys_and_values:
            if item.key.model_name in ("", "candidate") and not item.key.HasField("sub_key"):
                if item.value.HasField("double_value"):
                    values[item.key.name] = item.value.double_value.value
    return values


def eval_report(metrics: Dict[str, float]) -> Dict[str, Any]:
    report: Dict[str, Any] = {f"recall@{k}": metrics.get(f"recall@{k}") for k in RECALL_KS}
    report["ndcg@10"] = metrics.get("ndcg@10")
    missing = [name for name, value in report.items() if value is None]
    if missing:
        raise ValueError(f"the test evaluation has no {', '.join(missing)} (metrics found: {sorted(metrics)})")
    report["num_eval_users"] = int(metrics.get("example_count", 0))
    return report


def sample_histories(examples_uri: str, split: str, count: int, seed: int = 0) -> List[dict]:
    """Up to ``count`` contexts (ids and ratings, plus the ``label_movie_id``) from ``split`` of the windowed
    examples (deterministic)."""
    files = sorted(tf.io.gfile.glob(io_utils.all_files_pattern(os.path.join(examples_uri, f"Split-{split}"))))
    histories = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        histories.append({features.CONTEXT_MOVIE_ID: list(feature[features.CONTEXT_MOVIE_ID].int64_list.value),
                          features.CONTEXT_MOVIE_RATING: list(feature[features.CONTEXT_MOVIE_RATING].float_list.value),
                          features.LABEL_MOVIE_ID: int(feature[features.LABEL_MOVIE_ID].int64_list.value[0])})
    random.Random(seed).shuffle(histories)
    return histories[:count]


class Executor(base_executor.BaseExecutor):
    """Converts, checks and publishes a blessed model."""

    def Do(self, input_dict: Dict[str, List[Any]], output_dict: Dict[str, List[Any]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        pushed = artifact_utils.get_single_instance(output_dict[PUSHED_MODEL_KEY])
        serving_dir = exec_properties["serving_dir"]

        def record(outcome: str, published: bool, version: str = "") -> None:
            pushed.set_int_custom_property("pushed", int(published))
            pushed.set_string_custom_property("push_outcome", outcome)
            if version:
                pushed.set_string_custom_property("pushed_version", version)
                pushed.set_string_custom_property("pushed_destination", os.path.join(serving_dir, version))
            logging.info("TFLitePusher: %s", outcome)

        blessing = artifact_utils.get_single_instance(input_dict[BLESSING_KEY])
        if not blessing.get_int_custom_property("blessed"):
            record("not published: the Evaluator did not bless this model", False)
            return
        serving = publish.current_version(serving_dir)
        if serving and publish.read_metadata(os.path.join(serving_dir, serving)).get("model_uri") == model.uri:
            record(f"not published: this model is already serving as {serving}", False, serving)
            return

        saved_model_dir = os.path.join(model.uri, "Format-Serving")
        config = export.load_export_config(saved_model_dir)
        vocab = Vocabulary.load(os.path.join(saved_model_dir, export.ASSETS_EXTRA))
        quantization = exec_properties.get("quantization") or "float32"
        float_model = publish.convert_to_tflite(saved_model_dir, export.RECOMMEND_SIGNATURE)

        examples = input_dict.get(EXAMPLES_KEY) or []
        histories = (sample_histories(examples[0].uri, "test", int(exec_properties.get("parity_samples") or 500))
                     if examples else [])
        inputs = [{k: v for k, v in h.items() if k != features.LABEL_MOVIE_ID} for h in histories]
        parity = {}
        try:
            tflite_model = float_model
            if quantization != "float32":
                lite = TFLiteRecommender(float_model, export.RECOMMEND_SIGNATURE)
                tflite_model = publish.convert_to_tflite(
                    saved_model_dir, export.RECOMMEND_SIGNATURE, quantization,
                    [lite.inputs(h[features.CONTEXT_MOVIE_ID], h.get(features.CONTEXT_MOVIE_RATING))
                     for h in inputs[:200]])
            if histories:
                parity = publish.check_parity(float_model, saved_model_dir, inputs, export.RECOMMEND_SIGNATURE)
                if quantization != "float32":
                    parity.update(publish.check_quantized_recall(
                        float_model, tflite_model, export.RECOMMEND_SIGNATURE, inputs,
                        [h[features.LABEL_MOVIE_ID] for h in histories]))
            elif quantization != "float32":
                raise publish.ParityError("a quantized model needs held-out histories to be checked against float")
        except (publish.ParityError, ValueError) as e:
            record(f"not published: {e}", False)
            return
        evaluations = input_dict.get(EVALUATION_KEY) or []
        report = eval_report(read_evaluation(evaluations[0].uri)) if evaluations else {}

        runner = TFLiteRecommender(tflite_model, export.RECOMMEND_SIGNATURE)
        top_k = int(runner.runner.get_output_details()[export.TOP_IDS]["shape"][0])
        metadata = {
            "model_file": publish.MODEL_FILE,
            "encoder": config.encoder,
            "history_length": config.history_length,
            "vocabulary_size": vocab.size,
            "num_recommendable_movies": vocab.size - 1,
            "max_movie_id": vocab.max_movie_id,
            "signature": export.RECOMMEND_SIGNATURE,
            "quantization": quantization,
            "inputs": [{"name": features.CONTEXT_MOVIE_ID, "dtype": "int32", "shape": [config.history_length],
                        "padding_value": features.PADDING_ID, "order": "most_recent_first"}]
            + ([{"name": features.CONTEXT_MOVIE_RATING, "dtype": "float32", "shape": [config.history_length],
                 "padding_value": 0.0, "order": "most_recent_first", "range": [0.5, 5.0]}]
               if config.use_ratings else []),
            "outputs": [{"name": export.TOP_IDS, "dtype": "int32", "shape": [top_k]},
                        {"name": export.TOP_SCORES, "dtype": "float32", "shape": [top_k]}],
            "top_k": top_k,
            "vocabulary_file": "vocabulary.json",
            "vocabulary": {"file": "vocabulary.json", "size": vocab.size - 1, "order": "count_descending",
                           "fields": ["movie_id", "title", "genres", "year", "count"]},
            "genre_vocabulary": list(vocab.genres),
            "dataset": exec_properties.get("dataset") or "",
            "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "pipeline_run_id": (self._context.pipeline_run_id if self._context else None) or "",
            "model_uri": model.uri,
            "tflite_bytes": len(tflite_model),
            "parity": parity,
        }
        publish.validate_metadata(metadata)
        files = {
            publish.MODEL_FILE: tflite_model,
            publish.METADATA_FILE: json.dumps(metadata, indent=2).encode("utf-8"),
            publish.EVAL_FILE: json.dumps(report, indent=2).encode("utf-8"),
            "vocabulary.json": json.dumps(vocab.to_json(), ensure_ascii=False).encode("utf-8"),
        }
        for name, content in files.items():  # the artifact keeps its own copy for lineage
            with tf.io.gfile.GFile(os.path.join(pushed.uri, name), "wb") as f:
                f.write(content)
        final = publish.publish(serving_dir, files, keep_versions=int(exec_properties.get("keep_versions") or 5))
        version = os.path.basename(final)
        for name, value in report.items():
            if value is not None:
                pushed.set_float_custom_property(name, float(value))
        record(f"published {version} ({len(tflite_model)} bytes)", True, version)
