"""The bag-of-words model learns the synthetic sequential structure and exports correct signatures."""

import os

import numpy as np
import pytest
import tensorflow as tf

from ondevice_rec.components.history_windowing import windowing
from ondevice_rec.components.history_windowing.executor import to_tf_example
from ondevice_rec.components.tflite_pusher import publish
from ondevice_rec.data import synthetic
from ondevice_rec.modules import export, features, metrics, trainer, vocabulary
from ondevice_rec.modules.config import ModelConfig


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data = synthetic.generate(synthetic.SyntheticConfig(users=300, items=150, mean_ratings_per_user=30, seed=11))
    options = windowing.WindowingOptions(history_length=5)
    root = str(tmp_path_factory.mktemp("examples"))
    split_examples = {s: [] for s in features.SPLITS}
    counts = {}
    by_user = {}
    for u, m, t in zip(data.user_id.tolist(), data.movie_id.tolist(), data.timestamp.tolist()):
        by_user.setdefault(u, []).append(windowing.Event(u, m, t))
    for events in by_user.values():
        for split, example in windowing.window_timeline(events, options):
            split_examples[split].append(example)
        for e in windowing.training_events(events, options):
            counts[e.movie_id] = counts.get(e.movie_id, 0) + 1
    for split, examples in split_examples.items():
        os.makedirs(os.path.join(root, f"Split-{split}"))
        with tf.io.TFRecordWriter(os.path.join(root, f"Split-{split}", "data.gz"), options="GZIP") as w:
            for example in examples:
                w.write(to_tf_example(example))
    vocab = vocabulary.build(counts, int(data.movie_id.max()),
                             {m: {"title": v.title} for m, v in data.movies.items()})
    config = ModelConfig(history_length=5, epochs=8, batch_size=128, learning_rate=0.01, top_k=20)
    model = trainer.train(config, vocab, [os.path.join(root, "Split-train", "*")],
                          [os.path.join(root, "Split-eval", "*")])
    export_dir = export.export_saved_model(model, vocab, config, str(tmp_path_factory.mktemp("model")))
    return export_dir, vocab, split_examples, config


def test_bag_of_words_beats_popularity_on_the_test_split(trained):
    export_dir, vocab, split_examples, _ = trained
    test = split_examples["test"]
    serve = tf.saved_model.load(export_dir).signatures[export.SERVING_SIGNATURE]
    serialized = tf.constant([to_tf_example(e) for e in test])
    scores = serve(examples=serialized)["scores"].numpy()
    ranked = [metrics.top_ids(row, 10) for row in scores]
    model_recall = metrics.recall_at_k(ranked, [e[features.LABEL_MOVIE_ID] for e in test])
    popularity = metrics.popularity_baseline([m.movie_id for m in vocab.movies], test)
    assert model_recall["recall@10"] > 1.5 * popularity["recall@10"], (model_recall, popularity)


def test_eval_signature_masks_padding_unseen_and_history(trained):
    export_dir, vocab, split_examples, _ = trained
    serve = tf.saved_model.load(export_dir).signatures[export.SERVING_SIGNATURE]
    example = split_examples["test"][0]
    scores = serve(examples=tf.constant([to_tf_example(example)]))["scores"].numpy()[0]
    assert scores.shape == (vocab.max_movie_id + 1,)
    masked = scores <= -1e8
    assert masked[features.PADDING_ID]
    assert all(masked[m] for m in example[features.SEEN_MOVIE_IDS])
    unseen = set(range(1, vocab.max_movie_id + 1)) - {m.movie_id for m in vocab.movies}
    assert all(masked[m] for m in unseen)
    allowed = {m.movie_id for m in vocab.movies} - set(example[features.SEEN_MOVIE_IDS])
    assert not any(masked[m] for m in allowed)


def test_tflite_conversion_is_builtin_only_and_ranks_like_the_saved_model(trained):
    export_dir, vocab, split_examples, config = trained
    tflite_model = publish.convert_to_tflite(export_dir, export.RECOMMEND_SIGNATURE)
    histories = [e[features.CONTEXT_MOVIE_ID] for e in split_examples["test"][:100]]
    parity = publish.check_parity(tflite_model, export_dir, histories, export.RECOMMEND_SIGNATURE)
    assert parity["parity_top10_overlap"] == pytest.approx(1.0)
    interpreter = tf.lite.Interpreter(model_content=tflite_model)
    ops = {op["op_name"] for op in interpreter._get_ops_details()}  # pylint: disable=protected-access
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops
    runner = interpreter.get_signature_runner(export.RECOMMEND_SIGNATURE)
    out = runner(context_movie_id=np.array(histories[0], np.int32))
    assert out[export.TOP_IDS].shape == (config.top_k,) and out[export.TOP_IDS].dtype == np.int32
    assert features.PADDING_ID not in out[export.TOP_IDS]
    assert not set(out[export.TOP_IDS].tolist()) & set(histories[0])


def test_unknown_and_out_of_range_ids_are_ignored(trained):
    export_dir, _, _, config = trained
    recommend = tf.saved_model.load(export_dir).signatures[export.RECOMMEND_SIGNATURE]
    padded = recommend(context_movie_id=tf.constant([0] * config.history_length, tf.int32))
    junk = recommend(context_movie_id=tf.constant([999999, -5] + [0] * (config.history_length - 2), tf.int32))
    np.testing.assert_array_equal(padded["top_ids"].numpy(), junk["top_ids"].numpy())
