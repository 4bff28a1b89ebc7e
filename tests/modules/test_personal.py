"""The per-user state (modules/personal.py): the training view, the exported signatures and the TFLite model
agree with the update rule, a zero state is exactly the model without one, and the pusher refuses a state
that changes nothing or diverges."""

import numpy as np
import pytest
import tensorflow as tf

from ondevice_rec.components.tflite_pusher import checks, conversion, metadata as metadata_lib
from ondevice_rec.modules import export, features, model as model_lib, personal, vocabulary
from ondevice_rec.modules.config import ModelConfig
from ondevice_rec.serving import SignatureCall, interpreter

N, M, ITEMS, DIM = 5, 8, 60, 8
SIGNATURES = [features.RECOMMEND_SIGNATURE, features.RECOMMEND_PERSONAL_SIGNATURE, features.UPDATE_STATE_SIGNATURE]


def small_vocab():
    return vocabulary.build({f"sku-{m}": 200 - m for m in range(1, ITEMS + 1)},
                            {f"sku-{m}": {"title": f"Item {m}", "categorical": {"genres": ["Drama" if m % 2 else
                                                                                           "Comedy"]}}
                             for m in range(1, ITEMS + 1)})


def config(**changes):
    return ModelConfig(**{"encoder": "lstm", "history_length": N, "embedding_dim": DIM, "top_k": 20,
                          "personal_history": M, "personal_decay": 0.9, "successors": 4, **changes})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An untrained model with a per-user state (its projection random, so the state moves the scores),
    exported and converted with its three signatures."""
    vocab = small_vocab()
    built = model_lib.build_recommender(config(), vocab)
    directory = str(tmp_path_factory.mktemp("personal") / "model")
    export.export_saved_model(built.model, vocab, config(), directory)
    return built, vocab, directory, conversion.convert_to_tflite(directory, SIGNATURES)


def replay(update, picks, size):
    state = np.zeros(size, np.float32)
    for item in picks:
        state = update(state, item)
    return state


def test_the_update_rule_decays_adds_and_skips_unknown_items():
    embeddings = np.arange(12, dtype=np.float32).reshape(4, 3)
    state = personal.update_state(np.zeros(4), 2, embeddings, 0.5)
    np.testing.assert_allclose(state, [6, 7, 8, 1])
    state = personal.update_state(state, 1, embeddings, 0.5)
    np.testing.assert_allclose(state, [3 + 3, 3.5 + 4, 4 + 5, 1.5])
    np.testing.assert_array_equal(personal.update_state(state, 0, embeddings, 0.5), state)  # padding
    np.testing.assert_array_equal(personal.update_state(state, 4, embeddings, 0.5), state)  # outside the vocabulary


def test_training_reads_at_every_position_the_state_the_phone_would_hold(exported):
    """The training view (earlier items folded, then carried through the context) equals, at every position,
    the state of the same picks replayed one by one with the device rule."""
    built, vocab, _, _ = exported
    layer = model_lib.personal_state_layer(built.model)
    embeddings = built.model.get_layer("context_embedding").embeddings.numpy()
    rng = np.random.default_rng(0)
    picks = rng.choice(np.arange(1, ITEMS + 1), size=M + N, replace=False)
    earlier = picks[:M][::-1][np.newaxis].astype(np.int32)  # most recent first
    for padded in (0, 3):  # a full context, and a short history (left-padded, nothing older)
        context = picks[M:].copy()
        older = earlier.copy()
        if padded:
            context[:padded], older[:] = 0, 0
        summaries = layer([tf.constant(older), tf.constant(context[np.newaxis].astype(np.int32))], training=False)
        sequence = [int(i) for i in list(older[0][::-1]) + list(context) if i]
        for position in range(N):
            if context[position] == 0:
                continue
            done = sequence[:len(sequence) - (N - 1 - position)]
            state = replay(lambda s, i: personal.update_state(s, i, embeddings, 0.9), done, DIM + 1)
            np.testing.assert_allclose(summaries[0, position].numpy(), state[:-1] / max(state[-1], 1.0),
                                       rtol=1e-5, atol=1e-6)


def test_a_zero_state_is_exactly_recommend_in_tflite_and_the_state_moves_the_ranking(exported):
    _, _, directory, tflite = exported
    lite = interpreter(tflite)
    plain = SignatureCall(lite, features.RECOMMEND_SIGNATURE)
    with_state = SignatureCall(lite, features.RECOMMEND_PERSONAL_SIGNATURE)
    update = SignatureCall(lite, features.UPDATE_STATE_SIGNATURE)
    loaded = tf.saved_model.load(directory)
    rng = np.random.default_rng(1)
    moved = 0
    for _ in range(30):
        picks = rng.choice(np.arange(1, ITEMS + 1), size=12, replace=False)
        context = picks[::-1][:N].astype(np.int32)
        zero = np.zeros(DIM + 1, np.float32)
        expected = plain(context_index=context)
        at_zero = with_state(context_index=context, user_state=zero)
        for name in (features.TOP_IDS, features.TOP_SCORES):
            np.testing.assert_array_equal(at_zero[name], expected[name])  # bit for bit
        state = replay(lambda s, i: update(user_state=s, item_index=np.array(i, np.int32))[features.USER_STATE],
                       picks, DIM + 1)
        got = with_state(context_index=context, user_state=state)
        reference = loaded.signatures[features.RECOMMEND_PERSONAL_SIGNATURE](
            context_index=tf.constant(context), user_state=tf.constant(state))
        assert checks.top_k_overlap(reference[features.TOP_IDS].numpy(), got[features.TOP_IDS]) >= 0.9
        assert not set(got[features.TOP_IDS].tolist()) & set(context.tolist())  # history still excluded
        moved += not np.array_equal(got[features.TOP_IDS][:10], expected[features.TOP_IDS][:10])
    assert moved >= 10


def test_tflite_update_state_follows_the_rule_and_the_file_stays_builtin_and_small(exported):
    built, _, directory, tflite = exported
    embeddings = built.model.get_layer("context_embedding").embeddings.numpy()
    update = SignatureCall(interpreter(tflite), features.UPDATE_STATE_SIGNATURE)
    state = expected = np.zeros(DIM + 1, np.float32)
    for item in [3, 0, 7, ITEMS + 5, 3, 12]:  # padding and an index outside the vocabulary change nothing
        state = update(user_state=state, item_index=np.array(item, np.int32))[features.USER_STATE]
        expected = personal.update_state(expected, item, embeddings, 0.9)
        np.testing.assert_allclose(state, expected, rtol=1e-6)
    # The three signatures share their constants (stored once): less than two models, let alone three.
    assert len(tflite) < 2 * len(conversion.convert_to_tflite(directory, features.RECOMMEND_SIGNATURE))


def test_serving_default_scores_with_the_state_of_the_earlier_items(exported):
    """The Evaluators' signature folds the example's earlier items into the state: its scores are the
    Keras model's on the same indices."""
    built, vocab, directory, _ = exported
    keys = vocab.keys()
    example = tf.train.Example()
    context, earlier = keys[10:10 + N], keys[20:20 + M - 2] + ["", ""]
    example.features.feature[features.CONTEXT_ITEM].bytes_list.value.extend(k.encode() for k in context)
    example.features.feature[features.CONTEXT_RATING].float_list.value.extend([0.0] * N)
    example.features.feature[features.LABEL_ITEM].bytes_list.value.append(keys[40].encode())
    example.features.feature[features.EARLIER_ITEM].bytes_list.value.extend(k.encode() for k in earlier)
    scores = tf.saved_model.load(directory).signatures[features.SERVING_SIGNATURE](
        examples=tf.constant([example.SerializeToString()]))[features.SCORES].numpy()[0]
    index = {k: i + 1 for i, k in enumerate(keys)}
    inputs = {features.CONTEXT_INDEX: tf.constant([[index[k] for k in context]], tf.int32),
              features.EARLIER_INDEX: tf.constant([[index.get(k, 0) for k in earlier]], tf.int32)}
    expected = built.model(inputs, training=False).numpy()[0]
    assert scores[0] == pytest.approx(expected[41], rel=1e-5)  # the label's score, column 0
    without = dict(inputs, **{features.EARLIER_INDEX: tf.zeros([1, M], tf.int32)})
    assert not np.allclose(built.model(without, training=False).numpy()[0][1:], expected[1:])


