"""The bag-of-words model learns the synthetic sequential structure and exports correct signatures."""

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

from ondevice_rec.components.tflite_pusher import checks, conversion, quantization
from ondevice_rec.components.history_windowing import windowing
from ondevice_rec.components.history_windowing.executor import to_tf_example
from ondevice_rec.data import synthetic
from ondevice_rec.modules import baselines, export, features, ranking_metrics, trainer, training, vocabulary
from ondevice_rec.modules import model as model_lib
from ondevice_rec.modules.config import ModelConfig
from ondevice_rec import serving
from ondevice_rec.serving import TFLiteRecommender


ENCODER_SETTINGS = {
    "bow": {},
    "cnn": {},
    "lstm": {"use_ratings": True},  # one encoder exercises the optional ratings input end to end
    "transformer": {"label_categories": True, "learning_rate": 0.005},
}


def test_every_registered_encoder_is_trained_and_converted_here():
    """A new encoder in modules/encoders/ must get its settings above, so the tests below cover it."""
    from ondevice_rec.modules.encoders import ENCODERS
    assert sorted(ENCODER_SETTINGS) == sorted(ENCODERS)


def events_of(data):
    """Synthetic ratings as windowing Events with string keys (as ExampleGen and windowing's parser give them)."""
    by_user = {}
    for u, m, t, r in zip(data.user_id.tolist(), data.movie_id.tolist(), data.timestamp.tolist(),
                          data.rating.tolist()):
        by_user.setdefault(u, []).append(windowing.Event(str(u), str(m), t, r))
    return by_user


