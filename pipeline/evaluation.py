"""Scores a published model on its own run's test split again, overall and on a subset of users.

The model is the version's SavedModel (``model_uri`` in its ``metadata.json``), scored through its
``serving_default`` signature on the string-key windowed examples of the pipeline run that trained it (found in
MLMD by ``pipeline_run_id``): the function and examples the run's Evaluator used, so the overall figures equal
the version's ``eval.json``. A user subset (one user key per line) is, e.g., the 512 users of ML-1M-SAS whose
sequences are complete (``complete_users.txt``).
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional

import numpy as np

from ondevice_rec.components.tflite_pusher import publish
from ondevice_rec.components.tflite_pusher.release import SERVING_FORMAT
from ondevice_rec.modules import features
from ondevice_rec.pipeline import mlmd
from ondevice_rec.pipeline.config import METADATA_FILE, SERVING_FOLDER
from ondevice_rec.pipeline.nodes import Nodes


def read_users(path: str) -> set:
    with open(path, encoding="utf-8") as f:
        users = {line.strip() for line in f if line.strip()}
    if not users:
        raise ValueError(f"{path} lists no users (one user key per line)")
    return users


def score_records(serve, records: List[bytes], users: Optional[set] = None,
                  batch_size: int = 1024) -> Dict[str, Dict[str, float]]:
    """Scores windowed examples with a ``serving_default`` function (serialized examples -> ``SCORES``, the
    label's score in column 0: what TFMA runs): ``{"all": metrics}``, plus ``"subset"`` on the examples of
    ``users`` (user keys; empty when none of them has an example). Metrics: every registered one (``ranking_metrics.METRICS``) and users."""
    import tensorflow as tf
    from ondevice_rec.modules.ranking_metrics import evaluate_ranks, target_rank

    def ranks(batch):  # the label's rank (its score is column 0), the batch's scores then dropped
        scores = serve(examples=tf.constant(batch))[features.SCORES]
        return target_rank(tf.zeros([len(batch)], tf.int32), scores).numpy()
    ranked = np.concatenate([ranks(records[i:i + batch_size]) for i in range(0, len(records), batch_size)])

    def metrics(rows) -> Dict[str, float]:
        return {**evaluate_ranks(ranked[rows]), "users": int(len(rows))}
    result = {"all": metrics(np.arange(len(records)))}
    if users is not None:
        rows = np.array([i for i, r in enumerate(records) if tf.train.Example.FromString(r).features.feature[
            features.USER_ID].bytes_list.value[0].decode() in users], np.int64)
        result["subset"] = metrics(rows) if len(rows) else {"users": 0}
    return result


def published_run(output_dir: str, version: str = publish.LATEST):
    """``(version folder, its metadata, the windowed examples artifact of the run that trained it)``."""
    version_dir = os.path.join(output_dir, SERVING_FOLDER, version)
    if not os.path.isdir(version_dir):
        raise FileNotFoundError(f"no published version {version!r} in {os.path.join(output_dir, SERVING_FOLDER)}")
    metadata = publish.read_metadata(version_dir)
    store = mlmd.Store(os.path.join(output_dir, METADATA_FILE))
    windowed = store.run_artifact(metadata["pipeline_run_id"], "Examples", Nodes.WINDOWING)
    if windowed is None:
        raise FileNotFoundError(f"the run {metadata['pipeline_run_id']} that trained version {version} has no "
                                "windowed examples in this output's MLMD store")
    return version_dir, metadata, windowed


def evaluate_published(output_dir: str, version: str = publish.LATEST, users_file: Optional[str] = None,
                       split: str = "test", batch_size: int = 1024) -> Dict[str, Dict[str, float]]:
    """``{"all": metrics, "subset": metrics}`` (the subset only with ``users_file``): every registered metric
    and the number of users, on ``split`` of the run that trained ``version`` in ``output_dir``."""
    import tensorflow as tf
    _, metadata, windowed = published_run(output_dir, version)
    wanted = read_users(users_file) if users_file else None
    serve = tf.saved_model.load(os.path.join(metadata["model_uri"], SERVING_FORMAT)).signatures[
        features.SERVING_SIGNATURE]
    result = score_records(serve, features.read_split(windowed.uri, split), wanted, batch_size)
    if users_file:
        if not result["subset"]["users"]:
            raise ValueError(f"none of the {len(wanted)} users of {users_file} has a {split} example in this run")
        result["subset"]["users_listed"] = len(wanted)
    return result
