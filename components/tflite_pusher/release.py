"""The release of one trained model, TFX-free: the blessing gate, the already-serving check, conversion,
the parity checks, the metadata document and the versioned publish. The executor only unpacks artifacts,
calls ``release`` and records the returned ``Release`` in MLMD."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ondevice_rec.components.tflite_pusher import checks, conversion, metadata, publish, quantization
from ondevice_rec.components.tflite_pusher.options import PublishOptions
from ondevice_rec.modules import features, ranking_metrics

CALIBRATION_HISTORIES = 200  # held-out histories a calibrated (int8) conversion is fed
SERVING_FORMAT = "Format-Serving"  # the TFX Trainer's folder of the SavedModel inside a Model artifact

log = logging.getLogger("ondevice_rec.pusher")


@dataclasses.dataclass
class Release:
    """What happened: published or not (gated, already serving, failed check or conversion) and why."""

    published: bool
    outcome: str
    version: str = ""
    destination: str = ""
    failed: bool = False  # the conversion, the metadata or the publish broke (a refusing gate or check is not)
    test_metrics: Dict[str, float] = dataclasses.field(default_factory=dict)
    tflite_bytes: int = 0
    # The settings derived from the data and how (training's, and the quantization), ``{setting: why}``.
    derived: Dict[str, str] = dataclasses.field(default_factory=dict)


def eval_report(metrics: Dict[str, float]) -> Dict[str, float]:
    """The published ``eval.json`` from a TFMA evaluation's overall metrics (``{name: value}``)."""
    report: Dict[str, float] = {name: metrics.get(name) for name in ranking_metrics.NAMES}
    missing = [name for name, value in report.items() if value is None]
    if missing:
        raise ValueError(f"the test evaluation has no {', '.join(missing)} (metrics found: {sorted(metrics)})")
    report["num_eval_users"] = int(metrics.get("example_count", 0))
    return report


def sample_histories(examples_uri: str, split: str, count: int, seed: int = 0) -> List[dict]:
    """Up to ``count`` contexts (indices and ratings, plus the ``label_index`` and, when windowed for a per-user
    state, the ``earlier_index``) from ``split`` of the transformed examples (deterministic)."""
    import tensorflow as tf
    histories = []
    for record in features.read_split(examples_uri, split):
        feature = tf.train.Example.FromString(record).features.feature
        histories.append({features.CONTEXT_INDEX: list(feature[features.CONTEXT_INDEX].int64_list.value),
                          features.CONTEXT_RATING: list(feature[features.CONTEXT_RATING].float_list.value),
                          features.LABEL_INDEX: int(feature[features.LABEL_INDEX].int64_list.value[0])})
        if features.EARLIER_INDEX in feature:
            histories[-1][features.EARLIER_INDEX] = list(feature[features.EARLIER_INDEX].int64_list.value)
    random.Random(seed).shuffle(histories)
    return histories[:count]


def release(model_uri: str, options: PublishOptions, blessed: bool,
            load_histories: Callable[[], List[dict]] = list,
            load_test_metrics: Callable[[], Optional[Dict[str, float]]] = lambda: None, run_id: str = "",
            lineage_dir: Optional[str] = None) -> Release:
    """Publishes the model exported under ``model_uri`` if ``blessed``, not already serving, convertible and
    passing its checks on the histories ``load_histories()`` returns (held-out test contexts with labels; read
    only once the gates have passed). Never raises for a model that fails: the returned Release says why, and
    nothing is published. ``lineage_dir``: also gets a copy of the published files (the PushedModel artifact's
    folder)."""
    if not blessed:
        return Release(False, "not published: the Evaluator did not bless this model")
    serving = publish.current_version(options.serving_dir)
    if serving and publish.read_metadata(os.path.join(options.serving_dir, serving)).get("model_uri") == model_uri:
        return Release(False, f"not published: this model is already serving as {serving}", serving,
                       os.path.join(options.serving_dir, serving))
    try:
        test_metrics = load_test_metrics()
        report = eval_report(test_metrics) if test_metrics is not None else {}
        files, derived = _build_files(model_uri, options, load_histories(), report, run_id)
    except checks.ParityError as e:  # a check refused the model, as the blessing gate may: no failure
        return Release(False, f"not published: {e}")
    except Exception as e:  # pylint: disable=broad-except  (conversion, schema, I/O: recorded, never half-published)
        log.exception("the release failed")
        return Release(False, f"not published: the release failed: {type(e).__name__}: {e}", failed=True)
    try:
        if lineage_dir:
            _write_copies(lineage_dir, files)
        final = publish.publish(options.serving_dir, files, keep_versions=options.keep_versions)
    except OSError as e:
        return Release(False, f"not published: writing {options.serving_dir} failed: {e}", failed=True)
    version = os.path.basename(final)
    size = len(files[publish.MODEL_FILE])
    return Release(True, f"published {version} ({size} bytes)", version, final, test_metrics=report,
                   tflite_bytes=size, derived=derived)


def _write_copies(directory: str, files: Dict[str, bytes]) -> None:
    import tensorflow as tf  # gfile: the artifact may live on GCS / S3
    # Kubeflow's launcher creates an output artifact's parent folder only (TFX's local launcher creates the
    # folder itself): the executed Kubeflow spec failed here (tests/kubeflow/test_executed_spec.py).
    tf.io.gfile.makedirs(directory)
    for name, content in files.items():
        with tf.io.gfile.GFile(os.path.join(directory, name), "wb") as f:
            f.write(content)