def vocabulary_of(data, by_user, options):
    """The vocabulary tf.Transform would compute: training-event counts, categories, year quantiles."""
    counts = {}
    for events in by_user.values():
        for e in windowing.training_events(events, options):
            counts[e.item] = counts.get(e.item, 0) + 1
    metadata = {str(m): {"title": v.title, "categorical": {"genres": v.genres}, "numeric": {"year": v.year}}
                for m, v in data.movies.items()}
    years = sorted(v.year for v in data.movies.values())
    return vocabulary.build(counts, metadata, boundaries={"year": years[::max(1, len(years) // 8)][1:]})


def indexed(example: dict, index: dict) -> dict:
    """A windowed example as the Transform component outputs it (keys -> vocabulary indices, 0 = unknown)."""
    return {features.CONTEXT_INDEX: [index.get(k, 0) for k in example[features.CONTEXT_ITEM]],
            features.CONTEXT_RATING: list(example[features.CONTEXT_RATING]),
            features.LABEL_INDEX: index.get(example[features.LABEL_ITEM], 0),
            features.SEEN_INDEX: [index.get(k, 0) for k in example[features.SEEN_ITEMS]]}


def serialize(example: dict) -> bytes:
    proto = tf.train.Example()
    for name, value in example.items():
        if name == "windowed":
            continue
        values = value if isinstance(value, list) else [value]
        if name == features.CONTEXT_RATING:
            proto.features.feature[name].float_list.value.extend(values)
        else:
            proto.features.feature[name].int64_list.value.extend(values)
    return proto.SerializeToString()


def indexed_splits(data, history_length: int):
    options = windowing.WindowingOptions(history_length=history_length)
    by_user = events_of(data)
    vocab = vocabulary_of(data, by_user, options)
    index = vocab.key_to_index()
    splits = {s: [] for s in features.SPLITS}
    for events in by_user.values():
        for split, example in windowing.window_timeline(events, options):
            splits[split].append(indexed(example, index) | {"windowed": to_tf_example(example)})
    return vocab, splits


def write_splits(splits, root: str) -> None:
    for split, examples in splits.items():
        os.makedirs(os.path.join(root, f"Split-{split}"))
        with tf.io.TFRecordWriter(os.path.join(root, f"Split-{split}", "data.gz"), options="GZIP") as w:
            for example in examples:
                w.write(serialize(example))


@pytest.fixture(scope="module", params=sorted(ENCODER_SETTINGS))
def trained(request, tmp_path_factory):
    data = synthetic.generate(synthetic.SyntheticConfig(users=300, items=150, mean_ratings_per_user=30, seed=11))
    vocab, split_examples = indexed_splits(data, 5)
    root = str(tmp_path_factory.mktemp("examples"))
    write_splits(split_examples, root)
    settings = {"learning_rate": 0.01, **ENCODER_SETTINGS[request.param]}
    config = ModelConfig(personal_history=0,
                         encoder=request.param, history_length=5, epochs=8, batch_size=128, top_k=20, **settings)
    config = config.derive_from_data(vocab.size - 1)[0]  # the embedding size, as the export records it
    model = trainer.train(config, vocab, [os.path.join(root, "Split-train", "*")],
                          [os.path.join(root, "Split-eval", "*")])
    export_dir = export.export_saved_model(model, vocab, config, str(tmp_path_factory.mktemp("model")))
    return export_dir, vocab, split_examples, config


def test_every_encoder_beats_popularity_on_the_test_split(trained):
    export_dir, vocab, split_examples, _ = trained
    test = split_examples["test"]
    serve = tf.saved_model.load(export_dir).signatures[export.SERVING_SIGNATURE]
    serialized = tf.constant([e["windowed"] for e in test])  # serving_default reads keys (what TFMA feeds)
    scores = serve(examples=serialized)["scores"].numpy()
    model_recall = ranking_metrics.evaluate(scores, [0] * len(test))  # column 0: the label's score
    popularity = baselines.popularity_baseline(list(range(1, vocab.size)), test)
    assert model_recall["recall@10"] > 1.5 * popularity["recall@10"], (model_recall, popularity)


def test_the_validated_signature_scores_with_the_table_the_eval_split_validated(trained):
    """``serving_validated`` (the blessing Evaluator's, on the eval split) adds the successor table of the
    training events; ``serving_default`` and the on-device function the exported one, which also counts each
    eval target's transition: on the eval examples they differ where those transitions are."""
    from ondevice_rec.modules import successors
    export_dir, vocab, split_examples, config = trained
    loaded = tf.saved_model.load(export_dir)
    held_out = split_examples["eval"]
    serialized = tf.constant([e["windowed"] for e in held_out])
    exported = loaded.signatures[export.SERVING_SIGNATURE](examples=serialized)["scores"].numpy()
    validated = loaded.signatures[export.VALIDATED_SIGNATURE](examples=serialized)["scores"].numpy()
    tables = [v.numpy() for v in loaded.model.variables if v.name.endswith("table:0") and
              v.shape == (vocab.size, config.successors)]
    assert len(tables) == 2 and not np.array_equal(*tables)
    train = split_examples["train"]
    trained_pairs = successors.training_pairs([e[features.CONTEXT_INDEX] for e in train],
                                              [e[features.LABEL_INDEX] for e in train], config.default_train_stride())
    assert any(np.array_equal(t, successors.successor_table([trained_pairs], vocab.size, config.successors))
               for t in tables)  # the validated table: the training events only
    assert not np.allclose(exported, validated)
    # the exported table adds each eval target's own transition (a recount can also push another successor
    # out of an item's top entries: a few labels lose)
    label_scores = exported[:, 0] - validated[:, 0]
    assert (label_scores > 1e-4).mean() > 0.5 > (label_scores < -1e-4).mean()


def test_eval_signature_masks_padding_and_history(trained):
    export_dir, vocab, split_examples, _ = trained
    serve = tf.saved_model.load(export_dir).signatures[export.SERVING_SIGNATURE]
    example = split_examples["test"][0]
    output = serve(examples=tf.constant([example["windowed"]]))["scores"].numpy()[0]
    assert output.shape == (1 + vocab.size,)  # the label's score, then the catalogue's, whatever the raw ids
    label, scores = example[features.LABEL_INDEX], output[1:]
    assert (output[0] > -1e8) == (label > 0)  # a label outside the vocabulary is a miss
    masked = scores <= -1e8
    assert masked[features.PADDING_ID] and (not label or masked[label])
    assert all(masked[m] for m in example[features.SEEN_INDEX] + example[features.CONTEXT_INDEX])
    allowed = set(range(1, vocab.size)) - set(example[features.SEEN_INDEX]) - set(example[features.CONTEXT_INDEX]) \
        - {label}
    assert not any(masked[m] for m in allowed)


def test_tflite_conversion_is_builtin_only_and_ranks_like_the_saved_model(trained):
    export_dir, vocab, split_examples, config = trained
    tflite_model = conversion.convert_to_tflite(export_dir, export.RECOMMEND_SIGNATURE)
    histories = [{k: e[k] for k in (features.CONTEXT_INDEX, features.CONTEXT_RATING)}
                 for e in split_examples["test"][:100]]
    parity = checks.check_parity(tflite_model, export_dir, histories, export.RECOMMEND_SIGNATURE)
    assert parity["parity_top10_overlap"] >= 0.99  # the publishing bar
    assert parity["parity_top10_min_overlap"] >= 0.9
    interpreter = serving.interpreter(tflite_model)
    ops = {op["op_name"] for op in interpreter._get_ops_details()}  # pylint: disable=protected-access
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops
    assert "WHILE" not in ops  # fixed-length graphs: no control flow on the device
    runner = interpreter.get_signature_runner(export.RECOMMEND_SIGNATURE)
    assert sorted(runner.get_input_details()) == sorted(
        [features.CONTEXT_INDEX] + ([features.CONTEXT_RATING] if config.use_ratings else []))
    assert sorted(runner.get_output_details()) == [export.TOP_IDS, export.TOP_SCORES]
    ids = histories[0][features.CONTEXT_INDEX]
    feed = {features.CONTEXT_INDEX: np.array(ids, np.int32)}
    if config.use_ratings:
        feed[features.CONTEXT_RATING] = np.array(histories[0][features.CONTEXT_RATING], np.float32)
    out = runner(**feed)
    assert out[export.TOP_IDS].shape == (config.top_k,) and out[export.TOP_IDS].dtype == np.int32
    assert features.PADDING_ID not in out[export.TOP_IDS]
    assert not set(out[export.TOP_IDS].tolist()) & set(ids)


def test_out_of_range_indices_are_ignored(trained):
    export_dir, _, _, config = trained
    recommend = tf.saved_model.load(export_dir).signatures[export.RECOMMEND_SIGNATURE]
    extra = {features.CONTEXT_RATING: tf.zeros([config.history_length])} if config.use_ratings else {}
    padded = recommend(context_index=tf.constant([7, 0] + [0] * (config.history_length - 2), tf.int32), **extra)
    junk = recommend(context_index=tf.constant([7, 999999] + [-5] * (config.history_length - 2), tf.int32),
                     **extra)
    np.testing.assert_array_equal(padded["top_ids"].numpy(), junk["top_ids"].numpy())


def test_sampled_softmax_with_log_q_trains_a_model_that_beats_popularity(tmp_path):
    """Sampled-softmax training (for huge catalogues) still learns the sequential structure."""
    data = synthetic.generate(synthetic.SyntheticConfig(users=300, items=150, mean_ratings_per_user=30, seed=11))
    vocab, examples = indexed_splits(data, 5)
    config = ModelConfig(personal_history=0,
                         history_length=5, epochs=8, batch_size=128, learning_rate=0.01, softmax="sampled",
                         num_sampled=40, use_item_categories=False, use_item_numbers=False)

    def dataset(split):
        ids = np.array([e[features.CONTEXT_INDEX] for e in examples[split]], np.int32)
        labels = np.array([e[features.LABEL_INDEX] for e in examples[split]], np.int32)
        keep = labels > 0
        return tf.data.Dataset.from_tensor_slices(({features.CONTEXT_INDEX: ids[keep]}, labels[keep])).batch(128)

    model = training.fit(config, vocab, dataset("train").shuffle(10_000, seed=0), dataset("eval"))
    assert len(model.history.history["loss"]) >= 2
    module = export.RecommenderModule(model, vocab, config)
    scores = module.serve_examples(tf.constant([e["windowed"] for e in examples["test"]]))["scores"].numpy()
    model_recall = ranking_metrics.evaluate(scores, [0] * len(examples["test"]))
    popularity = baselines.popularity_baseline(list(range(1, vocab.size)), examples["test"])
    assert model_recall["recall@10"] > 1.5 * popularity["recall@10"], (model_recall, popularity)


@pytest.mark.parametrize("encoder", sorted(ENCODER_SETTINGS))
def test_queries_are_causal_and_serving_uses_the_most_recent_position(encoder):
    """Training takes a query at every position: each may depend on that item and older ones only, and the
    serving model's query is the one at the most recent position."""
    from ondevice_rec.modules import model as model_lib
    vocab = vocabulary.build({str(m): 10 + m for m in range(1, 31)},
                             {str(m): {"title": f"m{m}", "categorical": {"genres": ["A" if m % 2 else "B"]},
                                       "numeric": {"year": 1990}} for m in range(1, 31)},
                             boundaries={"year": [1980.0, 2000.0]})
    config = ModelConfig(personal_history=0, encoder=encoder, history_length=6, embedding_dim=8, transformer_heads=2,
                         **{k: v for k, v in ENCODER_SETTINGS[encoder].items() if k != "learning_rate"})
    recommender = model_lib.build_recommender(config, vocab)
    history = np.array([[4, 9, 2, 17, 0, 0]], np.int32)  # most recent first: oldest-first is [0 0 17 2 9 4]
    changed = history.copy()
    changed[0, 1] = 25  # the second most recent item, oldest-first position 4
    inputs = {features.CONTEXT_INDEX: history}
    changed_inputs = {features.CONTEXT_INDEX: changed}
    if config.use_ratings:
        inputs[features.CONTEXT_RATING] = changed_inputs[features.CONTEXT_RATING] = \
            np.array([[4, 3, 5, 2, 0, 0]], np.float32)
    queries, index = [t.numpy() for t in recommender.sequence(inputs, training=False)]
    changed_queries, _ = [t.numpy() for t in recommender.sequence(changed_inputs, training=False)]
    np.testing.assert_array_equal(index[0], history[0, ::-1])
    np.testing.assert_allclose(queries[0, :4], changed_queries[0, :4], atol=1e-6)  # older positions untouched
    assert not np.allclose(queries[0, 4:], changed_queries[0, 4:], atol=1e-6)
    scores = recommender.model(inputs, training=False).numpy()
    expected = recommender.model.get_layer("scores")(tf.constant(queries[:, -1])).numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)


def test_the_sasrec_form_of_the_transformer_scales_the_embeddings_and_narrows_the_feed_forward_layer():
    """transformer_scale_embeddings multiplies the activity embeddings by sqrt(d) before the positions are added
    (SASRec), transformer_ffn_width sets the feed-forward width in multiples of d; the queries stay causal."""
    from ondevice_rec.modules import model as model_lib
    vocab = vocabulary.build({str(m): 10 + m for m in range(1, 31)})
    base = dict(encoder="transformer", history_length=6, embedding_dim=8, use_item_categories=False,
                use_item_numbers=False, dropout=0.0)
    ours = model_lib.build_recommender(ModelConfig(personal_history=0, **base), vocab)
    sasrec = model_lib.build_recommender(ModelConfig(personal_history=0,
                                                     **base, transformer_heads=1, transformer_ffn_width=1,
                                                     transformer_scale_embeddings=True), vocab)
    assert tuple(ours.model.get_layer("ffn_0_in").kernel.shape) == (8, 16)
    assert tuple(sasrec.model.get_layer("ffn_1_in").kernel.shape) == (8, 8)
    assert "embedding_scale" not in {layer.name for layer in ours.model.layers}
    scale = sasrec.model.get_layer("embedding_scale")
    np.testing.assert_allclose(scale(tf.ones([1, 2, 8])).numpy(), np.full([1, 2, 8], 8 ** 0.5), rtol=1e-6)
    history = np.array([[4, 9, 2, 17, 0, 0]], np.int32)
    changed = history.copy()
    changed[0, 0] = 25  # the most recent item: every older position's query stays as it was
    queries, _ = sasrec.sequence({features.CONTEXT_INDEX: history}, training=False)
    changed_queries, _ = sasrec.sequence({features.CONTEXT_INDEX: changed}, training=False)
    np.testing.assert_allclose(queries.numpy()[0, :5], changed_queries.numpy()[0, :5], atol=1e-6)
    assert not np.allclose(queries.numpy()[0, 5], changed_queries.numpy()[0, 5], atol=1e-6)
    with pytest.raises(ValueError, match="transformer_ffn_width"):
        ModelConfig(personal_history=0, transformer_ffn_width=0)


def test_quantized_models_are_builtin_only_smaller_and_keep_recall(trained):
    """float16 and dynamic-range int8 pass the publishing check (recall@10 within 2 % of float); full int8
    converts with builtin ops and still ranks (its check is made at publish time, see the pusher)."""
    export_dir, _, split_examples, config = trained
    test = split_examples["test"]
    histories = [{k: e[k] for k in (features.CONTEXT_INDEX, features.CONTEXT_RATING)} for e in test]
    labels = [e[features.LABEL_INDEX] for e in test]
    float_model = conversion.convert_to_tflite(export_dir, export.RECOMMEND_SIGNATURE)
    lite = TFLiteRecommender(float_model, export.RECOMMEND_SIGNATURE)
    feeds = [lite.inputs(h[features.CONTEXT_INDEX], h[features.CONTEXT_RATING]) for h in histories[:100]]
    sizes = {"float32": len(float_model)}
    for mode in [m for m in quantization.QUANTIZATIONS if m != quantization.FLOAT]:  # every registered mode
        quantized = conversion.convert_to_tflite(export_dir, export.RECOMMEND_SIGNATURE, mode, feeds)
        sizes[mode] = len(quantized)
        ops = {op["op_name"] for op in serving.interpreter(quantized)._get_ops_details()}  # noqa
        assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), (mode, ops)
        if quantization.get(mode).calibrated:
            recall = checks.tflite_recall(quantized, export.RECOMMEND_SIGNATURE, histories, labels)
            assert recall >= 0.5 * checks.tflite_recall(float_model, export.RECOMMEND_SIGNATURE, histories, labels)
        else:
            result = checks.check_quantized_recall(float_model, quantized, export.RECOMMEND_SIGNATURE, histories,
                                                    labels)
            assert result["quantized_histories"] == len(test)
    assert sizes["float16"] < sizes["float32"] and sizes["dynamic"] < sizes["float32"], sizes


def test_quantized_recall_check_rejects_a_model_that_ranks_worse(trained, tmp_path):
    export_dir, vocab, split_examples, config = trained
    from ondevice_rec.modules import model as model_lib
    untrained = export.export_saved_model(model_lib.build_model(config, vocab), vocab, config, str(tmp_path / "u"))
    test = split_examples["test"]
    histories = [{k: e[k] for k in (features.CONTEXT_INDEX, features.CONTEXT_RATING)} for e in test]
    with pytest.raises(checks.ParityError, match="quantized recall@10"):
        checks.check_quantized_recall(conversion.convert_to_tflite(export_dir, export.RECOMMEND_SIGNATURE),
                                       conversion.convert_to_tflite(untrained, export.RECOMMEND_SIGNATURE),
                                       export.RECOMMEND_SIGNATURE, histories,
                                       [e[features.LABEL_INDEX] for e in test])


def test_warm_start_carries_weights_over_by_item_key(trained):
    """A later span's vocabulary (another order, an item gone, a new item): rows follow the item keys."""
    from ondevice_rec.modules import model as model_lib, warm_start
    export_dir, vocab, split_examples, config = trained
    old_model = tf.saved_model.load(export_dir)
    gone = vocab.size - 1  # the old index of the item that disappears
    reordered = list(reversed(vocab.items[:-1])) + [vocabulary.ItemEntry("new-item", 1, "New")]
    new_vocab = vocabulary.Vocabulary(reordered, vocab.categories, vocab.boundaries)
    # The successor table is the new span's data, not a weight: counted again from the same windows (and the
    # held-out examples' latest transitions, as the Trainer exports it) here, mapped to the new indices by key,
    # so that the scores can match.
    from ondevice_rec.modules import successors
    train, held_out = split_examples["train"], split_examples["eval"]
    old_table = successors.successor_table(
        [successors.training_pairs([e[features.CONTEXT_INDEX] for e in train], [e[features.LABEL_INDEX] for e in train],
                                   config.default_train_stride()),
         successors.latest_pairs([e[features.CONTEXT_INDEX] for e in held_out],
                                 [e[features.LABEL_INDEX] for e in held_out])], vocab.size, config.successors)
    to_new = np.array([0] + [new_vocab.key_to_index()[m.key] if m.key in new_vocab.key_to_index() else 0
                             for m in vocab.items])
    index, count = successors.unpack(old_table)
    table = np.zeros_like(old_table)
    table[to_new[1:]] = successors.pack(to_new[index], np.where(to_new[index] > 0, count, 0))[1:]
    table[0] = 0  # the gone item's row landed on padding
    fresh = model_lib.build_model(config, new_vocab, table)
    strength = [v for v in old_model.model.variables if v.name == "strength:0"]  # the successor table's
    assert len(strength) == 1 and strength[0].numpy() > 0  # training chose a strength for the table
    model_lib.successor_layer(fresh).set_strength(strength[0].numpy())
    fresh_new_row = fresh.get_layer("context_embedding").embeddings.numpy()[-1].copy()
    stats = warm_start.warm_start(fresh, new_vocab, export_dir)
    assert stats["items_carried_over"] == len(vocab.items) - 1 and stats["new_items"] == 1
    np.testing.assert_array_equal(fresh.get_layer("context_embedding").embeddings.numpy()[-1], fresh_new_row)
    # Same items, same weights: the warm-started model scores every history item like the old one, once the
    # old histories are mapped to the new indices by key.
    new_index = new_vocab.key_to_index()
    old_key = {i: m.key for i, m in enumerate(vocab.items, start=1)}
    histories = [e for e in split_examples["test"] if gone not in e[features.CONTEXT_INDEX]][:20]

    def inputs(mapping):
        out = {features.CONTEXT_INDEX: tf.constant([[mapping(i) for i in e[features.CONTEXT_INDEX]]
                                                    for e in histories], tf.int32)}
        if config.use_ratings:
            out[features.CONTEXT_RATING] = tf.constant([e[features.CONTEXT_RATING] for e in histories], tf.float32)
        return out
    old_scores = old_model.model(inputs(lambda i: i), training=False).numpy()
    new_scores = fresh(inputs(lambda i: new_index[old_key[i]] if i else 0), training=False).numpy()
    for old, item in enumerate(vocab.items[:-1], start=1):
        np.testing.assert_allclose(new_scores[:, new_index[item.key]], old_scores[:, old], rtol=1e-4, atol=1e-4)
    other = model_lib.build_model(dataclasses.replace(config, embedding_dim=2 * config.embedding_dim), new_vocab)
    with pytest.raises(ValueError, match="base shape"):
        warm_start.warm_start(other, new_vocab, export_dir)


def _constants(model: bytes):
    """``(type name, shape, bytes)`` of every constant tensor of a TFLite model."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils
    flat = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    types = {v: k for k, v in schema.TensorType.__dict__.items() if not k.startswith("_")}
    graph = flat.subgraphs[0]
    return [(types[t.type], tuple(t.shape), len(flat.buffers[t.buffer].data)) for t in graph.tensors
            if flat.buffers[t.buffer].data is not None], graph


def test_compact_models_store_one_item_table_and_narrow_lookup_tables(trained):
    """The shipped file: category / bucket tables in int8-int16 (no vocabulary-sized int32 table, no table
    indexed by raw id), internal tensor names dropped, and in full int8 the tied item table stored once,
    ranking as before compaction."""
    export_dir, vocab, split_examples, config = trained
    test = split_examples["test"]
    histories = [{k: e[k] for k in (features.CONTEXT_INDEX, features.CONTEXT_RATING)} for e in test]
    float_model = conversion.convert_to_tflite(export_dir, export.RECOMMEND_SIGNATURE)
    constants, graph = _constants(float_model)
    assert not [c for c in constants if c[0] == "INT32" and vocab.size in c[1]], constants
    # Lookup tables are indexed by vocabulary index: no integer table is longer than the vocabulary.
    assert all(max(c[1], default=0) <= vocab.size for c in constants if c[0].startswith(("INT", "UINT"))), constants
    named = [i for i, t in enumerate(graph.tensors) if t.name]
    assert set(named) == set(graph.inputs) | set(graph.outputs), named
    uncompacted = conversion.convert_to_tflite(export_dir, export.RECOMMEND_SIGNATURE, compact_model=False)
    assert len(float_model) < len(uncompacted)
    lite, raw = (TFLiteRecommender(m, export.RECOMMEND_SIGNATURE) for m in (float_model, uncompacted))
    for h in histories[:50]:
        feed = lite.inputs(h[features.CONTEXT_INDEX], h[features.CONTEXT_RATING])
        np.testing.assert_array_equal(lite.runner(**feed)["top_ids"], raw.runner(**feed)["top_ids"])

    feeds = [lite.inputs(h[features.CONTEXT_INDEX], h[features.CONTEXT_RATING]) for h in histories[:100]]
    int8 = conversion.convert_to_tflite(export_dir, export.RECOMMEND_SIGNATURE, "int8", feeds)
    int8_raw = conversion.convert_to_tflite(export_dir, export.RECOMMEND_SIGNATURE, "int8", feeds, compact_model=False)
    tables = [c for c in _constants(int8)[0] if c[0] == "INT8" and c[1] == (vocab.size, config.embedding_dim)]
    tied = config.tie_embeddings and not config.label_categories  # label weights = the history item table
    assert len(tables) == (1 if tied else 2), tables
    if tied:
        assert len(int8_raw) - len(int8) >= vocab.size * config.embedding_dim
    compact, raw = (TFLiteRecommender(m, export.RECOMMEND_SIGNATURE) for m in (int8, int8_raw))
    overlap = np.mean([checks.top_k_overlap(compact.runner(**f)["top_ids"], raw.runner(**f)["top_ids"])
                       for f in feeds])
    assert overlap >= 0.9, overlap


def test_narrowest_int_dtype():
    from ondevice_rec.modules.layers import narrowest_int_dtype
    assert narrowest_int_dtype([0, 127]) == np.int8 and narrowest_int_dtype([-1, 128]) == np.int16
    assert narrowest_int_dtype([0, 40000]) == np.int32 and narrowest_int_dtype([]) == np.int8


def test_validation_recall_excludes_seen_items_as_the_evaluator_does(tmp_path):
    """Early stopping watches the Evaluator's recall: history and seen items are not ranked, and targets
    the model cannot rank (index 0: unknown) are dropped from validation."""
    vocab = vocabulary.build({"10": 50, "20": 40, "30": 30, "40": 20})  # indices 1..4 = items 10, 20, 30, 40
    config = ModelConfig(personal_history=0,
                         encoder="bow", history_length=2, use_item_categories=False, use_item_numbers=False)
    examples = [  # label 2 (item 20): index 1 outranks it (bias) unless 1 is in the history or seen
        {features.CONTEXT_INDEX: [3, 0], features.LABEL_INDEX: 2, features.SEEN_INDEX: [3, 1]},
        {features.CONTEXT_INDEX: [1, 3], features.LABEL_INDEX: 2, features.SEEN_INDEX: [1, 3]},
        {features.CONTEXT_INDEX: [3, 0], features.LABEL_INDEX: 2, features.SEEN_INDEX: [3]},
        {features.CONTEXT_INDEX: [3, 0], features.LABEL_INDEX: 0, features.SEEN_INDEX: [3]},
    ]
    os.makedirs(tmp_path / "Split-eval")
    with tf.io.TFRecordWriter(str(tmp_path / "Split-eval" / "data.gz"), options="GZIP") as w:
        for example in examples:
            w.write(serialize(example))
    data = trainer.make_dataset([str(tmp_path / "Split-eval" / "*")], config, shuffle=False, validation=True)
    inputs, labels = next(iter(data))
    assert labels.numpy().tolist() == [2, 2, 2]  # the unknown target is dropped
    assert sorted(inputs[model_lib.SEEN_INDEX].numpy().tolist()) == [[1, 3], [3, 0], [3, 1]]
    # validation_users: the first examples in the canonical order (the Evaluator still scores them all)
    capped = trainer.make_dataset([str(tmp_path / "Split-eval" / "*")], dataclasses.replace(config, validation_users=2),
                                  shuffle=False, validation=True)
    canonical = trainer.canonical_records([str(tmp_path / "Split-eval" / "data.gz")], 10)
    first_two = [tf.train.Example.FromString(r).features.feature for r in canonical[:2]]
    kept = [list(f[features.SEEN_INDEX].int64_list.value) for f in first_two
            if f[features.LABEL_INDEX].int64_list.value[0] > 0]
    assert [x[model_lib.SEEN_INDEX].numpy().tolist() for x, _ in capped] == [[s + [0] * (2 - len(s)) for s in kept]]
    with pytest.raises(ValueError, match="validation_users"):
        ModelConfig(personal_history=0, validation_users=-1)

    recommender = model_lib.build_recommender(config, vocab)
    for layer in (recommender.model.get_layer("scores"), recommender.model.get_layer("context_embedding")):
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    recommender.model.get_layer("scores").label_bias.assign([0.0, 4.0, 3.0, 2.0, 1.0])  # 1 first, then 2
    fitted = training.RecommenderTrainer(recommender, config)
    fitted.compile(loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                   metrics=[ranking_metrics.RankingMetric("recall", 1, "recall@1").keras()])
    # Example 1: index 1 is seen; example 2: it is in the history; example 3: it outranks the target.
    assert fitted.evaluate(data, verbose=0, return_dict=True)["recall@1"] == pytest.approx(2 / 3)


def test_key_lookup_maps_keys_to_their_index_and_everything_else_to_padding():
    keys = [f"sku-{i}" for i in range(500)] + ["", "1e9", "ü"]
    lookup = export.KeyLookup(keys[:500] + keys[501:])  # vocabulary order = index order (1..V)
    expected = {k: i for i, k in enumerate(keys[:500] + keys[501:], start=1)}
    asked = [["sku-7", "1e9", "unknown", ""], ["ü", "sku-499", "sku-500", "sku-0"]]
    got = lookup(tf.constant(asked)).numpy()
    assert got.tolist() == [[expected.get(k, features.PADDING_ID) for k in row] for row in asked]
    assert export.KeyLookup([])(tf.constant(["a", ""])).numpy().tolist() == [0, 0]
