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
    state = properties["personal_state"]["properties"]
    state["input"]["const"] = features.USER_STATE
    state["update_signature"]["const"] = features.UPDATE_STATE_SIGNATURE
    state["recommend_signature"]["const"] = features.RECOMMEND_PERSONAL_SIGNATURE
    state["update_inputs"]["items"]["enum"] = [features.USER_STATE, features.ITEM_INDEX]
    return document


def personal_state(config) -> Dict[str, Any]:
    """The ``personal_state`` entry: what an app needs to keep, update and forget the per-user state
    (``modules/personal.py``)."""
    from ondevice_rec.modules.personal import state_size
    size = state_size(config.embedding_dim)
    return {
        "input": features.USER_STATE, "dtype": "float32", "shape": [size], "bytes": 4 * size,
        "initial_value": "zeros",
        "update_signature": features.UPDATE_STATE_SIGNATURE,
        "update_inputs": [features.USER_STATE, features.ITEM_INDEX],
        "recommend_signature": features.RECOMMEND_PERSONAL_SIGNATURE,
        "when_to_update": (f"after every item the user picks, in time order: {features.USER_STATE} = "
                           f"{features.UPDATE_STATE_SIGNATURE}({features.USER_STATE}, {features.ITEM_INDEX}); "
                           f"then {features.RECOMMEND_PERSONAL_SIGNATURE} reads it beside the history. An index "
                           f"outside the vocabulary ({features.PADDING_ID}) leaves it unchanged"),
        "forget": (f"set it to zeros (or delete it): {features.RECOMMEND_PERSONAL_SIGNATURE} with a zero state "
                   f"returns exactly {features.RECOMMEND_SIGNATURE}'s output"),
        "decay": config.personal_decay,
        "layout": (f"{config.embedding_dim} decayed sums of the picked items' embeddings, then their weight "
                   f"(sums = {config.personal_decay:g} * sums + embedding[item], weight = {config.personal_decay:g} "
                   "* weight + 1); kept on the device only, never sent"),
    }


def validate(document: dict) -> None:
    """Raises ``jsonschema.ValidationError`` when ``document`` does not follow ``schema()``."""
    import jsonschema
    jsonschema.validate(document, schema(), format_checker=jsonschema.FormatChecker())


def build(config, vocab, quantization_mode: str, top_k: int, tflite_bytes: int, parity: Dict[str, float],
          dataset: str, run_id: str, model_uri: str, quantization_reason: str = "",
          personal: bool = False) -> Dict[str, Any]:
    """The metadata document of a converted model (``config``: its ModelConfig, ``vocab``: its Vocabulary;
    ``personal``: the model carries the per-user state's signatures)."""
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
        **({"personal_state": personal_state(config)} if personal else {}),
    }