def personal_calibration(float_model: bytes, histories: List[dict], feeds: List[dict]) -> List[tuple]:
    """Calibration inputs of every signature of a model with a per-user state: ``(signature, inputs)`` pairs,
    the states those of the held-out histories replayed through the float model's ``update_state``."""
    from ondevice_rec.serving import TFLiteRecommender
    update = TFLiteRecommender(float_model).interpreter.get_signature_runner(features.UPDATE_STATE_SIGNATURE)
    size = int(update.get_input_details()[features.USER_STATE]["shape"][0])
    pairs = []
    for history, feed in zip(histories, feeds):
        state = np.zeros(size, np.float32)
        pairs.append((features.UPDATE_STATE_SIGNATURE, {features.USER_STATE: state, features.ITEM_INDEX: np.int32(0)}))
        for item in checks.replay_order(history):
            pairs.append((features.UPDATE_STATE_SIGNATURE,
                          {features.USER_STATE: state, features.ITEM_INDEX: np.int32(item)}))
            state = update(user_state=state, item_index=np.int32(item))[features.USER_STATE]
        pairs.append((features.RECOMMEND_SIGNATURE, feed))
        pairs.append((features.RECOMMEND_PERSONAL_SIGNATURE, {**feed, features.USER_STATE: state}))
    return pairs


def _build_files(model_uri: str, options: PublishOptions, histories: List[dict], report: Dict[str, float],
                 run_id: str) -> Tuple[Dict[str, bytes], Dict[str, str]]:
    """The files to publish and the settings derived from the data (``{setting: why}``)."""
    from ondevice_rec.modules import export
    from ondevice_rec.modules.vocabulary import Vocabulary
    from ondevice_rec.serving import TFLiteRecommender
    saved_model_dir = os.path.join(model_uri, SERVING_FORMAT)
    config = export.load_export_config(saved_model_dir)
    vocab = Vocabulary.load(os.path.join(saved_model_dir, features.ASSETS_EXTRA))
    name, why = quantization.choose(options.quantization, vocab.size - 1)
    if options.quantization == quantization.AUTO and name != quantization.FLOAT and not histories:
        name, why = quantization.FLOAT, f"float32: auto chose {name}, but no held-out histories to check it on"
    mode = quantization.get(name)
    signature = features.RECOMMEND_SIGNATURE
    # With a per-user state the file holds its two signatures beside recommend (their constants stored once).
    personal = export.has_personal_state(saved_model_dir)
    signatures = [signature] + ([features.RECOMMEND_PERSONAL_SIGNATURE, features.UPDATE_STATE_SIGNATURE]
                                if personal else [])
    inputs = [{k: v for k, v in h.items() if k != features.LABEL_INDEX} for h in histories]
    labels = [h[features.LABEL_INDEX] for h in histories]
    if mode.name != quantization.FLOAT and not histories:
        raise checks.ParityError("a quantized model needs held-out histories to be checked against float")

    float_model = conversion.convert_to_tflite(saved_model_dir, signatures)
    tflite_model = float_model
    if mode.name != quantization.FLOAT:
        lite = TFLiteRecommender(float_model, signature)
        calibration = [lite.inputs(h[features.CONTEXT_INDEX], h.get(features.CONTEXT_RATING))
                       for h in inputs[:CALIBRATION_HISTORIES]]
        if personal:
            calibration = personal_calibration(float_model, inputs[:CALIBRATION_HISTORIES], calibration)
        tflite_model = conversion.convert_to_tflite(saved_model_dir, signatures, mode.name, calibration)
    parity: Dict[str, float] = {}
    if histories:
        parity = checks.check_parity(float_model, saved_model_dir, inputs[:options.parity_samples], signature,
                                     options.min_top10_overlap)
        if personal:  # the float file's state signatures, then the published file's if it is quantized
            sample = (inputs[:options.parity_samples], labels[:options.parity_samples])
            parity.update(checks.check_personal_state(float_model, saved_model_dir, *sample,
                                                      options.min_top10_overlap))
            if tflite_model is not float_model:
                quantized = checks.check_personal_state(tflite_model, saved_model_dir, *sample,
                                                        options.min_top10_overlap, quantized=True)
                parity.update({f"quantized_{name}": value for name, value in quantized.items()})
        if mode.name != quantization.FLOAT:
            try:
                parity.update(checks.check_quantized_recall(float_model, tflite_model, signature, inputs, labels,
                                                            options.max_quantized_recall_drop))
                why = f"{why}; kept: {checks.quantized_verdict(parity)}"
            except checks.ParityError as e:
                if options.quantization != quantization.AUTO:
                    raise
                mode, tflite_model = quantization.get(quantization.FLOAT), float_model
                why = f"float32: auto chose {name}, but {e}"
    top_k = int(TFLiteRecommender(tflite_model, signature).runner.get_output_details()[features.TOP_IDS]["shape"][0])
    document = metadata.build(config, vocab, mode.name, top_k, len(tflite_model), parity, options.dataset,
                              run_id, model_uri, quantization_reason=why, personal=personal)
    metadata.validate(document)
    derived = {**export.load_derived_settings(saved_model_dir), "quantization": why}
    return {
        publish.MODEL_FILE: tflite_model,
        publish.METADATA_FILE: json.dumps(document, indent=2).encode("utf-8"),
        publish.EVAL_FILE: json.dumps(report, indent=2).encode("utf-8"),
        features.VOCABULARY_FILE: json.dumps(vocab.to_json(), ensure_ascii=False).encode("utf-8"),
    }, derived