def test_the_metadata_describes_the_state(exported):
    _, vocab, _, tflite = exported
    document = metadata_lib.build(config(), vocab, "float32", 20, len(tflite), {}, "toy", "run", "uri",
                                  personal=True)
    metadata_lib.validate(document)
    state = document["personal_state"]
    assert state["shape"] == [DIM + 1] and state["bytes"] == 4 * (DIM + 1) and state["initial_value"] == "zeros"
    assert state["update_signature"] in interpreter(tflite)._get_full_signature_list()
    document["personal_state"]["shape"] = [DIM + 1, 2]
    with pytest.raises(Exception):
        metadata_lib.validate(document)


def histories(count=40, seed=2):
    rng = np.random.default_rng(seed)
    found = []
    for _ in range(count):
        picks = rng.choice(np.arange(1, ITEMS + 1), size=N + M + 1, replace=False).tolist()
        found.append({features.CONTEXT_INDEX: picks[M:M + N][::-1], features.EARLIER_INDEX: picks[:M][::-1],
                      features.LABEL_INDEX: picks[-1]})
    return found


def check(directory, tflite, sample):
    inputs = [{k: v for k, v in h.items() if k != features.LABEL_INDEX} for h in sample]
    return checks.check_personal_state(tflite, directory, inputs, [h[features.LABEL_INDEX] for h in sample])


