"""The whole pipeline on BeamDagRunner with a tiny synthetic dataset: publish, parity, cache, gate."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from ondevice_rec.components.tflite_pusher import checks, metadata as metadata_lib
from ondevice_rec.modules import baselines, export, features, ranking_metrics
from ondevice_rec.pipeline import runner
from ondevice_rec.serving import Recommender, TFLiteRecommender

COMPONENTS = {"EventExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "HistoryWindowing",
              "Transform", "Trainer", "latest_blessed_model_resolver", "Evaluator", "test_evaluator", "TFLitePusher"}
UPSTREAM_OF_EVALUATION = {"EventExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
                          "HistoryWindowing", "Transform", "Trainer", "test_evaluator"}


@pytest.mark.slow
def test_every_component_executes_once_and_a_model_is_published(two_runs):
    config, first, _ = two_runs
    assert sorted(n.node_id for n in first.nodes) == sorted(COMPONENTS)
    assert {n.state for n in first.nodes} == {"executed"}
    assert first.push["pushed"] == 1
    latest = os.path.join(config.serving_dir, "latest")
    assert os.path.realpath(latest) == first.push["pushed_destination"]
    for name in ("model.tflite", "metadata.json", "eval.json", "vocabulary.json"):
        assert os.path.getsize(os.path.join(latest, name)) > 0
    with open(os.path.join(latest, "metadata.json")) as f:
        metadata = json.load(f)
    metadata_lib.validate(metadata)  # the JSON Schema apps rely on
    assert metadata["encoder"] == config.model.encoder and metadata["history_length"] == 10
    assert metadata["top_k"] == 50 and metadata["quantization"] == "float16"
    with open(os.path.join(latest, metadata["vocabulary_file"]), encoding="utf-8") as f:
        vocabulary = json.load(f)
    counts = [m["count"] for m in vocabulary["items"]]
    assert counts == sorted(counts, reverse=True) and len(counts) == metadata["vocabulary"]["size"]
    assert [m["index"] for m in vocabulary["items"]] == list(range(1, len(counts) + 1))
    assert metadata["item_features"] == {"categorical": ["genres"], "numeric": ["year"]}
    assert vocabulary["categories"]["genres"] and len(vocabulary["boundaries"]["year"]) > 2
    assert [o["name"] for o in metadata["outputs"]] == ["top_ids", "top_scores"]
    assert metadata["pipeline_run_id"] == first.run_id
    assert metadata["parity"]["parity_top10_overlap"] >= 0.99  # float32 TFLite vs SavedModel
    # ... and the published float16 model's recall@10 is within 2 % of the float32 model's
    assert metadata["parity"]["quantized_recall@10"] >= 0.98 * metadata["parity"]["float_recall@10"]
    with open(os.path.join(latest, "eval.json")) as f:
        report = json.load(f)
    assert set(report) == set(ranking_metrics.NAMES) | {"num_eval_users"}
    assert 0 < report["ndcg@10"] <= report["recall@10"]
    assert report["num_eval_users"] == 150  # one test target per user
    assert 0 <= report["recall@1"] <= report["recall@5"] <= report["recall@10"] <= 1
    # How training ended, from the Trainer's ModelRun artifact, in the run summary (4 epochs, patience 3).
    training = first.training
    assert 1 <= training["best_epoch"] <= training["epochs_run"] <= 4 and len(training["epoch_seconds"]) == \
        training["epochs_run"] == len(training["history"]["val_recall@10"])
    assert training["best_val_recall_at_10"] == pytest.approx(max(training["history"]["val_recall@10"]), abs=1e-6)
    assert f"Training: {training['epochs_run']} epochs in " in runner.format_summary(first)


@pytest.mark.slow
def test_published_model_beats_popularity_and_matches_the_saved_model(two_runs):
    config, first, _ = two_runs
    assert first.test_metrics["recall@10"] > first.popularity["recall@10"]
    latest = os.path.join(config.serving_dir, "latest")
    with open(os.path.join(latest, "metadata.json")) as f:
        saved_model_dir = os.path.join(json.load(f)["model_uri"], "Format-Serving")
    reference = tf.saved_model.load(saved_model_dir).signatures[export.RECOMMEND_SIGNATURE]
    lite = TFLiteRecommender(os.path.join(latest, "model.tflite"))
    test = baselines.read_examples(os.path.join(_output(config, "Transform", "transformed_examples"), "Split-test",
                                                "*"))
    rng = np.random.default_rng(0)
    overlaps = []
    for i in rng.choice(len(test), size=40, replace=False):
        history = lite.pad(test[i][features.CONTEXT_INDEX])
        expected = reference(context_index=tf.constant(history))["top_ids"].numpy()[:10]
        overlaps.append(checks.top_k_overlap(lite(history)["top_ids"], expected))
    assert np.mean(overlaps) >= 0.95 and min(overlaps) >= 0.7, overlaps  # float16 weights: near-ties may swap


def _output(config, node, name):
    folder = os.path.join(config.pipeline_root, node, name)
    return os.path.join(folder, sorted(os.listdir(folder))[-1])


@pytest.mark.slow
def test_tf_transform_and_the_published_vocabulary_map_keys_to_the_same_indices(two_runs):
    """The app maps keys with vocabulary.json; training and evaluation saw tf.Transform's mapping: the same,
    on every test example (unknown keys -> 0 on both sides)."""
    config, _, _ = two_runs
    with open(os.path.join(config.serving_dir, "latest", "vocabulary.json"), encoding="utf-8") as f:
        index = {m["key"]: m["index"] for m in json.load(f)["items"]}
    windowed = os.path.join(_output(config, "HistoryWindowing", "examples"), "Split-test", "*")
    files = tf.io.gfile.glob(windowed)
    mapped = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        keys = [k.decode() for k in feature[features.CONTEXT_ITEM].bytes_list.value]
        label = feature[features.LABEL_ITEM].bytes_list.value[0].decode()
        mapped.append((tuple(index.get(k, 0) for k in keys), index.get(label, 0)))
    transformed = baselines.read_examples(os.path.join(_output(config, "Transform", "transformed_examples"),
                                                       "Split-test", "*"))
    assert sorted(mapped) == sorted((tuple(e[features.CONTEXT_INDEX]), e[features.LABEL_INDEX])
                                    for e in transformed)
    assert len(mapped) == 150


@pytest.mark.slow
def test_recommendations_never_contain_padding_or_history(two_runs):
    config, _, _ = two_runs
    recommender = Recommender(os.path.join(config.serving_dir, "latest"))
    history = [m["key"] for m in recommender.vocabulary["items"][:12]]  # the most popular ones
    results = recommender.recommend(history + ["no-such-item", history[0]], k=20)
    encoded = recommender.encode(history + ["no-such-item", history[0]])
    assert encoded.unknown == ["no-such-item"] and encoded.repeated == [history[0]]
    ids = [key for key, _ in results]
    assert len(ids) == 20 and not set(ids) & set(history)
    scores = [score for _, score in results]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.slow
def test_second_run_is_served_from_the_cache_and_does_not_republish(two_runs):
    config, first, second = two_runs
    states = {n.node_id: n.state for n in second.nodes}
    assert {node: states[node] for node in UPSTREAM_OF_EVALUATION} == {n: "cached" for n in UPSTREAM_OF_EVALUATION}
    # The blessing is recomputed against the model now serving (the baseline changed): same model, no regression.
    assert second.push["pushed"] == 0
    assert "already serving" in second.push["push_outcome"]
    assert os.listdir(config.serving_dir).count("latest") == 1
    assert len([d for d in os.listdir(config.serving_dir) if d != "latest"]) == 1
    assert second.wall_seconds < first.wall_seconds
