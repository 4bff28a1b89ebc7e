"""Training mechanics: weight averaging (what validation, early stopping and export see)."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from ondevice_rec.modules import training
from ondevice_rec.modules import trainer
from ondevice_rec.modules.config import SAMPLED_SOFTMAX_ABOVE_ITEMS, ModelConfig


def test_weight_average_follows_the_weights_and_swaps_in_for_validation_only():
    model = keras.Sequential([keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.build((None, 1))
    (kernel,) = model.trainable_variables
    average = training.WeightAverage(decay=0.5)
    average.start(model)
    expected = 0.0
    for step, value in enumerate([4.0, 8.0, 2.0], start=1):
        kernel.assign([[value]])
        average.update()
        decay = min(0.5, (1 + step) / (10 + step))
        expected = decay * expected + (1 - decay) * value
    average.swap_in()
    assert kernel.numpy()[0, 0] == pytest.approx(expected)  # validation sees the average
    average.swap_in()  # a second validation pass in the same epoch keeps the raw weights it saved
    average.swap_out()
    assert kernel.numpy()[0, 0] == 2.0  # training goes on from the raw weights


def test_weight_average_decay_is_checked():
    with pytest.raises(ValueError, match="weight_average_decay"):
        ModelConfig(weight_average_decay=1.0)


def test_fit_with_weight_average_keeps_the_averaged_weights_of_the_best_epoch(tmp_path):
    """Early stopping records the weights it validated: with averaging, the model ends on averaged weights,
    which differ from the raw weights of the same run."""
    from ondevice_rec.modules import features, vocabulary
    rng = np.random.default_rng(0)
    vocab = vocabulary.build({str(m): 10 for m in range(1, 21)})
    ids = rng.integers(1, 21, size=(256, 3)).astype(np.int32)
    labels = np.array([(i[0] % 20) + 1 for i in ids], np.int32)  # the next index after the most recent

    def data():
        return tf.data.Dataset.from_tensor_slices(({features.CONTEXT_INDEX: ids}, labels)).batch(32)

    weights = {}
    for decay in (0.0, 0.9):
        config = ModelConfig(personal_history=0, encoder="bow", history_length=3, embedding_dim=8,
                             use_item_categories=False, use_item_numbers=False, epochs=3, early_stopping_patience=5, learning_rate=0.05, weight_average_decay=decay)
        model = training.fit(config, vocab, data(), data())
        weights[decay] = model.get_layer("context_embedding").get_weights()[0]
        assert max(model.history.history["val_recall@10"]) > 0.5  # it learned the rule either way
    assert not np.allclose(weights[0.0], weights[0.9])
    summary = model.training_summary  # how training ended, written next to the model by run_fn
    assert summary["epochs_run"] == 3 and summary["stopped_by"] == "the epoch cap (3)"
    assert summary["best_val_recall_at_10"] == pytest.approx(max(model.history.history["val_recall@10"]), abs=1e-6)
    trainer.write_training_summary(model, str(tmp_path))
    import json
    written = json.loads((tmp_path / features.TRAINING_SUMMARY_FILE).read_text())
    assert written["history"]["val_recall@10"] == pytest.approx(model.history.history["val_recall@10"], abs=1e-6)
    assert len(written["epoch_seconds"]) == 3
    # the softmax was left to the data: 20 items, the full one, and the summary says why (as for the
    # successor table, whose strength the eval split chose; the embedding size was given)
    assert written["derived"]["softmax"] == f"full: 20 items <= {SAMPLED_SOFTMAX_ABOVE_ITEMS:,}"
    assert "embedding_dim" not in written["derived"]
    assert written["derived"]["successor table"].startswith("20 items with up to 16 successors; strength ")


def test_the_softmax_is_derived_from_the_catalogue_size_unless_given(monkeypatch):
    assert ModelConfig().softmax == "auto"
    sized = ModelConfig(embedding_dim=32)  # the dimension given: only the softmax is left to the data
    small, why = sized.derive_from_data(SAMPLED_SOFTMAX_ABOVE_ITEMS)
    assert small.softmax == "full" and why == {"softmax": "full: 20,000 items <= 20,000"}
    large, why = sized.derive_from_data(47_911)
    assert large.softmax == "sampled" and why == {"softmax": "sampled: 47,911 items > 20,000"}
    assert large.num_sampled == ModelConfig().num_sampled and large.epochs == ModelConfig().epochs
    for given in ("full", "sampled"):  # a softmax asked for is kept, and nothing is reported as derived
        assert sized.with_overrides([f"softmax={given}"]).derive_from_data(47_911) == (
            ModelConfig(embedding_dim=32, softmax=given), {})
    with pytest.raises(ValueError, match="softmax must be one of full, sampled, auto"):
        ModelConfig(softmax="hierarchical")
    # the run summary prints the derivation under the training line
    from ondevice_rec.pipeline import runner
    summary = runner.RunSummary(run_id="r", wall_seconds=400.0, nodes=[], push={}, test_metrics={},
                                popularity={}, training={
        "epochs_run": 4, "train_seconds": 331.0, "stopped_by": "the time budget", "best_epoch": 4,
        "best_val_recall_at_10": 0.1576, "derived": why})
    assert "  derived from the data: softmax sampled: 47,911 items > 20,000" in runner.format_summary(summary)


def test_the_embedding_size_is_derived_to_keep_large_catalogues_within_the_on_device_budget():
    """The successor table first (16 entries an item, fewer down to 4 where a 16-d embedding would not fit
    beside it), then 32 dimensions while the int8 item and successor tables fit ON_DEVICE_BYTES, else the
    largest multiple of 8 that fits; a size given is kept, and so is its table."""
    from ondevice_rec.modules import config as config_lib
    assert ModelConfig().embedding_dim == 0 and ModelConfig().successors == 16
    derived = {items: ModelConfig().derive_from_data(items)[0] for items in (1_700, 20_000, 24_000, 40_000, 47_911,
                                                                            55_000, 80_000)}
    assert {items: (c.successors, c.embedding_dim) for items, c in derived.items()} == {
        1_700: (16, 32), 20_000: (16, 32), 24_000: (16, 16), 40_000: (8, 16), 47_911: (6, 16), 55_000: (4, 16),
        80_000: (4, 8)}
    for items, c in derived.items():  # within the budget: d + 1 bytes an item, 4 a successor entry
        assert items * (c.embedding_dim + 1 + 4 * c.successors) <= config_lib.ON_DEVICE_BYTES or c.embedding_dim == 8
    why = ModelConfig().derive_from_data(55_000)[1]
    assert why["embedding_dim"] == "16: the int8 model of 55,000 items within 2,000,000 bytes"
    assert why["successors"] == "4: the table of 55,000 items beside a 16-d embedding within 2,000,000 bytes"
    assert ModelConfig(embedding_dim=64).derive_from_data(55_000)[0].embedding_dim == 64
    assert ModelConfig(embedding_dim=64).derive_from_data(55_000)[0].successors == 16
    assert ModelConfig(successors=0).derive_from_data(55_000)[0].embedding_dim == 32  # no table: room for 32
    with pytest.raises(ValueError, match="embedding_dim >= 0"):
        ModelConfig(embedding_dim=-8)
    # A higher ceiling (the quality preset's) on a dense log where the budget has room for it; the budget's size
    # where not; the default's on a sparse log (fewer than DENSE_EVENTS_PER_ITEM training events an item).
    wider, dense = ModelConfig(max_embedding_dim=48), config_lib.DENSE_EVENTS_PER_ITEM
    assert [wider.derive_from_data(items, dense * items)[0].embedding_dim
            for items in (3_416, 11_876, 20_000, 55_000)] == [48, 48, 32, 16]
    assert wider.derive_from_data(3_416, 994_083)[1]["embedding_dim"] == \
        f"48: max_embedding_dim, the ceiling (the 3,416 items would fit the budget with more); 291 training events " \
        f"an item, >= {dense}"
    assert wider.derive_from_data(11_876, 160_000)[0].embedding_dim == 32
    assert wider.derive_from_data(11_876, 160_000)[1]["embedding_dim"] == \
        f"32: the ceiling of a sparse log (13 training events an item, < {dense} for max_embedding_dim 48)"
    assert ModelConfig().derive_from_data(3_416, 994_083)[1]["embedding_dim"] == \
        "32: max_embedding_dim, the ceiling (the 3,416 items would fit the budget with more)"
    with pytest.raises(ValueError, match="max_embedding_dim must be >= 8"):
        ModelConfig(max_embedding_dim=4)


def test_the_trainer_refuses_examples_windowed_with_another_history_length(tmp_path):
    """N has one source: run_fn stops, naming both lengths, before any training on examples of another N
    (the transformed examples' schema in the transform graph says which N they hold)."""
    from ondevice_rec.modules import features
    spec = features.transformed_feature_spec(5)
    with pytest.raises(ValueError, match="hold histories of 5 items but the model is configured for "
                                         "history_length=10"):
        trainer.check_history_length(spec, ModelConfig(history_length=10))
    trainer.check_history_length(spec, ModelConfig(personal_history=0, history_length=5))  # the same N passes
    # The per-user state's earlier items too: examples windowed without them, a model that folds 100.
    with pytest.raises(ValueError, match="hold 0 earlier items each but the model is configured for "
                                         "personal_history=100"):
        trainer.check_history_length(spec, ModelConfig(history_length=5))
    trainer.check_history_length(features.transformed_feature_spec(5, 100), ModelConfig(history_length=5))


class _Scripted(keras.callbacks.Callback):
    """Feeds StopRule a scripted eval recall per epoch (and optional seconds per step), as fit would."""

    def __init__(self, stop_rule, recalls, step_seconds=0.0):
        super().__init__()
        self.stop_rule, self.recalls, self.step_seconds = stop_rule, recalls, step_seconds

    def run(self, steps_per_epoch=2):
        import time
        model = keras.Sequential([keras.layers.Dense(1)])
        model.build((None, 1))
        self.stop_rule.set_model(model)
        self.stop_rule.on_train_begin()
        for epoch, recall in enumerate(self.recalls):
            self.stop_rule.on_epoch_begin(epoch)
            model.get_layer(index=0).kernel.assign([[float(epoch)]])  # which epoch's weights are kept
            for step in range(steps_per_epoch):
                time.sleep(self.step_seconds)
                self.stop_rule.on_train_batch_end(step)
                if model.stop_training:
                    break
            self.stop_rule.on_epoch_end(epoch, {"loss": 1.0, "val_recall@10": recall})
            if model.stop_training:
                break
        self.stop_rule.on_train_end()
        return model, float(model.get_layer(index=0).kernel.numpy()[0, 0])


def test_stop_rule_stops_after_patience_epochs_without_gain_and_keeps_the_best(caplog):
    rule = training.StopRule(ModelConfig(epochs=50, early_stopping_patience=2))
    with caplog.at_level("INFO", logger="ondevice_rec.trainer"):
        model, kept = _Scripted(rule, [0.1, 0.3, 0.25, 0.29, 0.5, 0.6]).run()
    assert rule.summary["epochs_run"] == 4 and rule.summary["best_epoch"] == 2 and kept == 1.0
    assert "patience" in rule.summary["stopped_by"]
    assert rule.summary["best_val_recall_at_10"] == pytest.approx(0.3)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("epoch 1/50  loss 1.0000  val recall@10 0.1000  (best 0.1000, epoch 1)")
    assert "eta <= " in lines[0] and lines[-1].startswith("stopped after 4 epochs by no better eval recall@10")


def test_stop_rule_ends_on_the_epoch_cap_when_recall_keeps_rising():
    rule = training.StopRule(ModelConfig(epochs=3, early_stopping_patience=2))
    _, kept = _Scripted(rule, [0.1, 0.2, 0.3]).run()
    assert rule.summary["stopped_by"] == "the epoch cap (3)" and rule.summary["epochs_run"] == 3 and kept == 2.0


def test_stop_rule_keeps_to_the_time_budget():
    """0.05 s per step, 2 steps per epoch, a 0.3 s budget: the third epoch would end past it, so training
    stops after two, on the best of them; a budget shorter than one epoch ends that epoch mid-way."""
    rule = training.StopRule(ModelConfig(epochs=50, max_train_minutes=0.3 / 60))
    _, kept = _Scripted(rule, [0.1, 0.2, 0.3, 0.4], step_seconds=0.05).run()
    assert rule.summary["epochs_run"] == 2 and kept == 1.0 and "time budget" in rule.summary["stopped_by"]
    rule = training.StopRule(ModelConfig(epochs=50, max_train_minutes=0.01 / 60))
    _Scripted(rule, [0.1, 0.2], step_seconds=0.05).run(steps_per_epoch=10)
    assert rule.summary["epochs_run"] == 1 and "mid-epoch" in rule.summary["stopped_by"]


def test_training_budget_settings_are_checked_and_are_flags():
    from ondevice_rec.pipeline import options
    with pytest.raises(ValueError, match="max_train_minutes"):
        ModelConfig(max_train_minutes=-1)
    with pytest.raises(ValueError, match="early_stopping_patience"):
        ModelConfig(early_stopping_patience=0)
    flags = {options.flag_name(f) for f in options.flag_fields()}
    assert {"--max-train-minutes", "--early-stopping-patience", "--epochs"} <= flags


def test_loss_once_per_target_keeps_the_positions_no_earlier_window_holds():
    """N=4, stride 2: a full window trains its last 2 positions only (an earlier window held the first two
    targets, with more history); a user's first window (left-padded) trains all its real positions."""
    from ondevice_rec.modules import features, model as model_lib, vocabulary
    vocab = vocabulary.build({str(m): 10 for m in range(1, 21)})
    context = np.array([[4, 3, 2, 1], [2, 1, 0, 0]], np.int32)  # most recent first, right-padded
    labels = np.array([5, 3], np.int32)
    got = {}
    for once in (False, True):
        config = ModelConfig(personal_history=0,
                             encoder="lstm", history_length=4, embedding_dim=8, use_item_categories=False,
                             use_item_numbers=False, loss_once_per_target=once)
        assert config.default_train_stride() == 2
        trainer_model = training.RecommenderTrainer(model_lib.build_recommender(config, vocab), config)
        _, targets, weights = trainer_model._queries_and_targets({features.CONTEXT_INDEX: context}, labels)
        assert weights is None  # user_balance 0: every target weighs the same
        got[once] = targets.numpy().tolist()
    # Oldest first: window 1 is 1,2,3,4 -> targets 2,3,4,5; window 2 is (pad, pad, 1, 2) -> targets 2, 3.
    assert got[False] == [2, 3, 4, 5, 2, 3]
    assert got[True] == [4, 5, 2, 3]


def test_user_balance_weighs_each_target_by_its_users_train_examples():
    """user_balance=a: a window's targets weigh 1 / u^a, u its user's train examples (read from the transformed
    examples), so a heavy user's many windows weigh as much as a light user's one when a=1; the loss is the
    weighted mean."""
    from ondevice_rec.modules import features, model as model_lib, vocabulary
    vocab = vocabulary.build({str(m): 10 for m in range(1, 21)})
    context = np.array([[4, 3, 2, 1], [2, 1, 0, 0], [6, 5, 4, 3]], np.int32)
    labels = np.array([5, 3, 7], np.int32)
    examples = np.array([4.0, 1.0, 4.0], np.float32)  # windows 0 and 2: a user with 4 train windows
    for balance, expected in ((1.0, [0.25, 0.25, 1.0, 1.0, 0.25, 0.25]), (0.5, [0.5, 0.5, 1.0, 1.0, 0.5, 0.5])):
        config = ModelConfig(personal_history=0,
                             encoder="lstm", history_length=4, embedding_dim=8, use_item_categories=False,
                             use_item_numbers=False, user_balance=balance)
        trainer_model = training.RecommenderTrainer(model_lib.build_recommender(config, vocab), config)
        _, targets, weights = trainer_model._queries_and_targets(
            {features.CONTEXT_INDEX: context, features.USER_TRAIN_EXAMPLES: examples}, labels)
        assert targets.numpy().tolist() == [4, 5, 2, 3, 6, 7]
        assert np.allclose(weights.numpy(), expected)
    with pytest.raises(ValueError, match="user_balance"):
        ModelConfig(user_balance=1.5)


def test_the_training_dataset_reads_the_users_train_examples_only_when_balancing(tmp_path):
    """The transformed train examples carry each user's train-example count; the Trainer's input pipeline
    reads it into the batch only with user_balance > 0."""
    from ondevice_rec.modules import features
    from ondevice_rec.modules.trainer import make_dataset
    path = str(tmp_path / "train.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for user_examples in (3, 1):
            example = tf.train.Example()
            f = example.features.feature
            f[features.CONTEXT_INDEX].int64_list.value.extend([2, 1, 0, 0])
            f[features.CONTEXT_RATING].float_list.value.extend([0.0] * 4)
            f[features.LABEL_INDEX].int64_list.value.append(3)
            f[features.USER_TRAIN_EXAMPLES].int64_list.value.append(user_examples)
            writer.write(example.SerializeToString())
    for balance, wanted in ((0.0, None), (1.0, [3.0, 1.0])):
        config = ModelConfig(personal_history=0, history_length=4, user_balance=balance)
        inputs, _ = next(iter(make_dataset([path], config, shuffle=False)))
        got = inputs.get(features.USER_TRAIN_EXAMPLES)
        assert (got is None) if wanted is None else got.numpy().tolist() == wanted


def test_history_dropout_deletes_items_and_closes_up_the_rest():
    """Deleted items leave the window (ratings with them), the rest keep their order, most recent first, with
    padding after; the label is untouched and a full window deleted into padding still trains once."""
    from ondevice_rec.modules import features, model as model_lib, vocabulary
    tf.random.set_seed(3)
    context = np.tile(np.arange(10, 0, -1, dtype=np.int64), (400, 1))  # most recent first: 10, 9, ..., 1
    context[::2, 6:] = 0  # every other window is a user's first (padded)
    ratings = context.astype(np.float32) / 2.0
    inputs = {features.CONTEXT_INDEX: tf.constant(context), features.CONTEXT_RATING: tf.constant(ratings)}
    assert np.array_equal(training.delete_history_items(inputs, 0.0)[features.CONTEXT_INDEX].numpy(), context)
    out = training.delete_history_items(inputs, 0.3)
    got, got_ratings = out[features.CONTEXT_INDEX].numpy(), out[features.CONTEXT_RATING].numpy()
    for before, after, rating in zip(context, got, got_ratings):
        kept = after[after > 0]
        assert len(kept) <= np.count_nonzero(before) and not after[len(kept):].any()  # padding after
        assert list(kept) == sorted(kept, reverse=True) and set(kept) <= set(before)  # order kept
        assert np.array_equal(rating[:len(kept)], kept / 2.0)
    share_deleted = 1.0 - np.count_nonzero(got) / np.count_nonzero(context)
    assert 0.25 < share_deleted < 0.35
    vocab = vocabulary.build({str(m): 10 for m in range(1, 21)})
    once = ModelConfig(personal_history=0, encoder="lstm", history_length=4, embedding_dim=8, use_item_categories=False,
                       use_item_numbers=False, history_dropout=0.5)
    trainer_model = training.RecommenderTrainer(model_lib.build_recommender(once, vocab), once)
    full = np.tile(np.array([[4, 3, 2, 1]], np.int32), (200, 1))
    _, targets, _ = trainer_model._queries_and_targets({features.CONTEXT_INDEX: full}, np.full(200, 5, np.int32))
    # Each full window keeps the loss on its last 2 positions only (fresh ones), whatever was deleted: at
    # most 2 targets a window, one of them its label unless all 4 items went (1/16 of windows: no query).
    labels_trained = int(np.sum(targets.numpy() == 5))
    assert len(targets) <= 2 * labels_trained and 200 * (1 - 0.5 ** 4) - 15 <= labels_trained < 200
    with pytest.raises(ValueError, match="history_dropout"):
        ModelConfig(history_dropout=1.0)


def test_the_exported_successor_table_also_counts_the_held_out_examples_latest_transitions():
    """The strength is chosen with the training events' table; the model then keeps the table recounted with
    each held-out example's transition into its target (the events a deployed model knows)."""
    from ondevice_rec.modules import features, model as model_lib, successors, vocabulary
    vocab = vocabulary.build({str(m): 10 for m in range(1, 21)})
    ids = np.tile(np.array([[3, 2, 1]], np.int32), (64, 1))  # training: 1 -> 2 -> 3 -> 4, nothing else
    labels = np.full(64, 4, np.int32)
    held_out = ({features.CONTEXT_INDEX: np.array([[7, 6, 5], [7, 0, 0]], np.int32)}, np.array([9, 9], np.int32))

    def data(pair):
        return tf.data.Dataset.from_tensor_slices(pair).batch(32)

    config = ModelConfig(personal_history=0,
                         encoder="bow", history_length=3, embedding_dim=8, use_item_categories=False,
                         use_item_numbers=False, epochs=1, successors=2)
    model = training.fit(config, vocab, data(({features.CONTEXT_INDEX: ids}, labels)), data(held_out),
                         held_out_data=data(held_out))
    index, count = successors.unpack(model_lib.successor_layer(model).table.table.numpy())
    assert (index[3, 0], count[3, 0]) == (4, 64)  # the training windows' pair (one a window at stride 1)
    assert (index[7, 0], count[7, 0]) == (9, 2)  # both held-out examples' 7 -> 9, absent from training
    assert index[6].tolist() == [0, 0]  # only the latest transition of a held-out example is counted
    assert "exported with the held-out examples' latest transitions" in model.training_summary["derived"][
        "successor table"]


def test_the_examples_are_read_in_one_order_whatever_the_shards_and_feature_encoding(tmp_path):
    """Beam engines write the same transformed records into other shards, in other orders, with the features
    encoded in another order: up to the shuffle buffer, the Trainer reads them in one canonical order (so two
    engines train one model); above it, it streams the files."""
    from ondevice_rec.modules import features
    from ondevice_rec.modules.trainer import canonical_records, make_dataset

    def example(i, reverse):
        values = {features.CONTEXT_INDEX: [i % 7, i % 5, 0, 0], features.LABEL_INDEX: [i],
                  features.CONTEXT_RATING: [0.5] * 4}
        encoded = b""  # one feature at a time: concatenated messages merge, in the order written
        for name in sorted(values, reverse=reverse):
            proto = tf.train.Example()
            feature = proto.features.feature[name]
            (feature.float_list if name == features.CONTEXT_RATING else feature.int64_list).value.extend(values[name])
            encoded += proto.SerializeToString()
        return encoded

    def write(folder, shards, reverse):
        os.makedirs(folder)
        ids = list(range(1, 41))
        for shard in range(shards):
            with tf.io.TFRecordWriter(str(folder / f"part-{shard}.gz"), options="GZIP") as writer:
                for i in (ids[shard::shards][::-1] if reverse else ids[shard::shards]):
                    writer.write(example(i, reverse))
        return [str(folder / "*")]

    direct, flink = write(tmp_path / "a", 1, False), write(tmp_path / "b", 3, True)
    assert example(1, False) != example(1, True)  # the encodings differ byte for byte
    config = ModelConfig(personal_history=0, history_length=4, batch_size=8)
    orders = []
    for shuffle in (False, True):
        labels = [sum((y.numpy().tolist() for _, y in make_dataset(p, config, shuffle=shuffle)), [])
                  for p in (direct, flink)]
        assert labels[0] == labels[1] and sorted(labels[0]) == list(range(1, 41))
        orders.append(labels[0])
    assert orders[0] != orders[1]  # the seeded shuffle still shuffles
    files = lambda p: sorted(tf.io.gfile.glob(p[0]))
    assert canonical_records(files(direct), 40) == canonical_records(files(flink), 40)
    assert canonical_records(files(direct), 39) is None  # above the limit: streamed, not sorted