def test_the_pusher_check_passes_a_working_state(exported):
    _, _, directory, tflite = exported
    result = check(directory, tflite, histories())
    assert result["personal_update_difference"] < checks.MAX_STATE_DIFFERENCE
    assert result["personal_top10_changed"] > 0 and result["personal_top10_overlap"] >= checks.MIN_TOP10_OVERLAP


@pytest.mark.parametrize("fault", ["no_effect", "diverges"])
def test_the_pusher_check_refuses_a_state_that_changes_nothing_or_diverges(tmp_path, fault):
    vocab = small_vocab()
    built = model_lib.build_recommender(config(), vocab)
    if fault == "no_effect":  # the projection learned nothing: the state never moves a score
        layer = built.model.get_layer("personal_projection")
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    else:  # one item's embedding so large that a few picks overflow the state
        table = built.model.get_layer("context_embedding")
        weights = table.get_weights()[0]
        weights[1:] = 3e38
        table.set_weights([weights])
    directory = str(tmp_path / "model")
    export.export_saved_model(built.model, vocab, config(), directory)
    tflite = conversion.convert_to_tflite(directory, SIGNATURES)
    with pytest.raises(checks.ParityError, match="changes nothing" if fault == "no_effect" else "not finite|diverged"):
        check(directory, tflite, histories(10))


def test_a_state_the_eval_split_switched_off_is_exported_without_its_signatures(tmp_path):
    vocab = small_vocab()
    built = model_lib.build_recommender(config(), vocab)
    model_lib.personal_state_layer(built.model).set_strength(0.0)
    directory = export.export_saved_model(built.model, vocab, config(), str(tmp_path / "model"))
    assert not export.has_personal_state(directory)
    assert features.RECOMMEND_SIGNATURE in tf.saved_model.load(directory).signatures


def test_the_state_is_left_out_where_histories_are_short():
    """Derived from the data: below personal_min_events_per_item training events an item the model is trained
    and published without the state (the windowing's earlier items then unread), and the summary says why."""
    dense, why = config().derive_from_data(1_000, 60_000)
    assert dense.personal_history == M and "per-user state" not in why
    sparse, why = config().derive_from_data(1_000, 20_000)
    assert sparse.personal_history == 0 and why["per-user state"] == "off: 20 training events an item, < 40"
    assert config(personal_min_events_per_item=0).derive_from_data(1_000, 20_000)[0].personal_history == M
