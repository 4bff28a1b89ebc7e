"""``metadata.json`` next to ``model.tflite``: the document an app reads to feed the model and read its output
(the index-based contract: vocabulary indices in and out, ``vocabulary.json`` maps them to keys), and its JSON
Schema (``metadata.schema.json``, whose choice lists are filled in from the registries)."""

from __future__ import annotations

import datetime
import json
import os
from typing import Any, Dict

from ondevice_rec.components.tflite_pusher import publish, quantization
from ondevice_rec.modules import encoders, features

SCHEMA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "metadata.schema.json")
VOCABULARY_FIELDS = ["index", "key", "count", "title", "categorical", "numeric"]
RATING_RANGE = [0.5, 5.0]


def schema() -> dict:
    """The JSON Schema of metadata.json, with the encoder and quantization choices of their registries and the
    input / output tensor names of ``features`` (the file on disk leaves them open)."""
    with open(SCHEMA_FILE) as f:
        document = json.load(f)
    properties = document["properties"]
    properties["encoder"]["enum"] = list(encoders.ENCODERS)
    properties["quantization"]["enum"] = list(quantization.QUANTIZATIONS)
    properties["inputs"]["items"]["properties"]["name"]["enum"] = [features.CONTEXT_INDEX,
                                                                   features.CONTEXT_RATING]
    properties["outputs"]["items"]["properties"]["name"]["enum"] = [features.TOP_IDS, features.TOP_SCORES]
    return document


def validate(document: dict) -> None:
    """Raises ``jsonschema.ValidationError`` when ``document`` does not follow ``schema()``."""
    import jsonschema
    jsonschema.validate(document, schema(), format_checker=jsonschema.FormatChecker())


def build(config, vocab, quantization_mode: str, top_k: int, tflite_bytes: int, parity: Dict[str, float],
          dataset: str, run_id: str, model_uri: str, quantization_reason: str = "") -> Dict[str, Any]:
    """The metadata document of a converted model (``config``: its ModelConfig, ``vocab``: its Vocabulary)."""
    n = config.history_length
    inputs = [{"name": features.CONTEXT_INDEX, "dtype": "int32", "shape": [n], "values": "vocabulary_index",
               "padding_value": features.PADDING_ID, "order": "most_recent_first"}]
    if config.use_ratings:
        inputs.append({"name": features.CONTEXT_RATING, "dtype": "float32", "shape": [n],
                       "padding_value": 0.0, "order": "most_recent_first", "range": RATING_RANGE})
    return {
        "model_file": publish.MODEL_FILE,
        "encoder": config.encoder,
        "history_length": n,
        "vocabulary_size": vocab.size,
        "num_recommendable_items": vocab.size - 1,
        "signature": features.RECOMMEND_SIGNATURE,
        "quantization": quantization_mode,
        **({"quantization_reason": quantization_reason} if quantization_reason else {}),
        "inputs": inputs,
        "outputs": [{"name": features.TOP_IDS, "dtype": "int32", "shape": [top_k], "values": "vocabulary_index"},
                    {"name": features.TOP_SCORES, "dtype": "float32", "shape": [top_k]}],
        "top_k": top_k,
        "vocabulary_file": features.VOCABULARY_FILE,
        "vocabulary": {"file": features.VOCABULARY_FILE, "size": vocab.size - 1, "order": "count_descending",
                       "fields": VOCABULARY_FIELDS, "padding_index": features.PADDING_ID,
                       "unknown_keys": "the app drops keys missing from the vocabulary before filling the input"},
        "item_features": {"categorical": sorted(vocab.categories), "numeric": sorted(vocab.boundaries)},
        "dataset": dataset,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "pipeline_run_id": run_id,
        "model_uri": model_uri,
        "tflite_bytes": tflite_bytes,
        "parity": parity,
    }
