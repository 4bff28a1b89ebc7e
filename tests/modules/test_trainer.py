"""Training mechanics: weight averaging (what validation, early stopping and export see)."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from ondevice_rec.modules import training
from ondevice_rec.modules import trainer
from ondevice_rec.modules.config import ModelConfig


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


def test_fit_with_weight_average_keeps_the_averaged_weights_of_the_best_epoch():
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
        config = ModelConfig(encoder="bow", history_length=3, embedding_dim=8, use_item_categories=False, use_item_numbers=False,
                             epochs=3, early_stopping_patience=5, learning_rate=0.05, weight_average_decay=decay)
        model = training.fit(config, vocab, data(), data())
        weights[decay] = model.get_layer("context_embedding").get_weights()[0]
        assert max(model.history.history["val_recall@10"]) > 0.5  # it learned the rule either way
    assert not np.allclose(weights[0.0], weights[0.9])


def test_the_trainer_refuses_examples_windowed_with_another_history_length(tmp_path):
    """N has one source: run_fn stops, naming both lengths, before any training on examples of another N
    (the transformed examples' schema in the transform graph says which N they hold)."""
    from ondevice_rec.modules import features
    spec = features.transformed_feature_spec(5)
    with pytest.raises(ValueError, match="hold histories of 5 items but the model is configured for "
                                         "history_length=10"):
        trainer.check_history_length(spec, ModelConfig(history_length=10))
    trainer.check_history_length(spec, ModelConfig(history_length=5))  # the same N passes
